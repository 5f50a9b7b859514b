package events

import (
	"bytes"
	"encoding/json"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/oklog/ulid/v2"
)

// TypeRelease is the CloudEvents type of an agent release manifest: the
// value of a PCM_RELEASES key, signed by a release key. It is not carried
// on a stream (it is not among Types): agents read it from the bucket.
const TypeRelease = "pcm.release.v1"

// BucketReleases is the KV bucket of agent releases: key
// ReleaseVersionKey(v) holds the manifest of version v as pushed,
// ReleaseChannelKey(c) the manifest an agent on channel c runs.
const BucketReleases = "PCM_RELEASES"

// ReleasePackageName is the PCM_PACKAGES name of the agent binary of a
// platform: the binaries of a release are packages ("pcm-linux-amd64"),
// fetched and sha256-verified by agents as any package is.
func ReleasePackageName(os, arch string) string { return "pcm-" + os + "-" + arch }

// ReleaseVersionKey is the PCM_RELEASES key of a version's manifest.
func ReleaseVersionKey(version string) string { return "version." + version }

// ReleaseChannelKey is the PCM_RELEASES key of a channel's current release.
func ReleaseChannelKey(channel string) string { return "channel." + channel }

// ReleaseHintSubject is where PCM_RELEASES republishes (headers only,
// once stored) each write of a channel's key: agents subscribe to hear of
// a new release, then read the key. The bucket's stream publishes it in
// the account that holds the resources, so it reaches every client's
// account through its stream import (a write arriving through a
// publisher's service import would not).
func ReleaseHintSubject(channel string) string { return "pcm.releases.channel." + channel }

// Release is an agent release manifest: the version, the channel it is
// meant for, and the binary of each platform by sha256. A manifest is
// trusted only when signed by a release key an agent trusts
// (--release-keys), and it names its channel, so that a manifest signed
// for "beta" cannot be replayed as "stable".
type Release struct {
	Version string `json:"version"`
	Channel string `json:"channel"`
	// Rollback allows agents running a newer version to install this one:
	// without it an older version is refused.
	Rollback bool `json:"rollback,omitempty"`
	// Percent, from 1 to 99, offers the release to that share of the
	// clients only: those whose stable hash of version and client id
	// (InRelease) falls under it. 0 or 100 offers it to every client. A
	// client chosen at 10% is chosen at every higher percentage.
	Percent int `json:"percent,omitempty"`
	// Platforms maps "os/arch" to the package holding its binary.
	Platforms   map[string]PackageRef `json:"platforms"`
	PublishedAt time.Time             `json:"published_at"`
	PublishedBy string                `json:"published_by,omitempty"`
}

var releaseVersionPattern = regexp.MustCompile(`^v?(0|[1-9][0-9]{0,8})\.(0|[1-9][0-9]{0,8})\.(0|[1-9][0-9]{0,8})(-[0-9A-Za-z.-]{1,64})?$`)

// ValidReleaseVersion checks a release version: MAJOR.MINOR.PATCH with an
// optional leading v and -PRERELEASE (semantic versioning without build
// metadata, which a KV key cannot hold). Errors wrap ErrInvalidRelease.
func ValidReleaseVersion(v string) error {
	if !releaseVersionPattern.MatchString(v) {
		return fmt.Errorf("%w: version %q is not MAJOR.MINOR.PATCH[-PRERELEASE] (as in v1.4.0 or 1.5.0-rc.1)", ErrInvalidRelease, v)
	}
	return nil
}

// CompareReleaseVersions orders two versions as semantic versioning does
// (a pre-release before its release); a version that is not one
// (ValidReleaseVersion, "dev" for instance) is older than every version.
func CompareReleaseVersions(a, b string) int {
	pa, oka := parseReleaseVersion(a)
	pb, okb := parseReleaseVersion(b)
	switch {
	case !oka && !okb:
		return strings.Compare(a, b)
	case !oka:
		return -1
	case !okb:
		return 1
	}
	for i := range 3 {
		if pa.n[i] != pb.n[i] {
			if pa.n[i] < pb.n[i] {
				return -1
			}
			return 1
		}
	}
	return comparePrerelease(pa.pre, pb.pre)
}

type releaseVersion struct {
	n   [3]int
	pre string
}

func parseReleaseVersion(v string) (releaseVersion, bool) {
	m := releaseVersionPattern.FindStringSubmatch(v)
	if m == nil {
		return releaseVersion{}, false
	}
	var r releaseVersion
	for i := range 3 {
		r.n[i], _ = strconv.Atoi(m[i+1])
	}
	r.pre = strings.TrimPrefix(m[4], "-")
	return r, true
}

