// Package clientview is the client view: a service of the pcm account that
// answers a client's requests for its own offers and its own statuses.
//
// In pcm's trust model (docs/security.md) a client's account may not read
// the event streams at large: a batched direct get names its filter in the
// request's body, where no import can confine it, so a desktop allowed to
// list its client's offers that way could read every client's. Instead the
// client's account imports one subject, pcm.view.<client>.<what>, and the
// view service, running with the pcm account's rights (inside pcm broker,
// or pcm controller next to a stock cluster), reads the stream for that
// client only — the offers on its consumer's filter subjects, or the
// statuses on pcm.status.<client>.* — and answers with the stored messages.
// The client id comes from the request's subject, which only that client's
// account can send to.
//
// The protocol (request, answers, paging) is in docs/protocol.md's words
// here: a request's body is {"start_seq": N, "max": M} (both optional); the
// answers are the stored messages in stream order, each with its own
// headers and Pcm-View-Seq, Pcm-View-Subject and Pcm-View-Time set by the
// service, then an empty message with Pcm-View-Next (the sequence to ask
// from next) and Pcm-View-More ("true" when the page was full), or one
// with Pcm-View-Error.
//
// It never writes to a stream, never creates a consumer and never logs but
// through the injected logger.
package clientview

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/pcm-project/pcm/events"
	"github.com/pcm-project/pcm/internal/streamread"
)

// What a client may ask for.
const (
	// Offers are the events on its consumer's filter subjects in PCM_JOBS:
	// its offers and their cancellations.
	Offers = "offers"
	// Statuses are its statuses in PCM_STATUS.
	Statuses = "statuses"
)

// Subjects of the view.
const (
	subjectPrefix = "pcm.view."
	// SubjectAll matches every request of the view.
	SubjectAll = subjectPrefix + "*.*"
	// queue is the queue group of the view's responders: one answers.
	queue = "pcm-view"
)

// Subject is where client asks for what.
func Subject(client, what string) string { return subjectPrefix + client + "." + what }

// SubjectsOf matches every request of client.
func SubjectsOf(client string) string { return subjectPrefix + client + ".*" }

// The headers of the answers.
const (
	HdrSeq     = "Pcm-View-Seq"
	HdrSubject = "Pcm-View-Subject"
	HdrTime    = "Pcm-View-Time"
	HdrNext    = "Pcm-View-Next"
	HdrMore    = "Pcm-View-More"
	HdrError   = "Pcm-View-Error"
)

// Paging.
const (
	// DefaultMax is how many messages one page holds.
	DefaultMax = 500
	// maxBytes bounds the bodies of one page.
	maxBytes = 4 << 20
)

// Sentinel errors.
var (
	// ErrNoView: nobody answers the view's requests: neither pcm broker
	// nor pcm controller runs next to the broker (or, on an open broker,
	// an older one).
	ErrNoView = errors.New("no client view service answers")
	// ErrRefused: the view answered with an error.
	ErrRefused = errors.New("the client view refused the request")
)

// request is a request's body.
type request struct {
	StartSeq uint64 `json:"start_seq,omitempty"`
	Max      int    `json:"max,omitempty"`
}

// Service answers the view's requests.
type Service struct {
	js  jetstream.JetStream
	log *zap.Logger
	sub *nats.Subscription
	wg  sync.WaitGroup
}

// Serve answers the view's requests on js's connection, which must be an
// admin's of the pcm account (or an open broker's), until Stop. Several
// services may run (one per broker of a cluster): one of them answers each
// request.
func Serve(js jetstream.JetStream, log *zap.Logger) (*Service, error) {
	if log == nil {
		log = zap.NewNop()
	}
	s := &Service{js: js, log: log}
	sub, err := js.Conn().QueueSubscribe(SubjectAll, queue, func(m *nats.Msg) {
		s.wg.Go(func() { s.answer(m) })
	})
	if err != nil {
		return nil, fmt.Errorf("serving the client view: %w", err)
	}
	if err := js.Conn().Flush(); err != nil {
		_ = sub.Unsubscribe()
		return nil, fmt.Errorf("serving the client view: %w", err)
	}
	s.sub = sub
	return s, nil
}

