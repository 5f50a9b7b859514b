package audit

import (
	"fmt"
	"strings"
	"time"

	"github.com/pcm-project/pcm/events"
)

// Filter selects the events Replay delivers. The zero value selects
// every stored event and stops at the end of the history.
type Filter struct {
	// Since and Until bound the time the broker stored an event (both
	// inclusive); zero means unbounded.
	Since, Until time.Time
	// JobID keeps the offers, cancellations and statuses of one job.
	JobID string
	// Client keeps the client's statuses and the offers and cancellations
	// its consumer takes: those on its own subject, on the subjects of the
	// groups it is enrolled in, and on pcm.jobs.all (its own subject and
	// pcm.jobs.all when it is not enrolled).
	Client string
	// Types keeps events of these CloudEvents types (see EventType); empty
	// keeps every type.
	Types []string
	// Follow keeps delivering events as they are stored, after the
	// history, until Until passes or the context ends.
	Follow bool
	// Resync, when following, is how often the streams are read even when
	// nothing was heard of a new event (streamread.FollowOptions.Resync;
	// default streamread.DefaultResync): it catches an event whose notice
	// was lost. New events are heard as they are stored, on a secured
	// broker too (the streams republish them: docs/security.md).
	Resync time.Duration
	// Resume, when it names a stream (PCM_JOBS, PCM_STATUS), starts that
	// stream just after the sequence given (the last one an earlier
	// replay delivered) instead of at Since: a replay resumed after a lost
	// connection repeats nothing and skips nothing.
	Resume map[string]uint64
}

// Validate checks the filter.
func (f Filter) Validate() error {
	if f.JobID != "" {
		if err := events.ValidID("job id", f.JobID); err != nil {
			return fmt.Errorf("%w: %w", ErrInvalidFilter, err)
		}
	}
	if f.Client != "" {
		if err := events.ValidID("client id", f.Client); err != nil {
			return fmt.Errorf("%w: %w", ErrInvalidFilter, err)
		}
	}
	for _, t := range f.Types {
		if _, err := EventType(t); err != nil {
			return err
		}
	}
	if !f.Since.IsZero() && !f.Until.IsZero() && f.Until.Before(f.Since) {
		return fmt.Errorf("%w: until (%s) is before since (%s): swap them", ErrInvalidFilter,
			f.Until.Format(time.RFC3339), f.Since.Format(time.RFC3339))
	}
	return nil
}

// EventType resolves a type name: a full CloudEvents type
// (pcm.job.offered.v1) or its short name (offered, cancelled, status).
func EventType(name string) (string, error) {
	for _, t := range events.Types {
		if name == t || name == shortType(t) {
			return t, nil
		}
	}
	return "", fmt.Errorf("%w: event type %q: use offered, cancelled or status (or %s)", ErrInvalidFilter, name, strings.Join(events.Types, ", "))
}

// shortType is "offered" for pcm.job.offered.v1.
func shortType(t string) string {
	s := strings.TrimPrefix(t, "pcm.job.")
	s, _, _ = strings.Cut(s, ".")
	return s
}

// ShortType names an event type briefly: offered, cancelled, status; other
// types are returned unchanged.
func ShortType(t string) string {
	for _, k := range events.Types {
		if t == k {
			return shortType(t)
		}
	}
	return t
}
