package audit

import (
	"context"
	"encoding/json"
	"errors"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/pcm-project/pcm/events"
	"github.com/pcm-project/pcm/fleet"
	"github.com/pcm-project/pcm/internal/streamread"
)

// Event is one stored event as Replay delivers it. Header and Data
// alias the message received: copy them to keep them after the callback.
type Event struct {
	// Stream is PCM_JOBS or PCM_STATUS.
	Stream string
	// Subject is the NATS subject the event was stored on.
	Subject string
	// Seq is its stream sequence.
	Seq uint64
	// Stored is when the broker stored it: the order of the replay.
	Stored time.Time
	// Header and Data are the stored message.
	Header nats.Header
	Data   []byte
}

// JSON returns the event in the CloudEvents JSON format, valid or not: the
// stored body, byte for byte, for a structured-mode message, the message
// rendered from its headers and body for a binary-mode one (see
// events.StructuredJSON).
func (e Event) JSON() []byte { return events.StructuredJSON(e.Header, e.Data) }

// Decode reads the CloudEvent (see events.Decode).
func (e Event) Decode() (event.Event, error) { return events.Decode(e.Header, e.Data) }

// before orders events by stored time; at equal times offers come before
// statuses, then stream order.
func (e Event) before(o Event) bool {
	if !e.Stored.Equal(o.Stored) {
		return e.Stored.Before(o.Stored)
	}
	if e.Stream != o.Stream {
		return e.Stream == events.StreamJobs
	}
	return e.Seq < o.Seq
}

// Replay reads PCM_JOBS and PCM_STATUS with batched direct gets (no
// consumer: an auditor needs no consumer right), starting at f.Since (or
// the beginning, or where f.Resume says), and calls fn for every event
// that matches f, merged in the order the broker stored them. It holds at
// most a few batches in memory whatever the size of the history.
//
// Without f.Follow it returns nil once it has read both streams up to
// what they held when it started (or passed f.Until), and only then: a
// read that cannot deliver every stored event of the range fails with
// streamread.ErrIncomplete, naming the stream and the sequences missing
// (see internal/streamread: the history is checked against the streams'
// state, not trusted to whichever replica answers). With f.Follow it
// keeps delivering new events until f.Until passes or ctx ends (then it
// returns ctx.Err()): it subscribes to the streams' subjects (or the
// filter's) before it reads, and reads each stream on from its last
// sequence whenever a new message is heard of, retrying failed reads from
// there. An error from fn stops the replay and is returned.
func Replay(ctx context.Context, js jetstream.JetStream, f Filter, fn func(Event) error) error {
	if err := f.Validate(); err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	types := map[string]bool{}
	for _, t := range f.Types {
		full, _ := EventType(t)
		types[full] = true
	}
	wantJobs := len(types) == 0 || types[events.TypeJobOffered] || types[events.TypeJobCancelled]
	wantStatus := len(types) == 0 || types[events.TypeJobStatus]
	peekTypes := len(types) > 0 && len(types) < len(events.Types)

	var sources []*source
	defer func() {
		for _, s := range sources {
			if s.close != nil {
				s.close()
			}
		}
	}()
	if wantJobs {
		var filters []string
		if f.Client != "" {
			e, ok, err := fleet.EnrollmentOf(ctx, js, f.Client)
			if err != nil {
				return err
			}
			filters = e.Filters
			if !ok {
				filters = []string{events.JobSubject(events.Target{Kind: events.TargetClient, Name: f.Client}), events.SubjectJobsAll}
			}
		}
		keep := func(ev Event) bool {
			if f.JobID == "" && !peekTypes {
				return true
			}
			typ, subject, ok := peek(ev.Header, ev.Data)
			return ok && (f.JobID == "" || subject == f.JobID) && (!peekTypes || types[typ])
		}
		subjects := filters
		if len(subjects) == 0 {
			subjects = events.JobsStreamSubjects()
		}
		s, err := openSource(ctx, js, events.StreamJobs, filters, subjects, f, keep)
		if err != nil {
			return err
		}
		sources = append(sources, s)
	}
	if wantStatus {
		var filters []string
		switch {
		case f.JobID != "" && f.Client != "":
			filters = []string{events.StatusSubject(f.Client, f.JobID)}
		case f.JobID != "":
			filters = []string{events.StatusSubjectsOfJob(f.JobID)}
		case f.Client != "":
			filters = []string{events.StatusSubjectsOfClient(f.Client)}
		}
		keep := func(ev Event) bool {
			if !peekTypes {
				return true
			}
			typ, _, ok := peek(ev.Header, ev.Data)
			return ok && types[typ]
		}
		subjects := filters
		if len(subjects) == 0 {
			subjects = events.StatusStreamSubjects()
		}
		s, err := openSource(ctx, js, events.StreamStatus, filters, subjects, f, keep)
		if err != nil {
			return err
		}
		sources = append(sources, s)
	}
	return merge(ctx, sources, fn)
}