// Stop stops answering and waits for the answers under way.
func (s *Service) Stop() {
	_ = s.sub.Unsubscribe()
	s.wg.Wait()
}

// answerTimeout bounds the reading of one page.
const answerTimeout = 30 * time.Second

// answer reads one page for the client the request's subject names.
func (s *Service) answer(m *nats.Msg) {
	if m.Reply == "" {
		return
	}
	client, what, ok := strings.Cut(strings.TrimPrefix(m.Subject, subjectPrefix), ".")
	fail := func(err error) {
		end := nats.NewMsg(m.Reply)
		end.Header.Set(HdrError, err.Error())
		_ = s.js.Conn().PublishMsg(end)
	}
	if !ok || events.ValidID("client id", client) != nil || (what != Offers && what != Statuses) {
		fail(fmt.Errorf("%s: ask pcm.view.<client>.offers or pcm.view.<client>.statuses", m.Subject))
		return
	}
	var req request
	if len(m.Data) > 0 {
		if err := json.Unmarshal(m.Data, &req); err != nil {
			fail(fmt.Errorf("the request's body is not {\"start_seq\": N, \"max\": M}: %v", err))
			return
		}
	}
	if req.Max <= 0 || req.Max > DefaultMax {
		req.Max = DefaultMax
	}
	ctx, cancel := context.WithTimeout(context.Background(), answerTimeout)
	defer cancel()
	stream, filters, err := s.filters(ctx, client, what)
	if err != nil {
		fail(err)
		return
	}
	sent, bytes, next, more := 0, 0, req.StartSeq, false
	errFull := errors.New("page full")
	err = streamread.Scan(ctx, s.js, stream, streamread.Options{Filters: filters, StartSeq: req.StartSeq}, func(msg streamread.Msg) error {
		if sent >= req.Max || (sent > 0 && bytes+len(msg.Data) > maxBytes) {
			more = true
			return errFull
		}
		out := nats.NewMsg(m.Reply)
		for k, vs := range msg.Header {
			switch k {
			case HdrSeq, HdrSubject, HdrTime, HdrNext, HdrMore, HdrError:
				continue // a stored message cannot pass for the view's word
			}
			out.Header[k] = vs
		}
		out.Header.Set(HdrSeq, strconv.FormatUint(msg.Seq, 10))
		out.Header.Set(HdrSubject, msg.Subject)
		out.Header.Set(HdrTime, msg.Time.UTC().Format(time.RFC3339Nano))
		out.Data = msg.Data
		if err := s.js.Conn().PublishMsg(out); err != nil {
			return err
		}
		sent++
		bytes += len(msg.Data)
		next = msg.Seq + 1
		return nil
	})
	if err != nil && !errors.Is(err, errFull) {
		s.log.Warn("reading a client's view failed", zap.String("client", client), zap.String("what", what), zap.Error(err))
		fail(fmt.Errorf("reading %s of %s: %w", what, client, err))
		return
	}
	end := nats.NewMsg(m.Reply)
	end.Header.Set(HdrNext, strconv.FormatUint(next, 10))
	end.Header.Set(HdrMore, strconv.FormatBool(more))
	_ = s.js.Conn().PublishMsg(end)
}

// filters are the stream and subjects of client's what.
func (s *Service) filters(ctx context.Context, client, what string) (string, []string, error) {
	if what == Statuses {
		return events.StreamStatus, []string{events.StatusSubjectsOfClient(client)}, nil
	}
	c, err := s.js.Consumer(ctx, events.StreamJobs, events.ConsumerName(client))
	if errors.Is(err, jetstream.ErrConsumerNotFound) {
		return "", nil, fmt.Errorf("client %s is not enrolled (no consumer %s)", client, events.ConsumerName(client))
	}
	if err != nil {
		return "", nil, fmt.Errorf("reading the enrollment of %s: %w", client, err)
	}
	return events.StreamJobs, c.CachedInfo().Config.FilterSubjects, nil
}

