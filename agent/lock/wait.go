package lock

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"
)

// Acquire waits until it holds the lock or ctx ends; it never gives up
// because the lock is held, and it retries through broker outages. It returns
// early only for an unusable info (ErrInvalidInfo), a bucket without per-key
// TTLs (ErrNoTTL) or a closed connection. onBusy (may be nil) is called with
// the holder's Info when the lock is found held, once per holder (not at
// every renewal), including when the lock passes from one holder to another
// while Acquire waits. While waiting it watches the key and tries again only
// when the key is deleted, purged or expires, or after a reconnection to the
// broker: it never polls.
func (l *Locker) Acquire(ctx context.Context, info Info, onBusy func(Info)) (*Lease, error) {
	info, err := prepare(info)
	if err != nil {
		return nil, err
	}
	id := newLeaseID() // one id for every attempt: a create whose reply was lost is recognised
	var (
		w       *watch
		busy    *Info
		backoff = newBackoff(100*time.Millisecond, min(l.cfg.Lease, 5*time.Second))
	)
	defer func() { w.stop() }()
	notice := func(holder Info) {
		if busy != nil && sameHolder(*busy, holder) {
			return
		}
		busy = &holder
		l.log.Debug("the lock is held; waiting for it",
			zap.String("holder", string(holder.Holder)), zap.Int("holder_pid", holder.PID),
			zap.String("holder_job", holder.JobID), zap.Time("since", holder.Since))
		if onBusy != nil {
			onBusy(holder)
		}
	}
	// A watch does not notice a broker restart for many seconds (its
	// consumer is recreated after two missed 5 s heartbeats): restart it at
	// every reconnection instead.
	var reconnected <-chan nats.Status
	if nc := l.js.Conn(); nc != nil {
		ch := nc.StatusChanged(nats.CONNECTED)
		defer nc.RemoveStatusListener(ch)
		reconnected = ch
	}
	for {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		lease, err := l.tryAcquire(ctx, info, id)
		if err == nil {
			return lease, nil
		}
		var held *HeldError
		switch {
		case errors.As(err, &held):
			notice(held.Info)
		case ctx.Err() != nil:
			return nil, ctx.Err()
		case errors.Is(err, ErrNoTTL), errors.Is(err, ErrInvalidInfo), errors.Is(err, nats.ErrConnectionClosed):
			return nil, err
		default:
			l.log.Warn("cannot take the lock yet; retrying", zap.Error(err))
			if err := backoff.wait(ctx); err != nil {
				return nil, err
			}
			continue
		}
		// Held, but the watch last saw the key free: the read that said
		// held was stale (a lagging replica). Try again shortly.
		if w != nil && w.free {
			if err := backoff.wait(ctx); err != nil {
				return nil, err
			}
			continue
		}
		// Held: sleep until the watch sees the key freed.
		if w == nil {
			if w, err = l.startWatch(ctx); err != nil {
				if ctx.Err() != nil {
					return nil, ctx.Err()
				}
				if errors.Is(err, nats.ErrConnectionClosed) {
					return nil, err
				}
				l.log.Warn("cannot watch the lock; retrying", zap.Error(err))
				if err := backoff.wait(ctx); err != nil {
					return nil, err
				}
				continue
			}
		}
		switch err := w.waitFree(ctx, reconnected, notice); {
		case err == nil:
			backoff.reset()
		case ctx.Err() != nil:
			return nil, ctx.Err()
		case errors.Is(err, errReconnected):
			l.log.Debug("reconnected to the broker; watching the lock again")
			w.stop()
			w = nil
			backoff.reset()
		default: // the watch ended: start another one after trying again
			l.log.Warn("the lock watch ended; restarting it", zap.Error(err))
			w.stop()
			w = nil
			if err := backoff.wait(ctx); err != nil {
				return nil, err
			}
		}
	}
}

// errReconnected ends a wait when the connection to the broker came back.
var errReconnected = errors.New("reconnected to the broker")

// watch follows the lock key.
type watch struct {
	client string
	kw     jetstream.KeyWatcher
	seen   bool // an entry was seen
	// free is set when the last entry the watch delivered says the key is
	// free. The watch reads the stream in order from its leader, while a
	// create's read of the key may be served by a lagging replica (direct
	// get on a replicated bucket): when the two disagree, the watch is
	// right and the create is retried, since no further entry will come.
	free bool
}

func (l *Locker) startWatch(ctx context.Context) (*watch, error) {
	kw, err := l.kv.Watch(ctx, l.cfg.Client)
	if err != nil {
		return nil, l.mapErr("watching", err)
	}
	return &watch{client: l.cfg.Client, kw: kw}, nil
}

// waitFree returns nil when the key is seen free: a delete or purge entry
// (an expired key shows up as a purge: the server's limit marker, header
// Nats-Marker-Reason: MaxAge), or no entry at all when the watch starts. It
// returns errReconnected when reconnected fires. It passes the holder of
// every value written on the key to onHolder.
func (w *watch) waitFree(ctx context.Context, reconnected <-chan nats.Status, onHolder func(Info)) error {
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-reconnected:
			return errReconnected
		case e, ok := <-w.kw.Updates():
			if !ok {
				return fmt.Errorf("watch closed: %w", nats.ErrConnectionClosed)
			}
			if e == nil { // end of the initial values
				if !w.seen {
					w.free = true
					return nil
				}
				continue
			}
			w.seen = true
			if op := e.Operation(); op == jetstream.KeyValueDelete || op == jetstream.KeyValuePurge {
				w.free = true
				return nil
			}
			w.free = false
			if r, err := decodeRecord(w.client, e.Value()); err == nil {
				onHolder(r.Info)
			}
		}
	}
}

func (w *watch) stop() {
	if w != nil {
		_ = w.kw.Stop()
	}
}

// backoff is a capped doubling delay.
type backoff struct {
	first, max, next time.Duration
}

func newBackoff(first, max time.Duration) *backoff {
	return &backoff{first: first, max: max, next: first}
}

func (b *backoff) reset() { b.next = b.first }

func (b *backoff) wait(ctx context.Context) error {
	t := time.NewTimer(b.next)
	defer t.Stop()
	b.next = min(2*b.next, b.max)
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
