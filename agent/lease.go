package agent

import (
	"context"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/pcm-project/pcm/agent/lock"
	"github.com/pcm-project/pcm/events"
)

// takeLock waits for the client's lock while keeping the offer alive. It
// returns nil when ctx ends, or when the lock cannot be used (the offer
// was nak'ed).
func (s *Service) takeLock(ctx context.Context, msg jetstream.Msg, job events.JobOffered) *lock.Lease {
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

// release gives the lock back at once after each job: a lock kept for a
// next job would go on naming the job that took it, and the desktop would
// tell its user a finished job still runs (the busy notice).
func (s *Service) release(lease *lock.Lease) {
	s.lockReleased()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := lease.Release(ctx); err != nil {
		s.log.Warn("releasing the lock", zap.Error(err))
	}
}
