package releases

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"

	"github.com/pcm-project/pcm/events"
	"github.com/pcm-project/pcm/internal/kvread"
	"github.com/pcm-project/pcm/packages"
)

// PushOptions says what a release is.
type PushOptions struct {
	// Version of the release (events.ValidReleaseVersion). Required.
	Version string
	// Channel the release is published on (an id: stable, beta, ...).
	// Required.
	Channel string
	// Binaries maps "os/arch" to the path of its agent binary. Required.
	Binaries map[string]string
	// Rollback lets agents running a newer version install this one.
	Rollback bool
	// Percent offers the release to that share of the channel's clients
	// (events.Release.Percent); 0 to all.
	Percent int
	// Force replaces an existing version and its binaries.
	Force bool
	// Key signs the manifest. Required.
	Key nkeys.KeyPair
	// Publisher names the source of the manifest event (an id).
	Publisher string
}

// Entry is a stored release and the channels that run it now.
type Entry struct {
	events.Release
	Signer   string   `json:"signer"`
	Channels []string `json:"channels,omitempty"`
}

// Store pushes, promotes and lists agent releases.
type Store struct {
	js  jetstream.JetStream
	now func() time.Time
}

// NewStore returns the release store reached through js.
func NewStore(js jetstream.JetStream) *Store { return &Store{js: js, now: time.Now} }

func (s *Store) bucket(ctx context.Context) (jetstream.KeyValue, error) {
	kv, err := s.js.KeyValue(ctx, events.BucketReleases)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		return nil, fmt.Errorf("%w: bucket %s does not exist: run pcm broker provision", ErrNotProvisioned, events.BucketReleases)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrStore, events.BucketReleases, err)
	}
	return kv, nil
}

// Push stores each binary as the package ReleasePackageName(os, arch) at
// opts.Version, then the signed manifest under the version's key and the
// channel's key: agents on the channel see it at once. A version already
// pushed is refused (ErrExists) unless opts.Force.
func (s *Store) Push(ctx context.Context, opts PushOptions) (events.Release, error) {
	if err := events.ValidReleaseVersion(opts.Version); err != nil {
		return events.Release{}, err
	}
	if err := events.ValidID("channel", opts.Channel); err != nil {
		return events.Release{}, fmt.Errorf("%w: %w", events.ErrInvalidRelease, err)
	}
	if opts.Key == nil {
		return events.Release{}, fmt.Errorf("%w: no release key to sign the manifest with", events.ErrInvalidKey)
	}
	if opts.Percent < 0 || opts.Percent > 100 {
		return events.Release{}, fmt.Errorf("%w: percent %d is not between 0 and 100", events.ErrInvalidRelease, opts.Percent)
	}
	if len(opts.Binaries) == 0 {
		return events.Release{}, fmt.Errorf("%w: no binary: give one per os/arch", events.ErrInvalidRelease)
	}
	kv, err := s.bucket(ctx)
	if err != nil {
		return events.Release{}, err
	}
	if _, err := kv.Get(ctx, events.ReleaseVersionKey(opts.Version)); err == nil && !opts.Force {
		return events.Release{}, fmt.Errorf("%w: %s: push another version, or --force to replace it", ErrExists, opts.Version)
	}
	r := events.Release{Version: opts.Version, Channel: opts.Channel, Rollback: opts.Rollback, Percent: opts.Percent,
		Platforms: map[string]events.PackageRef{}, PublishedAt: s.now().UTC(), PublishedBy: opts.Publisher}
	store := packages.NewStore(s.js)
	for _, p := range sortedKeys(opts.Binaries) {
		osName, arch, ok := strings.Cut(p, "/")
		if !ok || osName == "" || arch == "" {
			return events.Release{}, fmt.Errorf("%w: platform %q is not os/arch", events.ErrInvalidRelease, p)
		}
		info, err := store.Push(ctx, opts.Binaries[p], packages.PushOptions{
			Name: events.ReleasePackageName(osName, arch), Version: opts.Version, Force: opts.Force, PushedBy: opts.Publisher})
		if err != nil {
			return events.Release{}, fmt.Errorf("binary of %s: %w", p, err)
		}
		r.Platforms[p] = info.Ref()
	}
	value, err := s.sign(r, opts.Key, opts.Publisher)
	if err != nil {
		return events.Release{}, err
	}
	if _, err := kv.Put(ctx, events.ReleaseVersionKey(r.Version), value); err != nil {
		return events.Release{}, fmt.Errorf("%w: storing the manifest of %s: %w", ErrStore, r.Version, err)
	}
	if _, err := kv.Put(ctx, events.ReleaseChannelKey(r.Channel), value); err != nil {
		return events.Release{}, fmt.Errorf("%w: publishing %s on channel %s: %w", ErrStore, r.Version, r.Channel, err)
	}
	return r, nil
}

