package agent

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/pcm-project/pcm/agent/journal"
	"github.com/pcm-project/pcm/agent/lock"
	"github.com/pcm-project/pcm/agent/pkgcache"
	"github.com/pcm-project/pcm/agent/runner"
	"github.com/pcm-project/pcm/events"
)

// execute runs a due job: for each attempt it checks the broker for a final
// status (no rerun), fetches and verifies the job's package and unpacks it
// into the job's directory (without the lock: the lock is never held during
// a download), takes the lock, checks again, journals the start, runs,
// journals the final status, publishes it, releases the lock; after the last
// attempt it acks the offer. A package that is missing or does not match
// its pinned digest ends the job failed, without running anything.
func (s *Service) execute(ctx context.Context, msg jetstream.Msg, job events.JobOffered, rec journal.Record) {
	log := s.log.With(zap.String("job", job.JobID))
	var pkg *pkgcache.Entry // the job's package, pinned until the job is done here
	for ctx.Err() == nil {
		last, seq, err := s.lastStatus(ctx, job.JobID)
		if err != nil {
			log.Warn("cannot read the job's last status, not running it now", zap.Error(err))
			_ = msg.NakWithDelay(retryLater)
			return
		}
		if jobOver(last, job) {
			s.adopt(ctx, msg, job, last, seq)
			return
		}
		if job.Package != nil {
			if pkg == nil {
				e, release, ok := s.fetchJobPackage(ctx, msg, job, rec)
				if !ok {
					return
				}
				defer release()
				pkg = &e
			}
			if !s.unpackJobPackage(ctx, msg, job, rec, *pkg) {
				return
			}
		}
		lease := s.takeLock(ctx, msg, job)
		if lease == nil {
			return // shutting down; the offer comes back
		}
		// The desktop may have run the job while the service waited.
		last, seq, err = s.lastStatus(ctx, job.JobID)
		if err != nil || jobOver(last, job) {
			s.release(lease)
			if err != nil {
				_ = msg.NakWithDelay(retryLater)
			} else {
				s.adopt(ctx, msg, job, last, seq)
			}
			return
		}
		if last != nil && last.State == events.StateStarted {
			// Someone (the desktop, or a life of this agent whose journal
			// is gone) started an attempt and never finished it; it cannot
			// be running now, since the service holds the lock. It counts.
			rec.AckSubject = msg.Reply()
			over, ok := s.settleInterrupted(ctx, job, &rec, last, lease)
			if !ok || over {
				s.release(lease)
				if ok {
					s.ack(ctx, msg)
				} else {
					_ = msg.NakWithDelay(retryLater)
				}
				return
			}
			last = nil
		}
		attempt := rec.Attempt + 1
		if last != nil && last.State.Final() && last.State != events.StateRejected && last.Attempt >= attempt {
			attempt = last.Attempt + 1
		}
		over, ok := s.runAttempt(ctx, msg, job, &rec, attempt, lease)
		s.release(lease)
		if !ok {
			return
		}
		if over {
			s.ack(ctx, msg)
			return
		}
		log.Info("attempt failed, retrying", zap.Int("attempt", attempt), zap.Int("max_attempts", job.Attempts()))
	}
}

// runAttempt runs one attempt under lease. ok is false when the attempt's
// outcome could not be settled now (the offer stays unacked and comes back);
// over says the job is finished on this client.
func (s *Service) runAttempt(ctx context.Context, msg jetstream.Msg, job events.JobOffered, rec *journal.Record, attempt int, lease *lock.Lease) (over, ok bool) {
	log := s.log.With(zap.String("job", job.JobID), zap.Int("attempt", attempt))
	select {
	case <-lease.Lost():
		log.Warn("lost the lock before starting; not starting new work")
		_ = msg.NakWithDelay(retryLater)
		return false, false
	default:
	}
	*rec = journal.Record{JobID: job.JobID, Phase: journal.PhaseStarted, Attempt: attempt, AckSubject: msg.Reply(),
		Cancelled: rec.Cancelled, CancelReason: rec.CancelReason}
	if _, err := s.journal.Put(*rec); err != nil {
		if errors.Is(err, journal.ErrAlreadyDone) {
			log.Info("job finished meanwhile (desktop); not running it")
			s.ack(ctx, msg)
			return true, false
		}
		log.Error("cannot journal the start (disk full?): refusing to start the job; it comes back", zap.Error(err))
		_ = msg.NakWithDelay(30 * time.Second)
		return false, false
	}
	spec := s.runSpec(job, attempt)
	stopKeepAlive := s.keepAlive(ctx, msg)
	s.setCurrent(job.JobID)
	log.Info("running job", zap.Strings("argv", job.Command.Argv), zap.Uint64("lock_revision", lease.Revision()))
	res, runErr := s.cfg.Runner.Run(ctx, spec, func(pid int) {
		st := s.newStatus(job.JobID, events.StateStarted, attempt, job.Attempts())
		st.PID = pid
		st.LockRevision = lease.Revision()
		now := time.Now().UTC()
		st.StartedAt = &now
		s.publishAsync(st)
		s.fault(FaultAfterStart)
	})
	s.setCurrent("")
	stopKeepAlive()
	if errors.Is(runErr, runner.ErrCancelled) && ctx.Err() != nil {
		// The agent is stopping: the journal says started, and the next
		// start reports this attempt as failed.
		log.Warn("agent stopping: the running job was killed")
		return false, false
	}
	st := s.finalStatus(job, attempt, res, runErr, lease.Revision())
	state, reason := st.State, st.Reason
	over = !state.Retryable() || attempt >= job.Attempts()
	out, err := s.outgoing(st, over)
	if err != nil {
		log.Error("cannot encode the final status", zap.Error(err))
		return false, false
	}
	rec.Phase = journal.PhaseFinished
	rec.ExitCode = res.ExitCode
	rec.PID = res.PID
	rec.FinalState = string(state)
	if _, err := s.journal.Put(*rec, out...); err != nil {
		// The run happened but its status cannot be journaled: publish it
		// directly rather than lose it.
		log.Error("cannot journal the final status; publishing it directly", zap.Error(err))
		if err := s.publishStatus(ctx, st); err != nil {
			log.Error("final status lost: neither journaled nor published", zap.Error(err))
			return false, false
		}
		return over, true
	}
	log.Info("job finished", zap.String("state", string(state)), zap.Int("exit_code", res.ExitCode), zap.String("reason", reason))
	s.fault(FaultAfterFinish)
	if !s.report(ctx, job.JobID) {
		return false, false
	}
	return over, true
}

