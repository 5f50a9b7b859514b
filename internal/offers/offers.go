// Package offers reads job events back from the PCM_JOBS stream: a
// streaming scan through an ordered consumer (nothing is loaded whole) and
// the lookup of one job's offer. Both faces of the agent and the publisher
// use it; it never writes.
package offers

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/oklog/ulid/v2"

	"github.com/pcm-project/pcm/events"
)

// ErrNotFound: no offer of the job id is in the scanned part of PCM_JOBS.
var ErrNotFound = errors.New("job not found")

// Entry is one valid job event read from PCM_JOBS: an offer or a
// cancellation.
type Entry struct {
	Seq     uint64
	Subject string
	// Time is when the broker stored the event.
	Time   time.Time
	Event  event.Event
	Offer  *events.JobOffered
	Cancel *events.JobCancelled
}

// JobID is the job the entry is about.
func (e Entry) JobID() string {
	if e.Offer != nil {
		return e.Offer.JobID
	}
	return e.Cancel.JobID
}

// Scan reads PCM_JOBS on filters (every subject when empty) from start
// (the beginning when zero) up to the last message stored when it is
// called, and calls fn for each valid offer and cancellation in stream
// order; events that do not parse are skipped. fn returns false to stop.
func Scan(ctx context.Context, js jetstream.JetStream, filters []string, start time.Time, fn func(Entry) bool) error {
	return scan(ctx, js, filters, start, nil, nil, fn)
}

// Verifier checks an event's signature (see events.Verify). An event it
// refuses is skipped like one that does not parse.
type Verifier func(event.Event) error

// ScanVerified is Scan that also skips the events verify refuses.
func ScanVerified(ctx context.Context, js jetstream.JetStream, filters []string, start time.Time, verify Verifier, fn func(Entry) bool) error {
	return scan(ctx, js, filters, start, nil, verify, fn)
}

// scan is Scan with a cheap pre-filter on the raw bytes and an optional
// verifier.
func scan(ctx context.Context, js jetstream.JetStream, filters []string, start time.Time, needle []byte, verify Verifier, fn func(Entry) bool) error {
	cfg := jetstream.OrderedConsumerConfig{FilterSubjects: filters, DeliverPolicy: jetstream.DeliverAllPolicy}
	if !start.IsZero() {
		cfg.DeliverPolicy = jetstream.DeliverByStartTimePolicy
		cfg.OptStartTime = &start
	}
	cons, err := js.OrderedConsumer(ctx, events.StreamJobs, cfg)
	if err != nil {
		return fmt.Errorf("reading %s: %w", events.StreamJobs, err)
	}
	info, err := cons.Info(ctx)
	if err != nil {
		return fmt.Errorf("reading %s: %w", events.StreamJobs, err)
	}
	for remaining := info.NumPending; remaining > 0; {
		batch, err := cons.Fetch(int(min(remaining, 500)), jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			return fmt.Errorf("reading %s: %w", events.StreamJobs, err)
		}
		n := 0
		for msg := range batch.Messages() {
			n++
			meta, err := msg.Metadata()
			if err != nil {
				continue
			}
			remaining = meta.NumPending
			if needle != nil && !bytes.Contains(msg.Data(), needle) {
				continue
			}
			e, ok := entryOf(msg, meta)
			if ok && verify != nil && verify(e.Event) != nil {
				continue
			}
			if ok && !fn(e) {
				return nil
			}
		}
		if err := batch.Error(); err != nil && !errors.Is(err, jetstream.ErrNoMessages) {
			return fmt.Errorf("reading %s: %w", events.StreamJobs, err)
		}
		if n == 0 {
			break
		}
	}
	return nil
}

func entryOf(msg jetstream.Msg, meta *jetstream.MsgMetadata) (Entry, bool) {
	ev, err := events.Decode(msg.Headers(), msg.Data())
	if err != nil {
		return Entry{}, false
	}
	e := Entry{Seq: meta.Sequence.Stream, Subject: msg.Subject(), Time: meta.Timestamp, Event: ev}
	switch ev.Type() {
	case events.TypeJobOffered:
		job, err := events.ParseJobOffered(ev)
		if err != nil {
			return Entry{}, false
		}
		e.Offer = &job
	case events.TypeJobCancelled:
		c, err := events.ParseJobCancelled(ev)
		if err != nil {
			return Entry{}, false
		}
		e.Cancel = &c
	default:
		return Entry{}, false
	}
	return e, true
}

// StartOf is where a scan for jobID may start: a minute before the time a
// ULID job id (the ids the publisher assigns) carries; zero for other ids.
func StartOf(jobID string) time.Time {
	id, err := ulid.ParseStrict(jobID)
	if err != nil {
		return time.Time{}
	}
	return ulid.Time(id.Time()).Add(-time.Minute)
}

// Found is a job's offer as stored, with every copy (one per target
// subject) and its cancellation, if any.
type Found struct {
	Job       events.JobOffered
	Copies    []Entry
	Cancelled *events.JobCancelled
}

// Find looks jobID's offer up among filters (every subject when empty).
func Find(ctx context.Context, js jetstream.JetStream, filters []string, jobID string) (Found, error) {
	return FindVerified(ctx, js, filters, jobID, nil)
}

// FindVerified is Find among the events verify accepts: an offer or a
// cancellation it refuses is ignored.
func FindVerified(ctx context.Context, js jetstream.JetStream, filters []string, jobID string, verify Verifier) (Found, error) {
	var f Found
	err := scan(ctx, js, filters, StartOf(jobID), []byte(`"`+jobID+`"`), verify, func(e Entry) bool {
		if e.JobID() != jobID {
			return true
		}
		if e.Offer != nil {
			if len(f.Copies) == 0 {
				f.Job = *e.Offer
			}
			f.Copies = append(f.Copies, e)
		} else if len(f.Copies) > 0 {
			f.Cancelled = e.Cancel
		}
		return true
	})
	if err != nil {
		return Found{}, err
	}
	if len(f.Copies) == 0 {
		return Found{}, fmt.Errorf("%w: no offer of job %s in %s (mistyped, not for this client, or older than the stream's retention)", ErrNotFound, jobID, events.StreamJobs)
	}
	return f, nil
}
