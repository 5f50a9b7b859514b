package streamread

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
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
	// errRetry and maxErrRetry bound the backoff after a failed read.
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
	// Resync is how often Follow reads the stream anyway when nothing
	// told it of a new message: it catches a message whose notice was
	// lost (a refused or dropped subscription, a reconnection it did not
	// see). Default DefaultResync; negative: never.
	Resync time.Duration
	// CaughtUp, when set, is called each time Follow has delivered every
	// message stored when its round began. An error from it stops Follow
	// and is returned as is.
	CaughtUp func() error
	// OnError, when set, hears the read errors Follow retries (those
	// after its first round; an error before is returned).
	OnError func(error)
}

// Follow calls fn, in stream order, for every message of stream on
// o.Filters from o's start, then for every new one as it is stored, until
// ctx ends (it returns ctx.Err()) or fn or o.CaughtUp return an error (it
// returns it as is).
//
// How it follows without polling: before its first read it subscribes (core
// NATS) to o.Subjects. A message heard there is only a notice: Follow does
// not deliver it (it carries no stream sequence, and the stream may not
// have stored it yet, or ever). Each notice starts a read of the stream
// from the last sequence delivered, so what Follow delivers always comes
// from the stream, in stream order, each message once, without gaps:
// ordering and de-duplication are by sequence, whatever the order of the
// notices. A notice can arrive before the stream has stored its message;
// Follow remembers each notice (a hash of subject and body) until a read
// returns the same message and, while one is unread, reads again after a
// short backoff (1 ms doubling to 200 ms), forgetting notices of messages
// the stream did not store after 2 s. Notices lost (the broker refusing a
// subscription, a slow subscriber's drops, a reconnection) delay a message
// until the next notice, the reconnection (Follow reads when the
// connection is re-established), or the resync read every o.Resync.
//
// Read errors before the first round completes are returned; later ones
// (a broker restart, a reconnection) are retried with backoff and reported
// to o.OnError.
func Follow(ctx context.Context, js jetstream.JetStream, stream string, o FollowOptions, fn func(Msg) error) error {
	subjects := o.Subjects
	if len(subjects) == 0 {
		subjects = o.Filters
	}
	if len(subjects) == 0 {
		return fmt.Errorf("%w: following %s needs subjects to subscribe to (its filters, or the stream's subjects)", ErrInvalidOptions, stream)
	}
	for _, s := range subjects {
		if err := validSubject(s); err != nil {
			return err
		}
	}
	if o.Resync == 0 {
		o.Resync = DefaultResync
	}
	r, err := NewReader(js, stream, o.Options)
	if err != nil {
		return err
	}
	defer func() { _ = r.Close() }()

	nc := js.Conn()
	w := newNotices()
	for _, s := range subjects {
		sub, err := nc.Subscribe(s, w.heard)
		if err != nil {
			return fmt.Errorf("following %s: subscribing to %s: %w", stream, s, err)
		}
		defer func() { _ = sub.Unsubscribe() }()
		// A notice is small work; beyond these, notices are dropped (a
		// later notice or the resync catches up).
		_ = sub.SetPendingLimits(8192, 8<<20)
	}
	// The subscriptions are in effect at the broker before the first read.
	_ = nc.FlushTimeout(r.opts.Timeout)
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
	var backoff, errBackoff time.Duration
	for {
		callers, err := readRound(ctx, r, w, fn)
		switch {
		case err == nil:
			errBackoff = 0
			rounds++
			if o.CaughtUp != nil {
				if err := o.CaughtUp(); err != nil {
					return err
				}
			}
		case callers:
			return err
		case ctx.Err() != nil:
			return ctx.Err()
		case rounds == 0:
			return err
		default:
			if o.OnError != nil {
				o.OnError(err)
			}
			errBackoff = min(max(2*errBackoff, errRetry), maxErrRetry)
			if !sleep(ctx, errBackoff) {
				return ctx.Err()
			}
			continue
		}
		var wait time.Duration
		switch {
		case w.unread(time.Now()) > 0:
			backoff = min(max(2*backoff, firstRetry), maxRetry)
			wait = backoff
		case rounds == 1:
			backoff, wait = 0, settle
		default:
			backoff = 0
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

// readRound delivers one round of r to fn, marking each message read.
// callers is true when the error is fn's.
func readRound(ctx context.Context, r *Reader, w *notices, fn func(Msg) error) (callers bool, err error) {
	for {
		m, err := r.Next(ctx)
		if errors.Is(err, ErrCaughtUp) {
			return false, nil
		}
		if err != nil {
			return false, err
		}
		w.read(m.Subject, m.Data)
		if err := fn(m); err != nil {
			return true, err
		}
	}
}

// sleep waits d or until ctx ends; false when ctx ended.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
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
