package publisher

import (
	"errors"
	"fmt"
	"strings"

	"github.com/pcm-project/pcm/events"
	"github.com/pcm-project/pcm/internal/offers"
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
	// ErrNotProvisioned: PCM_JOBS does not exist: run pcm broker provision.
	ErrNotProvisioned = errors.New("pcm streams not provisioned")
	// ErrJobNotFound: no offer of that job id is in the jobs stream. It is
	// the error the scan of PCM_JOBS returns, so its message says it once.
	ErrJobNotFound = offers.ErrNotFound
	// ErrNoSuchTarget: a target of the job matches no enrolled client (see
	// Config.RequireEnrolled).
	ErrNoSuchTarget = errors.New("target matches no enrolled client")
	// ErrInvalidTime: a time flag is neither RFC 3339 nor a +/-duration.
	ErrInvalidTime = errors.New("invalid time")
	// ErrNotStaged: a halt or a resume of a job without a rollout plan.
	ErrNotStaged = errors.New("job is not a staged rollout")
	// ErrController: the rollout controller's publisher was asked to do
	// something else than halt.
	ErrController = errors.New("the rollout controller only halts")
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
