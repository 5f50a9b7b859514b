package agent

import (
	"context"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/pcm-project/pcm/agent/lock"
	"github.com/pcm-project/pcm/events"
)

// lockKeep is how long the service keeps the client's lock after a job,
// for the next offer to run without taking it again. Back-to-back jobs
// (a queue of offers) take and release the lock once; a lone job's lock
// is released lockKeep after it, off the job's path. The desktop, when it
// waits for the lock, waits that much longer.
const lockKeep = 250 * time.Millisecond

// keptLease is the service's lease between jobs: held (and renewed) for
// lockKeep after the job that took it, then released in the background.
type keptLease struct {
	mu    sync.Mutex
	lease *lock.Lease
	timer *time.Timer
}

// takeLock returns the lease kept from the job before, if it is still
// held, or waits for the client's lock while keeping the offer alive. It
// returns nil when ctx ends, or when the lock cannot be used (the offer
// was nak'ed).
func (s *Service) takeLock(ctx context.Context, msg jetstream.Msg, job events.JobOffered) *lock.Lease {
	if lease := s.kept.take(); lease != nil {
		select {
		case <-lease.Lost():
			s.release(lease) // frees the key if it still holds it
		default:
			return lease // still renewed: no holder in between
		}
	}
	stop := s.keepAlive(ctx, msg)
	defer stop()
	asked := time.Now()
	lease, err := s.locker.Acquire(ctx, s.lockInfo(job.JobID), func(h events.LockInfo) {
		s.log.Info("job waits: the lock is held by the other face", zap.String("job", job.JobID),
			zap.String("holder", string(h.Holder)), zap.String("holder_job", h.JobID), zap.Time("since", h.Since))
	})
	if err != nil {
		if ctx.Err() == nil {
			s.log.Warn("cannot take the lock", zap.Error(err))
			_ = msg.NakWithDelay(retryLater)
		}
		return nil
	}
	s.lockTaken(time.Since(asked))
	return lease
}

// keepLock keeps lease for the next job, for lockKeep; then it is released
// in the background (its TTL frees the key if that release is lost).
func (s *Service) keepLock(lease *lock.Lease) {
	s.kept.mu.Lock()
	defer s.kept.mu.Unlock()
	if s.kept.lease != nil && s.kept.lease != lease { // not expected: jobs run one at a time
		go s.release(s.kept.lease)
	}
	if s.kept.timer != nil {
		s.kept.timer.Stop()
	}
	s.kept.lease = lease
	s.kept.timer = time.AfterFunc(lockKeep, func() {
		if l := s.kept.takeIf(lease); l != nil {
			s.release(l)
		}
	})
}

// releaseKept releases the kept lease now (the agent stops).
func (s *Service) releaseKept() {
	if lease := s.kept.take(); lease != nil {
		s.release(lease)
	}
}

// take removes the kept lease and returns it (nil if none).
func (k *keptLease) take() *lock.Lease {
	k.mu.Lock()
	defer k.mu.Unlock()
	lease := k.lease
	k.lease = nil
	if k.timer != nil {
		k.timer.Stop()
		k.timer = nil
	}
	return lease
}

// takeIf removes the kept lease if it is lease.
func (k *keptLease) takeIf(lease *lock.Lease) *lock.Lease {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.lease != lease {
		return nil
	}
	k.lease, k.timer = nil, nil
	return lease
}

// release gives the lock back (the hold time observed runs from its
// taking to here, the time it was kept for a next job included).
func (s *Service) release(lease *lock.Lease) {
	s.lockReleased()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := lease.Release(ctx); err != nil {
		s.log.Warn("releasing the lock", zap.Error(err))
	}
}