// takeLock waits for the client's lock while keeping the offer alive. It
// returns nil when ctx ends.
func (s *Service) takeLock(ctx context.Context, msg jetstream.Msg, job events.JobOffered) *lock.Lease {
	stop := s.keepAlive(ctx, msg)
	defer stop()
	lease, err := s.locker.Acquire(ctx, s.lockInfo(job.JobID), func(h lock.Info) {
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
	return lease
}

func (s *Service) release(lease *lock.Lease) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := lease.Release(ctx); err != nil {
		s.log.Warn("releasing the lock", zap.Error(err))
	}
}

// keepAlive tells the broker the offer is in progress every third of the
// ack wait, until the returned stop is called.
func (s *Service) keepAlive(ctx context.Context, msg jetstream.Msg) (stop func()) {
	every := s.ackWait / 3
	if every <= 0 {
		every = 10 * time.Second
	}
	done := make(chan struct{})
	go func() {
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				_ = msg.InProgress()
			case <-done:
				return
			case <-ctx.Done():
				return
			}
		}
	}()
	return func() { close(done) }
}

// settleInterrupted reports the started-but-never-finished attempt last as
// failed, journaled then published, and says whether that ends the job.
func (s *Service) settleInterrupted(ctx context.Context, job events.JobOffered, rec *journal.Record, last *events.JobStatus, lease *lock.Lease) (over, ok bool) {
	st := s.newStatus(job.JobID, events.StateFailed, last.Attempt, job.Attempts())
	st.Reason = fmt.Sprintf("the %s face stopped during the run (started by %s, no final status)", last.Runner, last.User)
	st.LockRevision = lease.Revision()
	over = last.Attempt >= job.Attempts()
	out, err := s.outgoing(st, over)
	if err != nil {
		return false, false
	}
	*rec = journal.Record{JobID: job.JobID, Phase: journal.PhaseFinished, Attempt: last.Attempt, FinalState: string(events.StateFailed), AckSubject: rec.AckSubject}
	if _, err := s.journal.Put(*rec, out...); err != nil {
		s.log.Error("cannot journal an interrupted attempt", zap.String("job", job.JobID), zap.Error(err))
		return false, false
	}
	s.log.Warn("an attempt was started and never finished; it counts as failed", zap.String("job", job.JobID),
		zap.Int("attempt", last.Attempt), zap.String("runner", string(last.Runner)))
	return over, s.report(ctx, job.JobID)
}

// fetchJobPackage fetches and verifies job's package before the lock is
// taken, keeping the offer alive meanwhile. ok is false when the offer was
// settled: a permanent refusal (missing, digest mismatch, too large) ends
// the job failed through the journal like any final status; a failure that
// may pass sends the offer back for later.
func (s *Service) fetchJobPackage(ctx context.Context, msg jetstream.Msg, job events.JobOffered, rec journal.Record) (e pkgcache.Entry, release func(), ok bool) {
	ref := *job.Package
	log := s.log.With(zap.String("job", job.JobID), zap.String("package", ref.Name+"@"+ref.Version), zap.String("sha256", ref.SHA256))
	stop := s.keepAlive(ctx, msg)
	start := time.Now()
	e, release, err := s.fetchPackage(ctx, ref)
	stop()
	if err == nil {
		log.Info("package ready", zap.Bool("downloaded", e.Downloaded), zap.Int64("size", e.Size), zap.Duration("took", time.Since(start)))
		return e, release, true
	}
	s.settlePackageError(ctx, msg, job, rec, log, err)
	return e, nil, false
}

// unpackJobPackage unpacks the package into the job's directory, afresh
// for each attempt, before the lock is taken.
func (s *Service) unpackJobPackage(ctx context.Context, msg jetstream.Msg, job events.JobOffered, rec journal.Record, e pkgcache.Entry) bool {
	err := s.unpackPackage(ctx, e, s.runSpec(job, rec.Attempt+1).Dir)
	if err == nil {
		return true
	}
	log := s.log.With(zap.String("job", job.JobID), zap.String("package", e.Name+"@"+e.Version))
	s.settlePackageError(ctx, msg, job, rec, log, err)
	return false
}

// settlePackageError ends the job failed when err is permanent, and sends
// the offer back otherwise (unless the agent is stopping).
func (s *Service) settlePackageError(ctx context.Context, msg jetstream.Msg, job events.JobOffered, rec journal.Record, log *zap.Logger, err error) {
	switch {
	case ctx.Err() != nil:
		// The agent is stopping: the offer comes back.
	case pkgcache.Permanent(err):
		log.Warn("package refused: the job fails without running", zap.Error(err))
		s.finishUnrun(ctx, msg, job, rec, events.StateFailed, truncate(err.Error(), 1024))
	default:
		log.Warn("package not available yet; the offer comes back", zap.Error(err))
		_ = msg.NakWithDelay(retryLater)
	}
}
