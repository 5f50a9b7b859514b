package lock

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/pcm-project/pcm/events"
	"github.com/pcm-project/pcm/internal/kvkey"
)

type leaseState int

const (
	stateHeld      leaseState = iota // renewing
	stateReleasing                   // renewals stopped, delete not confirmed yet
	stateReleased                    // deleted
	stateLost                        // renewals failed past the lease, or the key changed
)

// Lease is one holding of the lock, renewed in the background until Release
// or until it is lost. Its methods are safe for concurrent use.
type Lease struct {
	l    *Locker
	info events.LockInfo
	id   string
	data []byte
	log  *zap.Logger

	rev    atomic.Uint64
	failed atomic.Int64 // renewals that failed
	lost   chan struct{}

	mu       sync.Mutex
	state    leaseState
	err      error     // why the lease was lost
	deadline time.Time // the lease is surely ours until then

	releaseMu sync.Mutex // serialises Release
	cancel    context.CancelFunc
	done      chan struct{} // closed when the renewal loop has returned
}

// startLease starts renewing the key just written at revision rev; sent is
// when that write was sent, the earliest the server can have started its TTL.
func (l *Locker) startLease(info events.LockInfo, id string, data []byte, rev uint64, sent time.Time) *Lease {
	ctx, cancel := context.WithCancel(context.Background())
	s := &Lease{
		l:        l,
		info:     info,
		id:       id,
		data:     data,
		log:      l.log.With(zap.String("holder", string(info.Holder)), zap.Int("pid", info.PID), zap.String("job", info.JobID)),
		lost:     make(chan struct{}),
		deadline: sent.Add(l.cfg.Lease),
		cancel:   cancel,
		done:     make(chan struct{}),
	}
	s.rev.Store(rev)
	s.log.Debug("took the lock", zap.Uint64("revision", rev), zap.Duration("lease", l.cfg.Lease))
	go s.renewLoop(ctx)
	return s
}

// Revision is the key's current revision: the fencing token to put in every
// status published under this lease. It changes at every renewal.
func (s *Lease) Revision() uint64 { return s.rev.Load() }

// FailedRenewals counts the renewals that failed (the broker away, no
// answer in time) since the lease was taken: it rides through them until
// the lease ends.
func (s *Lease) FailedRenewals() int64 { return s.failed.Load() }

// Info says who holds the lease (with the defaults filled in).
func (s *Lease) Info() events.LockInfo { return s.info }

// Lost is closed when the lease is lost: its renewals failed for a whole
// lease, or the key changed under it (detected at the next renewal, within a
// third of the lease, or by Release). A holder must start no new work once it
// is closed. A successful Release does not close it.
func (s *Lease) Lost() <-chan struct{} { return s.lost }

// Err says why the lease was lost (wrapping ErrLeaseExpired or
// ErrLockChanged), or nil while it was not.
func (s *Lease) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// renewLoop renews the key every third of the lease, retries failures every
// tenth of it, and declares the lease lost when the deadline passes without
// a successful renewal or when the key no longer carries its revision.
func (s *Lease) renewLoop(ctx context.Context) {
	defer close(s.done)
	lease := s.l.cfg.Lease
	interval := lease / 3
	retry := min(max(lease/10, 100*time.Millisecond), time.Second)
	timer := time.NewTimer(interval)
	defer timer.Stop()
	failures := 0
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		}
		deadline := s.getDeadline()
		now := time.Now()
		if !now.Before(deadline) {
			s.lose(fmt.Errorf("%w: no renewal of %s succeeded for %s (%d attempts failed)",
				ErrLeaseExpired, s.l.cfg.name(), lease, failures))
			return
		}
		next, err := s.renewOnce(ctx, deadline)
		switch {
		case ctx.Err() != nil:
			return
		case errors.Is(err, ErrLockChanged):
			s.lose(err)
			return
		case err != nil:
			failures++
			s.failed.Add(1)
			logf := s.log.Debug
			if failures == 1 {
				logf = s.log.Warn
			}
			logf("renewing the lock failed; retrying until the lease ends",
				zap.Error(err), zap.Int("failed_attempts", failures), zap.Duration("left", time.Until(deadline)))
			next = retry
		default:
			if failures > 0 {
				s.log.Info("renewing the lock works again", zap.Int("failed_attempts", failures))
			}
			failures = 0
		}
		// Wake at the deadline at the latest, to notice the loss on time.
		timer.Reset(max(min(next, time.Until(s.getDeadline())), 0))
	}
}

