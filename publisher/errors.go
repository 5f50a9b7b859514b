package publisher

import (
	"errors"
	"fmt"
	"strings"

	"github.com/pcm-project/pcm/events"
)

// Sentinel errors.
var (
	// ErrInvalidJob: the job breaks a rule; the wrapped events sentinel says which.
	ErrInvalidJob = errors.New("invalid job")
	// ErrExpired: the job's expire_after is not in the future.
	ErrExpired = errors.New("job already expired")
	// ErrBeyondRetention: the job would expire after the jobs stream drops it.
	ErrBeyondRetention = errors.New("expiry beyond the jobs stream's retention")
	// ErrPublish: the broker did not store an event.
	ErrPublish = errors.New("publish failed")
	// ErrNotProvisioned: PCM_JOBS (or PCM_STATUS) does not exist: run pcm broker provision.
	ErrNotProvisioned = errors.New("pcm streams not provisioned")
	// ErrJobNotFound: no offer of that job id is in the jobs stream.
	ErrJobNotFound = errors.New("job not found")
	// ErrInvalidTime: a time flag is neither RFC 3339 nor a +/-duration.
	ErrInvalidTime = errors.New("invalid time")
	// ErrRead: a stream, a bucket or a consumer could not be read.
	ErrRead = errors.New("reading the broker failed")
	// ErrInvalidFilter: an audit filter or a client id to look up is
	// unusable (a bad id, an unknown event type, --until before --since).
	ErrInvalidFilter = errors.New("invalid filter")
	// ErrUnknownClient: a client is neither enrolled nor has an agent
	// inventory.
	ErrUnknownClient = errors.New("unknown client")
)

// Errors of package content (packages.go).
var (
	// ErrInvalidPackage: a package name, version, NAME@VERSION spec or path
	// to push is unusable (bad characters, missing part, not a regular file
	// or directory, a symlink leaving the directory).
	ErrInvalidPackage = errors.New("invalid package")
	// ErrPackageNotFound: PCM_PACKAGES holds no complete package of that
	// name and version (never pushed, removed, or its push was interrupted).
	ErrPackageNotFound = errors.New("package not found")
	// ErrPackageExists: that name and version is already pushed; a push
	// replaces it only when forced.
	ErrPackageExists = errors.New("package version already exists")
	// ErrPackageMismatch: a job pins a sha256 (or size) that is not the one
	// PCM_PACKAGES holds for its package.
	ErrPackageMismatch = errors.New("package does not match the job's pinned digest")
	// ErrPush: the package content could not be read or stored.
	ErrPush = errors.New("package push failed")
)

// PartialError reports a publish that stored the event for some targets and
// failed for one: Stored lists the targets whose subjects hold it, Failed the
// one that failed, NotSent those not tried. Retrying the same job (same job
// id) is safe: the stored ones are de-duplicated by Nats-Msg-Id.
type PartialError struct {
	JobID   string
	Stored  []events.Target
	Failed  events.Target
	NotSent []events.Target
	Err     error
}

func (e *PartialError) Error() string {
	names := func(ts []events.Target) string {
		if len(ts) == 0 {
			return "none"
		}
		s := make([]string, len(ts))
		for i, t := range ts {
			s[i] = t.String()
		}
		return strings.Join(s, ", ")
	}
	return fmt.Sprintf("job %s published only in part: stored for %s; failed for %s: %v; not sent to %s (retry with --job-id %s: stored targets are de-duplicated)",
		e.JobID, names(e.Stored), e.Failed, e.Err, names(e.NotSent), e.JobID)
}

// Unwrap lets errors.Is see ErrPublish and the cause.
func (e *PartialError) Unwrap() []error { return []error{ErrPublish, e.Err} }
