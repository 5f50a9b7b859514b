package streamread

import (
	"context"
	"fmt"
	"hash/maphash"
	"io"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/pcm-project/pcm/internal/backoff"
)

// DefaultResync is how often Follow reads the stream when nothing told it
// of a new message (see FollowOptions.Resync).
const DefaultResync = 10 * time.Second

// Timing of Follow's reads after a heard message.
const (
	// firstRetry and maxRetry bound the backoff between the reads that
	// look for a heard message not stored yet.
	firstRetry = time.Millisecond
	maxRetry   = 200 * time.Millisecond
	// settle is when Follow reads again after its first round, for a
	// message published just before its subscriptions took effect and
	// stored just after that round began.
	settle = 100 * time.Millisecond
	// forgetAfter is how long a heard message may stay unread before
	// Follow stops looking for it: a publish the stream did not store (a
	// duplicate Nats-Msg-Id, a refused message).
	forgetAfter = 2 * time.Second
	// maxUnread bounds the heard messages Follow keeps looking for.
	maxUnread = 1 << 16
	// recentReads is how many read messages Follow remembers, for a
	// message read before its subscription's copy is handled.
	recentReads = 4096
	// errRetry and maxErrRetry bound the backoff after a failed round.
	errRetry    = 100 * time.Millisecond
	maxErrRetry = 5 * time.Second
)

// FollowOptions configure Follow.
type FollowOptions struct {
	Options
	// Subjects are the subjects Follow subscribes to, to hear of new
	// messages; default Filters. Required when Filters is empty (the
	// stream's subjects, then).
	Subjects []string
	// Resync is how often the Follower reads the stream anyway when
	// nothing told it of a new message: it catches a message whose notice
	// was lost (a refused or dropped subscription, a reconnection it did
	// not see). Default DefaultResync; negative: never.
	Resync time.Duration
	// OnError, when set, hears the read errors the Follower retries (those
	// after its first round; an error before it stops the Follower). It is
	// called from the Follower's goroutine.
	OnError func(error)
}

// Follower is a stream being followed: what Follow returns. Its Updates
// channel has the shape of nats.go's KeyWatcher.Updates(): the stored
// messages, each once in stream order, and a nil each time it has caught
// up with the stream.
type Follower struct {
	updates chan *Msg
	done    chan struct{}
	cancel  context.CancelFunc
	err     error // set before done is closed
}

// Updates delivers the messages on the filters, from the start, in stream
// order, each once, then each new one as it is stored; a nil marks each
// time the Follower has delivered every message stored when it last looked
// (the first nil ends the history). It is closed when the Follower stops
// (see Err). A Follower waits for the caller to take each update.
func (f *Follower) Updates() <-chan *Msg { return f.updates }

// Err waits until the Follower has stopped and says why: nil when it was
// stopped (Stop, or the end of its context), else the error of its first
// round (a missing stream, no right to read it, ErrIncomplete); errors
// after the first round are retried, not returned.
func (f *Follower) Err() error {
	<-f.done
	return f.err
}

// Stop stops the Follower and waits until it has.
func (f *Follower) Stop() {
	f.cancel()
	<-f.done
}

// Source is what a Follower reads: Next returns the message after the last
// one it returned, or ErrCaughtUp once it has returned every message stored
// when its round began (the next call begins a new round, from where it
// is). A Reader is one; so is a client's view of its offers (package
// clientview). A Source that is an io.Closer is closed when the Follower
// stops.
type Source interface {
	Next(ctx context.Context) (Msg, error)
}