// Promote makes version the release of channel: its manifest signed again
// with key, naming that channel, offered to percent of its clients (0:
// all). rollback marks it as allowed to replace newer versions (to bring a
// channel back to it).
func (s *Store) Promote(ctx context.Context, version, channel string, percent int, rollback bool, key nkeys.KeyPair, publisher string) (events.Release, error) {
	if err := events.ValidID("channel", channel); err != nil {
		return events.Release{}, fmt.Errorf("%w: %w", events.ErrInvalidRelease, err)
	}
	if key == nil {
		return events.Release{}, fmt.Errorf("%w: no release key to sign the manifest with", events.ErrInvalidKey)
	}
	kv, err := s.bucket(ctx)
	if err != nil {
		return events.Release{}, err
	}
	r, _, err := s.get(ctx, kv, events.ReleaseVersionKey(version))
	if err != nil {
		return events.Release{}, err
	}
	r.Channel, r.Percent, r.Rollback, r.PublishedAt, r.PublishedBy = channel, percent, rollback, s.now().UTC(), publisher
	value, err := s.sign(r, key, publisher)
	if err != nil {
		return events.Release{}, err
	}
	if _, err := kv.Put(ctx, events.ReleaseChannelKey(channel), value); err != nil {
		return events.Release{}, fmt.Errorf("%w: promoting %s to %s: %w", ErrStore, version, channel, err)
	}
	return r, nil
}

// List returns every pushed version, newest first, with the channels that
// run it now. It reads the bucket by direct gets (no consumer: what a
// publisher or an auditor may do).
func (s *Store) List(ctx context.Context) ([]Entry, error) {
	if _, err := s.bucket(ctx); err != nil {
		return nil, err
	}
	byVersion := map[string]*Entry{}
	channels := map[string]string{} // channel -> version
	err := kvread.Snapshot(ctx, s.js, events.BucketReleases, func(e kvread.Entry) {
		ev, r, err := events.ParseRelease(e.Value)
		if err != nil {
			return // a damaged or foreign value is not a release
		}
		switch {
		case strings.HasPrefix(e.Key, "version."):
			signer, _ := ev.Extensions()[events.ExtensionSigner].(string)
			byVersion[r.Version] = &Entry{Release: r, Signer: signer}
		case strings.HasPrefix(e.Key, "channel."):
			channels[strings.TrimPrefix(e.Key, "channel.")] = r.Version
		}
	})
	if err != nil {
		return nil, fmt.Errorf("%w: reading %s: %w", ErrStore, events.BucketReleases, err)
	}
	for c, v := range channels {
		if e, ok := byVersion[v]; ok {
			e.Channels = append(e.Channels, c)
		}
	}
	out := make([]Entry, 0, len(byVersion))
	for _, e := range byVersion {
		sort.Strings(e.Channels)
		out = append(out, *e)
	}
	sort.Slice(out, func(i, j int) bool { return events.CompareReleaseVersions(out[i].Version, out[j].Version) > 0 })
	return out, nil
}

// Channel returns the release of channel.
func (s *Store) Channel(ctx context.Context, channel string) (events.Release, error) {
	kv, err := s.bucket(ctx)
	if err != nil {
		return events.Release{}, err
	}
	r, _, err := s.get(ctx, kv, events.ReleaseChannelKey(channel))
	return r, err
}

func (s *Store) get(ctx context.Context, kv jetstream.KeyValue, key string) (events.Release, string, error) {
	e, err := kv.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return events.Release{}, "", fmt.Errorf("%w: %s", ErrNotFound, strings.Replace(key, ".", " ", 1))
	}
	if err != nil {
		return events.Release{}, "", fmt.Errorf("%w: reading %s: %w", ErrStore, key, err)
	}
	ev, r, err := events.ParseRelease(e.Value())
	if err != nil {
		return events.Release{}, "", err
	}
	signer, _ := ev.Extensions()[events.ExtensionSigner].(string)
	return r, signer, nil
}

// sign makes r's event, signed with key, in JSON.
func (s *Store) sign(r events.Release, key nkeys.KeyPair, publisher string) ([]byte, error) {
	if publisher == "" {
		publisher = "pcm"
	}
	ev, err := events.NewRelease(publisher, r)
	if err != nil {
		return nil, err
	}
	if err := events.Sign(&ev, key); err != nil {
		return nil, err
	}
	return json.Marshal(ev)
}

func sortedKeys(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