// comparePrerelease orders pre-release strings (semver rule 11); no
// pre-release is the newest.
func comparePrerelease(a, b string) int {
	switch {
	case a == b:
		return 0
	case a == "":
		return 1
	case b == "":
		return -1
	}
	as, bs := strings.Split(a, "."), strings.Split(b, ".")
	for i := 0; i < len(as) && i < len(bs); i++ {
		na, ea := strconv.Atoi(as[i])
		nb, eb := strconv.Atoi(bs[i])
		switch {
		case ea == nil && eb == nil && na != nb:
			if na < nb {
				return -1
			}
			return 1
		case ea == nil && eb != nil:
			return -1
		case ea != nil && eb == nil:
			return 1
		case as[i] != bs[i]:
			return strings.Compare(as[i], bs[i])
		}
	}
	switch {
	case len(as) < len(bs):
		return -1
	case len(as) > len(bs):
		return 1
	}
	return 0
}

// Validate checks a manifest: its version, its channel (an id), and a
// valid package reference for each valid platform.
func (r Release) Validate() error {
	if err := ValidReleaseVersion(r.Version); err != nil {
		return err
	}
	if err := ValidID("channel", r.Channel); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidRelease, err)
	}
	if r.Percent < 0 || r.Percent > 100 {
		return fmt.Errorf("%w: release %s: percent %d is not between 0 and 100", ErrInvalidRelease, r.Version, r.Percent)
	}
	if len(r.Platforms) == 0 {
		return fmt.Errorf("%w: release %s has no binary: give one per os/arch", ErrInvalidRelease, r.Version)
	}
	for p, ref := range r.Platforms {
		os, arch, ok := strings.Cut(p, "/")
		if !ok || os == "" || arch == "" || strings.ContainsAny(p, "*") {
			return fmt.Errorf("%w: release %s: platform %q is not os/arch", ErrInvalidRelease, r.Version, p)
		}
		if err := ref.Validate(); err != nil {
			return fmt.Errorf("%w: release %s, %s: %w", ErrInvalidRelease, r.Version, p, err)
		}
	}
	return nil
}

// InRelease reports whether client is among the clients r is offered to:
// always at 0 or 100 percent, else when the client's RingPosition for the
// release's version (the staged rollouts' stable hash, the version in the
// place of the job) is under r.Percent. The position is stable for a
// version, so raising the percentage of a release only adds clients.
func (r Release) InRelease(client string) bool {
	if r.Percent <= 0 || r.Percent >= 100 {
		return true
	}
	return RingPosition(r.Version, client) < float64(r.Percent)
}

// NewRelease validates r and returns its pcm.release.v1 event (a new
// unique id), made by publisher; sign it (Sign) before storing it.
func NewRelease(publisher string, r Release) (event.Event, error) {
	if err := ValidID("publisher name", publisher); err != nil {
		return event.Event{}, err
	}
	if err := r.Validate(); err != nil {
		return event.Event{}, err
	}
	return newEvent(TypeRelease, ulid.Make().String(), PublisherSource(publisher), r.Version, r)
}

// ParseRelease reads a PCM_RELEASES value: a pcm.release.v1 event in JSON
// (structured mode). It checks the event and the manifest, not the
// signature: call Verify with the trusted release keys.
func ParseRelease(value []byte) (event.Event, Release, error) {
	var ev event.Event
	if err := json.Unmarshal(value, &ev); err != nil {
		return ev, Release{}, fmt.Errorf("%w: release manifest: %v", ErrMalformed, err)
	}
	if ev.Type() != TypeRelease {
		return ev, Release{}, fmt.Errorf("%w: got a %s event where a %s was expected", ErrUnexpectedType, ev.Type(), TypeRelease)
	}
	// Unknown fields are read past: a newer pcm may add some, and the
	// signature covers them.
	var r Release
	if err := json.NewDecoder(bytes.NewReader(ev.Data())).Decode(&r); err != nil {
		return ev, Release{}, fmt.Errorf("%w: %s data: %v", ErrMalformed, TypeRelease, err)
	}
	if err := r.Validate(); err != nil {
		return ev, r, err
	}
	if ev.Subject() != r.Version {
		return ev, r, fmt.Errorf("%w: subject %q differs from the version %q", ErrMissingAttribute, ev.Subject(), r.Version)
	}
	return ev, r, checkPublisherSource(ev)
}