// Follow starts following stream on o.Filters from o's start: FollowSource
// of a Reader of the stream (direct gets), hearing of new messages on
// o.Subjects. It returns once its subscriptions are in effect at the
// broker; the messages come on the Follower's Updates channel until ctx
// ends or Stop.
//
// How it follows without polling: before its first read it subscribes (core
// NATS) to o.Subjects. A message heard there is only a notice: the Follower
// does not deliver it (it carries no stream sequence, and the stream may not
// have stored it yet, or ever). Each notice starts a read of the stream
// from the last sequence delivered (a round of a Reader, complete or
// failed), so what it delivers always comes from the stream, in stream
// order, each message once, without gaps: ordering and de-duplication are by
// sequence, whatever the order of the notices. A notice can arrive before
// the stream has stored its message; the Follower remembers each notice (a
// hash of subject and body) until a read returns the same message and,
// while one is unread, reads again after a short backoff (1 ms doubling to
// 200 ms), forgetting notices of messages the stream did not store after
// 2 s. Notices lost (the broker refusing a subscription, a slow
// subscriber's drops, a reconnection) delay a message until the next
// notice, the reconnection (it reads when the connection is
// re-established), or the resync read every o.Resync.
//
// Read errors before the first round completes stop the Follower (see
// Err), and so does a closed connection; later ones (a broker restart, a
// reconnection, a read that could not complete) are retried with backoff,
// from the last message delivered, and reported to o.OnError.
func Follow(ctx context.Context, js jetstream.JetStream, stream string, o FollowOptions) (*Follower, error) {
	subjects := o.Subjects
	if len(subjects) == 0 {
		subjects = o.Filters
	}
	if len(subjects) == 0 {
		return nil, fmt.Errorf("%w: following %s needs subjects to subscribe to (its filters, or the stream's subjects)", ErrInvalidOptions, stream)
	}
	for _, s := range subjects {
		if err := validSubject(s); err != nil {
			return nil, err
		}
	}
	r, err := NewReader(js, stream, o.Options)
	if err != nil {
		return nil, err
	}
	f, err := FollowSource(ctx, js.Conn(), r, subjects, o)
	if err != nil {
		_ = r.Close()
		return nil, fmt.Errorf("following %s: %w", stream, err)
	}
	return f, nil
}

// FollowSource follows src, hearing of new messages on subjects (core
// subscriptions on nc, in effect at the broker before the first read), as
// Follow describes: each notice, reconnection or resync (o.Resync) starts
// a round of src; what it delivers is src's, each message once, in src's
// order; a heard message not read yet is looked for again after a short
// backoff. Of o, only Resync, OnError and Timeout (the wait for the
// subscriptions to take effect) are used.
func FollowSource(ctx context.Context, nc *nats.Conn, src Source, subjects []string, o FollowOptions) (*Follower, error) {
	if len(subjects) == 0 {
		return nil, fmt.Errorf("%w: a follower needs subjects to hear of new messages on", ErrInvalidOptions)
	}
	if o.Resync == 0 {
		o.Resync = DefaultResync
	}
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	w := newNotices()
	var subs []*nats.Subscription
	unsubscribe := func() {
		for _, sub := range subs {
			_ = sub.Unsubscribe()
		}
	}
	for _, s := range subjects {
		sub, err := nc.Subscribe(s, w.heard)
		if err != nil {
			unsubscribe()
			return nil, fmt.Errorf("subscribing to %s: %w", s, err)
		}
		subs = append(subs, sub)
		// A notice is small work; beyond these, notices are dropped (a
		// later notice or the resync catches up).
		_ = sub.SetPendingLimits(8192, 8<<20)
	}
	// The subscriptions are in effect at the broker before the first read.
	_ = nc.FlushTimeout(o.Timeout)
	ctx, cancel := context.WithCancel(ctx)
	f := &Follower{updates: make(chan *Msg, 64), done: make(chan struct{}), cancel: cancel}
	go func() {
		defer close(f.done)
		defer close(f.updates)
		defer cancel()
		defer func() {
			if c, ok := src.(io.Closer); ok {
				_ = c.Close()
			}
		}()
		defer unsubscribe()
		err := f.run(ctx, nc, src, w, o)
		if ctx.Err() != nil {
			err = nil // stopped
		}
		f.err = err
	}()
	return f, nil
}