// merge delivers the heads of the sources in stored order. A followed
// source that is caught up (nothing pending on the broker) does not hold
// the others back: what it stores later is stored after what they have
// now.
func merge(ctx context.Context, sources []*source, fn func(Event) error) error {
	for {
		for _, s := range sources {
			if err := s.fill(ctx); err != nil {
				return err
			}
		}
		var next *source
		open := 0
		for _, s := range sources {
			if !s.done {
				open++
			}
			if s.head != nil && (next == nil || s.head.before(*next.head)) {
				next = s
			}
		}
		if next != nil {
			ev := *next.head
			next.head = nil
			if err := fn(ev); err != nil {
				return err
			}
			continue
		}
		if open == 0 {
			return nil
		}
		// Every open source is a caught-up follower: wait for any.
		if err := waitAny(ctx, sources); err != nil {
			return err
		}
	}
}

// waitAny blocks until an update arrives from one of the open sources
// (there are at most two) and takes it.
func waitAny(ctx context.Context, sources []*source) error {
	var open []*source
	for _, s := range sources {
		if !s.done {
			open = append(open, s)
		}
	}
	var a, b <-chan *streamread.Msg
	a = open[0].updates
	if len(open) > 1 {
		b = open[1].updates
	}
	select {
	case m, ok := <-a:
		return open[0].take(m, ok)
	case m, ok := <-b: // a nil channel never delivers
		return open[1].take(m, ok)
	case <-ctx.Done():
		return ctx.Err()
	}
}

// source is one stream being replayed: read to the end of its
// history (read), or followed (updates).
type source struct {
	stream string
	until  time.Time
	keep   func(Event) bool
	// read returns the next message of the history, ErrCaughtUp at its
	// end (a Reader's Next); nil when following.
	read func(context.Context) (streamread.Msg, error)
	// updates are a Follower's; stopErr says why they stopped.
	updates <-chan *streamread.Msg
	stopErr func() error
	close   func()

	head *Event
	idle bool // following: caught up with the broker, nothing buffered
	done bool
}

// openSource starts reading stream on filters (listening to subjects when
// following) from f.Resume's sequence for it, or f.Since.
func openSource(ctx context.Context, js jetstream.JetStream, stream string, filters, subjects []string, f Filter,
	keep func(Event) bool) (*source, error) {
	opts := streamread.Options{Filters: filters, StartTime: f.Since}
	if last, ok := f.Resume[stream]; ok {
		opts.StartSeq, opts.StartTime = last+1, time.Time{}
	}
	s := &source{stream: stream, until: f.Until, keep: keep}
	if f.Follow {
		fl, err := streamread.Follow(ctx, js, stream, streamread.FollowOptions{Options: opts, Subjects: subjects, Resync: f.Resync})
		if err != nil {
			return nil, streamErr(stream, err)
		}
		s.updates, s.stopErr, s.close = fl.Updates(), fl.Err, fl.Stop
		return s, nil
	}
	r, err := streamread.NewReader(js, stream, opts)
	if err != nil {
		return nil, streamErr(stream, err)
	}
	s.read, s.close = r.Next, func() { _ = r.Close() }
	return s, nil
}

// fill reads the source's next event unless it has one, is done, or is a
// caught-up follower with nothing new (then it only takes what is there).
func (s *source) fill(ctx context.Context) error {
	for !s.done && s.head == nil {
		if s.read != nil {
			m, err := s.read(ctx)
			switch {
			case errors.Is(err, streamread.ErrCaughtUp):
				s.done = true
			case err != nil:
				return streamErr(s.stream, err)
			default:
				s.offer(m)
			}
			continue
		}
		if s.idle {
			select {
			case m, ok := <-s.updates:
				if err := s.take(m, ok); err != nil {
					return err
				}
				continue
			default:
				return nil
			}
		}
		select {
		case m, ok := <-s.updates:
			if err := s.take(m, ok); err != nil {
				return err
			}
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// take records an update of the source's follower (ok false: it stopped).
func (s *source) take(m *streamread.Msg, ok bool) error {
	switch {
	case !ok:
		s.done = true
		if err := s.stopErr(); err != nil {
			return streamErr(s.stream, err)
		}
	case m == nil:
		s.idle = true
	default:
		s.idle = false
		s.offer(*m)
	}
	return nil
}

// offer makes m the source's head if the filter keeps it; past Until, the
// source is done.
func (s *source) offer(m streamread.Msg) {
	if !s.until.IsZero() && m.Time.After(s.until) {
		s.done = true
		return
	}
	ev := Event{Stream: s.stream, Subject: m.Subject, Seq: m.Seq, Stored: m.Time, Header: m.Header, Data: m.Data}
	if s.keep(ev) {
		s.head = &ev
	}
}

// peek reads an event's type and subject attributes without decoding it
// whole; ok is false when the message is not a readable CloudEvent.
func peek(header nats.Header, data []byte) (typ, subject string, ok bool) {
	if v := events.HeaderValue(header, "ce-specversion"); v != "" {
		typ, subject = events.HeaderValue(header, "ce-type"), events.HeaderValue(header, "ce-subject")
		return typ, subject, typ != ""
	}
	var probe struct {
		Type    string `json:"type"`
		Subject string `json:"subject"`
	}
	if json.Unmarshal(data, &probe) != nil || probe.Type == "" {
		return "", "", false
	}
	return probe.Type, probe.Subject, true
}

// streamErr says that reading stream failed, in the package's sentinels.
func streamErr(stream string, err error) error {
	return streamread.Describe("stream "+stream, err, ErrNotProvisioned, ErrRead)
}