// renewOnce makes one renewal attempt; it returns when to renew next.
func (s *Lease) renewOnce(ctx context.Context, deadline time.Time) (time.Duration, error) {
	lease := s.l.cfg.Lease
	if !s.l.connected() {
		return 0, errors.New("not connected to the broker")
	}
	rev := s.rev.Load()
	sent := time.Now()
	actx, cancel := context.WithDeadline(ctx, minTime(deadline, sent.Add(lease/3)))
	defer cancel()
	newRev, err := s.l.publish(actx, s.data, rev)
	if err == nil {
		s.rev.Store(newRev)
		s.setDeadline(sent.Add(lease))
		s.log.Debug("renewed the lock", zap.Uint64("revision", newRev))
		return lease / 3, nil
	}
	if !isConflict(err) {
		return 0, err
	}
	// The key moved on: maybe an earlier renewal of ours landed but its
	// reply was lost. Adopt its revision (keeping the deadline of the last
	// confirmed renewal) and renew again at once.
	ours, cur, gerr := s.ownedRevision(actx)
	switch {
	case gerr != nil:
		return 0, fmt.Errorf("renewal refused (%v); reading the key: %w", err, gerr)
	case !ours:
		return 0, fmt.Errorf("%w: renewing %s at revision %d: %v", ErrLockChanged, s.l.cfg.name(), rev, describe(cur))
	}
	s.rev.Store(cur)
	return 0, nil
}

// ownedRevision reads the key and tells whether it still holds this lease's
// write, and at which revision.
func (s *Lease) ownedRevision(ctx context.Context) (bool, uint64, error) {
	e, err := s.l.key.Get(ctx)
	if errors.Is(err, kvkey.ErrNotFound) {
		return false, 0, nil
	}
	if err != nil {
		return false, 0, err
	}
	r, err := decodeRecord(s.l.cfg, e.Value)
	return err == nil && r.Lease == s.id, e.Revision, nil
}

func describe(rev uint64) string {
	if rev == 0 {
		return "the key is gone (deleted, purged or expired)"
	}
	return fmt.Sprintf("the key is at revision %d, written by another holder", rev)
}

func (s *Lease) getDeadline() time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.deadline
}

func (s *Lease) setDeadline(t time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.deadline = t
}

// lose marks a held (or releasing) lease lost, closes Lost and logs it.
func (s *Lease) lose(reason error) {
	s.mu.Lock()
	if s.state != stateHeld && s.state != stateReleasing {
		s.mu.Unlock()
		return
	}
	s.state, s.err = stateLost, reason
	s.mu.Unlock()
	close(s.lost)
	s.log.Error("lost the lock: starting no new work", zap.Uint64("revision", s.rev.Load()), zap.Error(reason))
}

// stopRenewing stops the renewal loop and waits for it to return.
func (s *Lease) stopRenewing() {
	s.cancel()
	<-s.done
}

// Release stops renewing and deletes the key if it still carries this lease's
// revision. It is idempotent: once released it returns nil. It returns an
// error wrapping ErrNotHeld if the lease was lost. If the broker cannot be
// reached the key expires by itself within the lease; calling Release again
// retries the delete.
func (s *Lease) Release(ctx context.Context) error {
	s.releaseMu.Lock()
	defer s.releaseMu.Unlock()
	s.stopRenewing()

	s.mu.Lock()
	state, reason, deadline := s.state, s.err, s.deadline
	s.mu.Unlock()
	switch state {
	case stateReleased:
		return nil
	case stateLost:
		// Harmless if the key moved on; frees it early if it did not.
		_ = s.l.key.Delete(ctx, s.rev.Load())
		return fmt.Errorf("%w: %w", ErrNotHeld, reason)
	}
	if state == stateHeld && !time.Now().Before(deadline) {
		s.lose(fmt.Errorf("%w: the lease of %s ended before it was released", ErrLeaseExpired, s.l.cfg.name()))
		_ = s.l.key.Delete(ctx, s.rev.Load())
		return fmt.Errorf("%w: %w", ErrNotHeld, s.Err())
	}
	s.setState(stateReleasing)

	for range 2 {
		rev := s.rev.Load()
		err := s.l.key.Delete(ctx, rev)
		if err == nil {
			s.setState(stateReleased)
			s.log.Debug("released the lock", zap.Uint64("revision", rev))
			return nil
		}
		if !isConflict(err) {
			return fmt.Errorf("releasing %s: %w (the key expires by itself within %s; call Release again to retry)",
				s.l.cfg.name(), err, s.l.cfg.Lease)
		}
		ours, cur, gerr := s.ownedRevision(ctx)
		if gerr != nil {
			return fmt.Errorf("releasing %s: delete refused (%v); reading the key: %w", s.l.cfg.name(), err, gerr)
		}
		if !ours {
			s.lose(fmt.Errorf("%w: releasing %s at revision %d: %s", ErrLockChanged, s.l.cfg.name(), rev, describe(cur)))
			return fmt.Errorf("%w: %w", ErrNotHeld, s.Err())
		}
		s.rev.Store(cur) // a renewal of ours landed unconfirmed: delete that one
	}
	return fmt.Errorf("releasing %s: the key kept changing (the key expires by itself within %s; call Release again to retry)",
		s.l.cfg.name(), s.l.cfg.Lease)
}

func (s *Lease) setState(st leaseState) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.state = st
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}