// requestTimeout bounds the wait for each answer of the view.
const requestTimeout = 30 * time.Second

// Scan calls fn, in stream order, for each stored message of client's what
// (Offers or Statuses) from the beginning, through the view service, page by
// page. It returns ErrNoView when no view service answers.
func Scan(ctx context.Context, nc *nats.Conn, client, what string, fn func(streamread.Msg) error) error {
	return scanFrom(ctx, nc, client, what, 0, fn)
}

// page reads one page.
func page(ctx context.Context, nc *nats.Conn, client, what string, start uint64, fn func(streamread.Msg) error) (uint64, bool, error) {
	inbox := nc.NewRespInbox()
	ch := make(chan *nats.Msg, DefaultMax+1)
	sub, err := nc.ChanSubscribe(inbox, ch)
	if err != nil {
		return 0, false, err
	}
	defer sub.Unsubscribe()
	body, _ := json.Marshal(request{StartSeq: start})
	if err := nc.PublishRequest(Subject(client, what), inbox, body); err != nil {
		return 0, false, err
	}
	stream := events.StreamJobs
	if what == Statuses {
		stream = events.StreamStatus
	}
	for {
		t := time.NewTimer(requestTimeout)
		select {
		case <-ctx.Done():
			t.Stop()
			return 0, false, ctx.Err()
		case <-t.C:
			return 0, false, fmt.Errorf("%w: no answer from %s within %s", ErrNoView, Subject(client, what), requestTimeout)
		case m := <-ch:
			t.Stop()
			if m.Header.Get("Status") == "503" {
				return 0, false, fmt.Errorf("%w: %s: run pcm broker, or pcm controller next to the NATS cluster", ErrNoView, Subject(client, what))
			}
			if e := m.Header.Get(HdrError); e != "" {
				return 0, false, fmt.Errorf("%w: %s", ErrRefused, e)
			}
			if n := m.Header.Get(HdrNext); n != "" {
				next, err := strconv.ParseUint(n, 10, 64)
				if err != nil {
					return 0, false, fmt.Errorf("%w: a page ended with %s %q", ErrRefused, HdrNext, n)
				}
				return next, m.Header.Get(HdrMore) == "true", nil
			}
			msg, err := msgOf(stream, m)
			if err != nil {
				return 0, false, err
			}
			if err := fn(msg); err != nil {
				return 0, false, err
			}
		}
	}
}

// msgOf reads a stored message out of an answer.
func msgOf(stream string, m *nats.Msg) (streamread.Msg, error) {
	seq, err := strconv.ParseUint(m.Header.Get(HdrSeq), 10, 64)
	if err != nil {
		return streamread.Msg{}, fmt.Errorf("%w: an answer without %s", ErrRefused, HdrSeq)
	}
	ts, err := time.Parse(time.RFC3339Nano, m.Header.Get(HdrTime))
	if err != nil {
		return streamread.Msg{}, fmt.Errorf("%w: an answer with %s %q", ErrRefused, HdrTime, m.Header.Get(HdrTime))
	}
	out := streamread.Msg{Stream: stream, Subject: m.Header.Get(HdrSubject), Seq: seq, Time: ts, Data: m.Data}
	h := m.Header
	for _, k := range []string{HdrSeq, HdrSubject, HdrTime} {
		delete(h, k)
	}
	if len(h) > 0 {
		out.Header = h
	}
	return out, nil
}

// DefaultResync is how often a Follower reads through the view when
// nothing told it of a new message.
const DefaultResync = 10 * time.Second

// noticeRetries are the delays after which a Follower reads again when a
// notice's read found nothing new (the stream may store the message a
// moment after it is heard).
var noticeRetries = []time.Duration{5 * time.Millisecond, 25 * time.Millisecond, 100 * time.Millisecond, 500 * time.Millisecond}