// run is the Follower's loop.
func (f *Follower) run(ctx context.Context, nc *nats.Conn, r Source, w *notices, o FollowOptions) error {
	reconnected := nc.StatusChanged(nats.CONNECTED)
	defer nc.RemoveStatusListener(reconnected)
	var resync <-chan time.Time
	if o.Resync > 0 {
		t := time.NewTicker(o.Resync)
		defer t.Stop()
		resync = t.C
	}
	retry := time.NewTimer(time.Hour)
	retry.Stop()
	defer retry.Stop()

	rounds := 0
	noticeWait := backoff.Backoff{Initial: firstRetry, Max: maxRetry, Jitter: -1}
	errWait := backoff.Backoff{Initial: errRetry, Max: maxErrRetry}
	for {
		err := f.round(ctx, r, w)
		switch {
		case err == nil:
			errWait.Reset()
			rounds++
			select {
			case f.updates <- nil:
			case <-ctx.Done():
				return ctx.Err()
			}
		case ctx.Err() != nil:
			return ctx.Err()
		case rounds == 0, nc.IsClosed():
			// Before the history is read, or once the connection is
			// closed for good (it will not reconnect), an error is the
			// end: the caller decides whether to start again.
			return err
		default:
			if o.OnError != nil {
				o.OnError(err)
			}
			if err := errWait.Wait(ctx); err != nil {
				return err
			}
			continue
		}
		var wait time.Duration
		switch {
		case w.unread(time.Now()) > 0:
			wait = noticeWait.Next()
		case rounds == 1:
			noticeWait.Reset()
			wait = settle
		default:
			noticeWait.Reset()
		}
		var retryC <-chan time.Time
		if wait > 0 {
			retry.Reset(wait)
			retryC = retry.C
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-w.wake:
		case <-retryC:
		case <-resync:
		case <-reconnected:
		}
		if !retry.Stop() {
			select {
			case <-retry.C:
			default:
			}
		}
	}
}

// round delivers one round of r, marking each message read.
func (f *Follower) round(ctx context.Context, r Source, w *notices) error {
	return Round(ctx, r, func(m Msg) error {
		w.read(m.Subject, m.Data)
		select {
		case f.updates <- &m:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	})
}

// notices are the messages heard on the subscriptions and not read from
// the stream yet, and the messages read lately, by hash of subject and
// body.
type notices struct {
	seed maphash.Seed
	wake chan struct{}

	mu      sync.Mutex
	pending map[uint64]time.Time // heard, unread: when heard
	recent  map[uint64]int       // read lately: how many times in ring
	ring    []uint64
	pos     int
}

func newNotices() *notices {
	return &notices{seed: maphash.MakeSeed(), wake: make(chan struct{}, 1),
		pending: map[uint64]time.Time{}, recent: map[uint64]int{}, ring: make([]uint64, 0, recentReads)}
}

func (w *notices) sum(subject string, data []byte) uint64 {
	var h maphash.Hash
	h.SetSeed(w.seed)
	_, _ = h.WriteString(subject)
	_ = h.WriteByte(0)
	_, _ = h.Write(data)
	return h.Sum64()
}

// heard records a message heard on a subscription and wakes Follow,
// unless it was read already.
func (w *notices) heard(msg *nats.Msg) {
	h := w.sum(msg.Subject, msg.Data)
	w.mu.Lock()
	if w.recent[h] > 0 {
		w.mu.Unlock()
		return
	}
	if _, ok := w.pending[h]; !ok && len(w.pending) < maxUnread {
		w.pending[h] = time.Now()
	}
	w.mu.Unlock()
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// read records a message read from the stream.
func (w *notices) read(subject string, data []byte) {
	h := w.sum(subject, data)
	w.mu.Lock()
	defer w.mu.Unlock()
	delete(w.pending, h)
	if len(w.ring) < cap(w.ring) {
		w.ring = append(w.ring, h)
	} else {
		old := w.ring[w.pos]
		if w.recent[old]--; w.recent[old] <= 0 {
			delete(w.recent, old)
		}
		w.ring[w.pos] = h
		w.pos = (w.pos + 1) % len(w.ring)
	}
	w.recent[h]++
}

// unread forgets the notices older than forgetAfter and counts the others.
func (w *notices) unread(now time.Time) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	for h, t := range w.pending {
		if now.Sub(t) > forgetAfter {
			delete(w.pending, h)
		}
	}
	return len(w.pending)
}
