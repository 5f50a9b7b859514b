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
// statuses on pcm.status.<client>.*, or its maintenance windows (the keys
// of PCM_WINDOWS that apply to it: its own, its consumer's groups' and
// every client's) — and answers with the stored messages.
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
	// Windows are the values of its maintenance windows in PCM_WINDOWS:
	// its own key, its groups' (those of its consumer's filters) and all
	// (see events.WindowKeysOf), each as the KV stores it.
	Windows = "windows"
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
	if !ok || events.ValidID("client id", client) != nil || (what != Offers && what != Statuses && what != Windows) {
		fail(fmt.Errorf("%s: ask pcm.view.<client>.offers, pcm.view.<client>.statuses or pcm.view.<client>.windows", m.Subject))
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
	filters := c.CachedInfo().Config.FilterSubjects
	if what == Offers {
		return events.StreamJobs, filters, nil
	}
	var groups []string
	for _, f := range filters {
		if t, ok := events.TargetOfSubject(f); ok && t.Kind == events.TargetGroup {
			groups = append(groups, t.Name)
		}
	}
	var keys []string
	for _, k := range events.WindowKeysOf(client, groups) {
		keys = append(keys, "$KV."+events.BucketWindows+"."+k)
	}
	return streamOf(Windows), keys, nil
}

// streamOf is the stream that holds what.
func streamOf(what string) string {
	switch what {
	case Statuses:
		return events.StreamStatus
	case Windows:
		return "KV_" + events.BucketWindows
	}
	return events.StreamJobs
}

// requestTimeout bounds the wait for each answer of the view.
const requestTimeout = 30 * time.Second

// Scan calls fn, in stream order, for each stored message of client's what
// (Offers, Statuses or Windows) from the beginning, through the view service, page by
// page. It returns ErrNoView when no view service answers.
func Scan(ctx context.Context, nc *nats.Conn, client, what string, fn func(streamread.Msg) error) error {
	r := newReader(nc, client, what)
	defer r.Close()
	return streamread.Round(ctx, r, fn)
}

// Follow follows client's what (Offers or Statuses) through the view: a
// streamread.Follower whose Source is the view (streamread.FollowSource).
// It hears of new messages on subjects (core subscriptions, taken before
// the first read: for offers, the client's job subjects); a message heard
// is only a notice, the view's answer is what is delivered, in stream
// order, each message once. It reads again after a reconnection and every
// streamread.DefaultResync anyway. A read that fails after the first is
// retried with backoff and reported to onError; a first read's error ends
// the updates (see Err).
func Follow(ctx context.Context, nc *nats.Conn, client, what string, subjects []string, onError func(error)) (*streamread.Follower, error) {
	r := newReader(nc, client, what)
	f, err := streamread.FollowSource(ctx, nc, r, subjects, streamread.FollowOptions{OnError: onError})
	if err != nil {
		r.Close()
		return nil, fmt.Errorf("following %s of %s: %w", what, client, err)
	}
	return f, nil
}

// reader reads client's what through the view, page by page, from the
// sequence after the last message it returned: a streamread.Source. A
// round ends (streamread.ErrCaughtUp) with the page the view says is the
// last.
type reader struct {
	nc                   *nats.Conn
	client, what, stream string
	next                 uint64 // the sequence to read from

	// The page being read: its subscription and answers; nil between
	// pages.
	sub *nats.Subscription
	ch  chan *nats.Msg
}

func newReader(nc *nats.Conn, client, what string) *reader {
	return &reader{nc: nc, client: client, what: what, stream: streamOf(what)}
}

// Next returns the next message, or streamread.ErrCaughtUp at the end of
// a round.
func (r *reader) Next(ctx context.Context) (streamread.Msg, error) {
	for {
		if r.sub == nil {
			if err := r.ask(); err != nil {
				return streamread.Msg{}, err
			}
		}
		m, err := r.answer(ctx)
		if err != nil {
			r.Close()
			return streamread.Msg{}, err
		}
		if n := m.Header.Get(HdrNext); n != "" {
			r.Close()
			next, err := strconv.ParseUint(n, 10, 64)
			if err != nil {
				return streamread.Msg{}, fmt.Errorf("%w: a page ended with %s %q", ErrRefused, HdrNext, n)
			}
			r.next = max(r.next, next)
			if m.Header.Get(HdrMore) == "true" {
				continue
			}
			return streamread.Msg{}, streamread.ErrCaughtUp
		}
		msg, err := msgOf(r.stream, m)
		if err != nil {
			r.Close()
			return streamread.Msg{}, err
		}
		if msg.Seq < r.next {
			continue // returned already
		}
		r.next = msg.Seq + 1
		return msg, nil
	}
}

// ask requests the page from r.next.
func (r *reader) ask() error {
	inbox := r.nc.NewRespInbox()
	ch := make(chan *nats.Msg, DefaultMax+1)
	sub, err := r.nc.ChanSubscribe(inbox, ch)
	if err != nil {
		return err
	}
	body, _ := json.Marshal(request{StartSeq: r.next})
	if err := r.nc.PublishRequest(Subject(r.client, r.what), inbox, body); err != nil {
		_ = sub.Unsubscribe()
		return err
	}
	r.sub, r.ch = sub, ch
	return nil
}

// answer waits for the page's next answer: a message, its end, or why not.
func (r *reader) answer(ctx context.Context) (*nats.Msg, error) {
	t := time.NewTimer(requestTimeout)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-t.C:
		return nil, fmt.Errorf("%w: no answer from %s within %s", ErrNoView, Subject(r.client, r.what), requestTimeout)
	case m := <-r.ch:
		if m.Header.Get("Status") == "503" {
			return nil, fmt.Errorf("%w: %s: run pcm broker, or pcm controller next to the NATS cluster", ErrNoView, Subject(r.client, r.what))
		}
		if e := m.Header.Get(HdrError); e != "" {
			return nil, fmt.Errorf("%w: %s", ErrRefused, e)
		}
		return m, nil
	}
}

// Close drops the page being read, if any.
func (r *reader) Close() error {
	if r.sub != nil {
		_ = r.sub.Unsubscribe()
		r.sub, r.ch = nil, nil
	}
	return nil
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
