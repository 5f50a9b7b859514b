// Package offers reads job events back from the PCM_JOBS stream: a
// streaming scan with batched direct gets (internal/streamread: no
// consumer, nothing is loaded whole), the reading of one stored event as an
// offer or a cancellation (EntryOf), and the lookup of one job's offer among
// any such events (FindIn: a scan, or a client's offers through the client
// view). It is the one place that scans PCM_JOBS for jobs: the publisher's
// cancel, the rollout, the fleet's pending jobs and the desktop face use
// it. It never writes and never creates a consumer.
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
	"github.com/pcm-project/pcm/internal/streamread"
)

// Entry is one valid job event read from PCM_JOBS: an offer or a
// cancellation.
type Entry struct {
	// Seq is the event's PCM_JOBS sequence.
	Seq uint64
	// Subject is the subject it was stored on (one per target of a job).
	Subject string
	// Time is when the broker stored the event.
	Time time.Time
	// Event is the CloudEvent.
	Event event.Event
	// Offer is set for an offer (pcm.job.offered.v1).
	Offer *events.JobOffered
	// Cancel is set for a cancellation (pcm.job.cancelled.v1).
	Cancel *events.JobCancelled
}

// JobID is the job the entry is about.
func (e Entry) JobID() string {
	if e.Offer != nil {
		return e.Offer.JobID
	}
	return e.Cancel.JobID
}

// Scan reads PCM_JOBS on o.Filters (every subject when empty) from o's
// start (StartSeq or StartTime; the beginning when both are zero) up to
// the last message stored when it is called, and calls fn for each valid
// offer and cancellation in stream order; events that do not parse are
// skipped. fn returns false to stop.
func Scan(ctx context.Context, js jetstream.JetStream, o streamread.Options, fn func(Entry) bool) error {
	return scan(ctx, js, o, nil, nil, fn)
}

// Verifier checks an event's signature (see events.Verify). An event it
// refuses is skipped like one that does not parse.
type Verifier func(event.Event) error

// errStop is how a scan's callback stops the read.
var errStop = errors.New("scan stopped")

// scan is Scan with a cheap pre-filter on the raw bytes and an optional
// verifier.
func scan(ctx context.Context, js jetstream.JetStream, o streamread.Options, needle []byte, verify Verifier, fn func(Entry) bool) error {
	err := streamread.Scan(ctx, js, events.StreamJobs, o, func(m streamread.Msg) error {
		if needle != nil && !bytes.Contains(m.Data, needle) {
			return nil
		}
		e, ok := entryOf(m, verify)
		if ok && !fn(e) {
			return errStop
		}
		return nil
	})
	if err != nil && !errors.Is(err, errStop) {
		return fmt.Errorf("reading %s: %w", events.StreamJobs, err)
	}
	return nil
}

// EntryOf reads an offer or a cancellation out of a stored message; ok is
// false for anything else (a message that does not parse), and for an
// event verify (when set) refuses.
func EntryOf(m streamread.Msg, verify Verifier) (Entry, bool) { return entryOf(m, verify) }

// entryOf reads an offer or a cancellation out of a stored message; ok is
// false for anything else, and for an event verify refuses.
func entryOf(m streamread.Msg, verify Verifier) (Entry, bool) {
	ev, err := events.Decode(m.Header, m.Data)
	if err != nil {
		return Entry{}, false
	}
	e := Entry{Seq: m.Seq, Subject: m.Subject, Time: m.Time, Event: ev}
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
	if verify != nil && verify(ev) != nil {
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
	return FindIn(jobID, func(fn func(Entry) bool) error {
		return scan(ctx, js, streamread.Options{Filters: filters, StartTime: StartOf(jobID)}, []byte(`"`+jobID+`"`), nil, fn)
	})
}

// FindIn looks jobID's offer up among the entries each calls fn with, in
// stream order (each stops when fn returns false): a scan of PCM_JOBS, or
// a client's offers through the client view.
func FindIn(jobID string, each func(fn func(Entry) bool) error) (Found, error) {
	var f Found
	err := each(func(e Entry) bool {
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
