package lock

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"go.uber.org/zap"

	"github.com/pcm-project/pcm/events"
	"github.com/pcm-project/pcm/internal/backoff"
	"github.com/pcm-project/pcm/internal/kvkey"
)

// Acquire waits until it holds the lock or ctx ends; it never gives up
// because the lock is held, and it retries through broker outages. It returns
// early only for an unusable info (ErrInvalidInfo), a bucket without per-key
// TTLs (ErrNoTTL) or a closed connection. onBusy (may be nil) is called with
// the holder's events.LockInfo when the lock is found held, once per holder (not at
// every renewal), including when the lock passes from one holder to another
// while Acquire waits.
//
// While waiting it never polls: it listens to the key's subject (a core
// subscription: the writes of this client's own faces, its only writers)
// and tries again when it hears a delete, when the holding's TTL runs out
// without a renewal heard, or after a reconnection to the broker. What it
// hears is only a hint: every decision is made on the key read back from
// the broker.
func (l *Locker) Acquire(ctx context.Context, info events.LockInfo, onBusy func(events.LockInfo)) (*Lease, error) {
	info, err := prepare(info)
	if err != nil {
		return nil, err
	}
	id := newLeaseID() // one id for every attempt: a create whose reply was lost is recognised
	var (
		hints   *hints
		busy    *events.LockInfo
		retry   = backoff.Backoff{Initial: 100 * time.Millisecond, Max: min(l.cfg.Lease, 5*time.Second), Jitter: -1}
		lastRev uint64
	)
	defer func() { hints.stop() }()
	notice := func(holder events.LockInfo) {
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
		if hints == nil {
			// Listen before trying, so that no write after the try is missed.
			if hints, err = l.listen(); err != nil {
				if errors.Is(err, nats.ErrConnectionClosed) {
					return nil, err
				}
				l.log.Warn("cannot listen to the lock key; retrying", zap.Error(err))
				if err := retry.Wait(ctx); err != nil {
					return nil, err
				}
				continue
			}
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
			if err := retry.Wait(ctx); err != nil {
				return nil, err
			}
			continue
		}
		// The same holding as at the last try, past its end: the read was
		// stale (a lagging replica) or the clocks differ. Back off a little.
		if held.Revision != 0 && held.Revision == lastRev && !time.Now().Before(held.expires) {
			if err := retry.Wait(ctx); err != nil {
				return nil, err
			}
		} else {
			retry.Reset()
		}
		lastRev = held.Revision
		switch err := hints.waitFree(ctx, l, held.expires, reconnected, notice); {
		case err == nil:
		case ctx.Err() != nil:
			return nil, ctx.Err()
		case errors.Is(err, errReconnected):
			l.log.Debug("reconnected to the broker; reading the lock again")
			hints.stop()
			hints = nil
		default:
			l.log.Warn("stopped hearing the lock key; listening again", zap.Error(err))
			hints.stop()
			hints = nil
		}
	}
}

// errReconnected ends a wait when the connection to the broker came back.
var errReconnected = errors.New("reconnected to the broker")

// hints are the writes heard on the lock key's subject.
type hints struct {
	cfg Config
	sub *nats.Subscription
	ch  chan *nats.Msg
}

// listen subscribes to the key's subject.
func (l *Locker) listen() (*hints, error) {
	nc := l.js.Conn()
	h := &hints{cfg: l.cfg, ch: make(chan *nats.Msg, 64)}
	sub, err := nc.ChanSubscribe(l.key.Subject(), h.ch)
	if err != nil {
		return nil, fmt.Errorf("listening to the lock of %q: %w", l.cfg.Client, err)
	}
	if err := nc.Flush(); err != nil {
		sub.Unsubscribe()
		return nil, fmt.Errorf("listening to the lock of %q: %w", l.cfg.Client, err)
	}
	h.sub = sub
	return h, nil
}

// slack is added to a holding's end before trying again: the broker
// expires a key at its TTL, then writes the marker that frees it.
const slack = 250 * time.Millisecond

// waitFree returns nil when it is worth trying again: a delete heard on
// the key, or the holding's end (expires, pushed on by every write heard:
// a renewal, a new holder, another face's attempt) passed. It returns
// errReconnected when reconnected fires. On each value heard it reads the
// key back and passes its holder to onHolder (a new holder may have taken
// it over without freeing it): who holds the lock is never taken from what
// was heard.
func (h *hints) waitFree(ctx context.Context, l *Locker, expires time.Time, reconnected <-chan nats.Status, onHolder func(events.LockInfo)) error {
	lease := l.cfg.Lease
	if expires.IsZero() {
		expires = time.Now().Add(lease)
	}
	timer := time.NewTimer(time.Until(expires) + slack)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-reconnected:
			return errReconnected
		case <-timer.C:
			return nil
		case m, ok := <-h.ch:
			if !ok {
				return fmt.Errorf("subscription closed: %w", nats.ErrConnectionClosed)
			}
			if op := m.Header.Get("KV-Operation"); op != "" || len(m.Data) == 0 {
				return nil // a delete or a purge: free
			}
			ttl := lease
			if d, err := time.ParseDuration(m.Header.Get("Nats-TTL")); err == nil && d > 0 && d < ttl {
				ttl = d
			}
			timer.Reset(ttl + slack)
			e, err := l.key.Get(ctx)
			switch {
			case errors.Is(err, kvkey.ErrNotFound):
				return nil
			case err != nil:
				continue // the timer still runs
			}
			if r, err := decodeRecord(h.cfg, e.Value); err == nil {
				onHolder(r.LockInfo)
			}
		}
	}
}

func (h *hints) stop() {
	if h != nil {
		_ = h.sub.Unsubscribe()
	}
}