// Follower follows a client's offers or statuses through the view: its
// Updates send each stored message in stream order, then nil once it has
// sent what was stored when it began, then each new message as it is
// stored, until Stop or the end of the context; then they close (see Err).
type Follower struct {
	updates chan *streamread.Msg
	cancel  context.CancelFunc
	done    chan struct{}
	err     error
}

// Updates are the messages.
func (f *Follower) Updates() <-chan *streamread.Msg { return f.updates }

// Err is why the updates closed early (nil after Stop or the context's
// end).
func (f *Follower) Err() error {
	<-f.done
	return f.err
}

// Stop stops the follower and waits for it.
func (f *Follower) Stop() {
	f.cancel()
	<-f.done
}

// Follow follows client's what (Offers or Statuses) through the view. It
// hears of new messages on subjects (core subscriptions, taken before the
// first read: for offers, the client's job subjects); a message heard is
// only a notice, the view's answer is what is delivered, in stream order,
// each message once. It reads again after a reconnection and every
// DefaultResync anyway. A read that fails after the first is retried and
// reported to onError; a first read's error ends the updates (see Err).
func Follow(ctx context.Context, nc *nats.Conn, client, what string, subjects []string, onError func(error)) (*Follower, error) {
	ctx, cancel := context.WithCancel(ctx)
	notices := make(chan struct{}, 1)
	notify := func(*nats.Msg) {
		select {
		case notices <- struct{}{}:
		default:
		}
	}
	var subs []*nats.Subscription
	stop := func() {
		for _, s := range subs {
			_ = s.Unsubscribe()
		}
	}
	for _, s := range subjects {
		sub, err := nc.Subscribe(s, notify)
		if err != nil {
			stop()
			cancel()
			return nil, fmt.Errorf("following %s of %s: subscribing to %s: %w", what, client, s, err)
		}
		subs = append(subs, sub)
	}
	reconnected := nc.StatusChanged(nats.CONNECTED)
	if err := nc.Flush(); err != nil {
		stop()
		nc.RemoveStatusListener(reconnected)
		cancel()
		return nil, fmt.Errorf("following %s of %s: %w", what, client, err)
	}
	f := &Follower{updates: make(chan *streamread.Msg, 64), cancel: cancel, done: make(chan struct{})}
	var next uint64
	read := func() (int, error) {
		n := 0
		err := scanFrom(ctx, nc, client, what, next, func(m streamread.Msg) error {
			if m.Seq < next {
				return nil
			}
			next = m.Seq + 1
			n++
			select {
			case f.updates <- &m:
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		})
		return n, err
	}
	go func() {
		defer close(f.done)
		defer close(f.updates)
		defer nc.RemoveStatusListener(reconnected)
		defer stop()
		if _, err := read(); err != nil {
			if ctx.Err() == nil {
				f.err = err
			}
			return
		}
		select {
		case f.updates <- nil:
		case <-ctx.Done():
			return
		}
		tick := time.NewTicker(DefaultResync)
		defer tick.Stop()
		var retry <-chan time.Time
		tries := 0
		for {
			noticed := false
			select {
			case <-ctx.Done():
				return
			case <-notices:
				noticed, tries = true, 0
			case <-reconnected:
			case <-tick.C:
			case <-retry:
				noticed = true
			}
			retry = nil
			n, err := read()
			switch {
			case ctx.Err() != nil:
				return
			case err != nil:
				if onError != nil {
					onError(err)
				}
				retry = time.After(time.Second)
			case n == 0 && noticed && tries < len(noticeRetries):
				retry = time.After(noticeRetries[tries])
				tries++
			}
		}
	}()
	return f, nil
}

// scanFrom is Scan from sequence start.
func scanFrom(ctx context.Context, nc *nats.Conn, client, what string, start uint64, fn func(streamread.Msg) error) error {
	for {
		next, more, err := page(ctx, nc, client, what, start, fn)
		if err != nil || !more {
			return err
		}
		start = next
	}
}
