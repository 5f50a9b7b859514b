package agent

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/pcm-project/pcm/agent/journal"
	"github.com/pcm-project/pcm/agent/pkgcache"
	"github.com/pcm-project/pcm/events"
)

// execute runs a job the decision says is due. For each attempt it makes
// the job's package ready (fetched and verified once, unpacked afresh for
// each attempt) without the lock, takes the lock, decides again under it
// with a fresh read of the job's last status and cancellation (the desktop
// may have run it, or it may have been cancelled, while the service
// waited), settles an interrupted attempt, and runs the attempt through the
// attempt engine, whose final status goes through the journal's outbox (the
// flush acks the offer once the status that ends the job is stored). A
// failed attempt with attempts left is decided again.
func (s *Service) execute(ctx context.Context, msg jetstream.Msg, f Facts, d Decision) {
	log := s.log.With(zap.String("job", f.Job.JobID))
	job := f.Job
	var pkg readyPackage // the job's package, pinned until the job is done here
	defer pkg.release()
	for ctx.Err() == nil {
		if d.Action != Run {
			s.apply(ctx, msg, f, d)
			return
		}
		if job.Package != nil {
			if err := s.readyPackage(ctx, msg, job, &pkg); err != nil {
				if !s.packageFailed(ctx, msg, &f, err) {
					return
				}
				d = Decide(f)
				continue
			}
		}
		lease := s.takeLock(ctx, msg, job)
		if lease == nil {
			return // shutting down, or the lock is unusable; the offer comes back
		}
		if !s.brokerFacts(ctx, msg, &f) {
			s.release(lease)
			return
		}
		f.Locked = true
		if d = Decide(f); d.Action != Run {
			s.release(lease)
			s.apply(ctx, msg, f, d)
			return
		}
		rec := journal.Record{JobID: job.JobID}
		if f.Journal != nil {
			rec = *f.Journal
		}
		rec.AckSubject = msg.Reply()
		keepTimes(&rec, f)
		sl := s.journalLog(&rec)
		if r := d.Report; r != nil {
			log.Warn("an attempt was started and never finished; it counts as failed", zap.Int("attempt", r.Attempt), zap.String("why", r.Reason))
			if err := sl.record(ctx, s.reportOf(job, r), r.Ends); err != nil {
				s.release(lease)
				log.Error("cannot settle the interrupted attempt; the offer comes back", zap.Error(err))
				_ = msg.NakWithDelay(retryLater)
				return
			}
			// The face that started it may have stored its own final
			// first (its lease had lapsed; it was alive): then the
			// settlement was not stored (storeFinal), and that final
			// decides whether another attempt runs.
			f.Journal = &rec
			if !s.brokerFacts(ctx, msg, &f) {
				s.release(lease)
				return
			}
			if d2 := Decide(f); d2.Action != Run || d2.Attempt != d.Attempt {
				s.release(lease)
				s.apply(ctx, msg, f, d2)
				return
			}
		}
		stop := s.keepAlive(ctx, msg)
		final, err := s.runAttempt(ctx, sl, job, d.Attempt, lease)
		stop()
		s.release(lease)
		switch {
		case errors.Is(err, journal.ErrAlreadyDone):
			log.Info("job finished meanwhile (desktop); not running it")
			s.ackAfterFlush(msg.Reply())
			s.report(ctx, job.JobID, msg.Reply())
			return
		case errors.Is(err, errLeaseLost):
			log.Warn("lost the lock before starting; not starting new work")
			_ = msg.NakWithDelay(retryLater)
			return
		case errors.Is(err, errNotStarted):
			log.Error("cannot journal the start (disk full?): refusing to start the job; it comes back", zap.Error(err))
			_ = msg.NakWithDelay(30 * time.Second)
			return
		case err != nil:
			return // stopping, or the final status waits in the journal: the offer comes back
		case final.EndsJob(job.Attempts()):
			return
		}
		log.Info("attempt failed, retrying", zap.Int("attempt", final.Attempt), zap.Int("max_attempts", job.Attempts()))
		f.Journal, f.Locked = &rec, false
		if !s.brokerFacts(ctx, msg, &f) {
			return
		}
		d = Decide(f)
	}
}

// readyPackage is a job's package fetched into the cache and pinned there
// until release.
type readyPackage struct {
	entry *pkgcache.Entry
	unpin func()
}

func (p *readyPackage) release() {
	if p.unpin != nil {
		p.unpin()
	}
}

// readyPackage makes the job's directory hold its package: fetched and
// verified the first time (then pinned in pkg), unpacked afresh each time.
// It keeps the offer alive meanwhile; it never holds the lock.
func (s *Service) readyPackage(ctx context.Context, msg jetstream.Msg, job events.JobOffered, pkg *readyPackage) error {
	stop := s.keepAlive(ctx, msg)
	defer stop()
	if pkg.entry == nil {
		ref := *job.Package
		start := time.Now()
		e, unpin, err := s.fetchPackage(ctx, ref)
		if err != nil {
			return err
		}
		pkg.entry, pkg.unpin = &e, unpin
		s.packageRetried(job.JobID)
		s.log.Info("package ready", zap.String("job", job.JobID), zap.String("package", ref.Name+"@"+ref.Version), zap.String("sha256", ref.SHA256),
			zap.Bool("downloaded", e.Downloaded), zap.Int64("size", e.Size), zap.Duration("took", time.Since(start)))
	}
	return s.unpackPackage(ctx, *pkg.entry, s.runSpec(job, 1).Dir)
}

// packageFailed handles a package that could not be made ready. A
// permanent refusal (missing, altered, too large, a job directory that
// cannot be prepared) becomes a fact, and it returns true: decide again
// (the job fails without running). A package store that cannot be reached
// (or a cache full of pinned content) sends the offer back for later, for
// at most Config.PackageRetryFor since the first such failure of the job;
// after that the failure becomes the fact. It returns false when the agent
// is stopping.
func (s *Service) packageFailed(ctx context.Context, msg jetstream.Msg, f *Facts, err error) bool {
	log := s.log.With(zap.String("job", f.Job.JobID))
	switch {
	case ctx.Err() != nil:
		return false // the agent is stopping: the offer comes back
	case pkgcache.Permanent(err):
		log.Warn("package refused: the job fails without running", zap.Error(err))
		s.packageRetried(f.Job.JobID)
		f.PackageErr = err
		return true
	}
	since := s.packageUnavailable(f.Job.JobID)
	if waited := time.Since(since); waited >= s.cfg.PackageRetryFor {
		log.Warn("package still not available: the job fails without running", zap.Duration("waited", waited), zap.Error(err))
		s.packageRetried(f.Job.JobID)
		f.PackageErr = fmt.Errorf("%w (retried for %s)", err, waited.Round(time.Second))
		return true
	}
	log.Warn("package not available yet; the offer comes back", zap.Error(err))
	_ = msg.NakWithDelay(retryLater)
	return false
}

// packageUnavailable returns when the package of job was first found
// unavailable in this run of the agent, recording now if it was not.
func (s *Service) packageUnavailable(job string) time.Time {
	s.pkgMu.Lock()
	defer s.pkgMu.Unlock()
	if s.pkgWait == nil {
		s.pkgWait = map[string]time.Time{}
	}
	since, ok := s.pkgWait[job]
	if !ok {
		since = time.Now()
		s.pkgWait[job] = since
	}
	return since
}

// packageRetried forgets job's wait for its package.
func (s *Service) packageRetried(job string) {
	s.pkgMu.Lock()
	defer s.pkgMu.Unlock()
	delete(s.pkgWait, job)
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

// journalLog is the service's statusLog for one delivery of an offer: the
// job's record in the journal (rec, kept up to date), and the outbox, whose
// flush publishes each status and acks the delivery once the status that
// ends the job is stored.
type journalLog struct {
	s   *Service
	rec *journal.Record
}

func (s *Service) journalLog(rec *journal.Record) journalLog { return journalLog{s: s, rec: rec} }

// errNotStarted: the start of an attempt could not be journaled; nothing
// was started.
var errNotStarted = errors.New("attempt not started")

func (l journalLog) begin(_ context.Context, st events.JobStatus) error {
	r := journal.Record{JobID: st.JobID, Phase: journal.PhaseStarted, Attempt: st.Attempt, AckSubject: l.rec.AckSubject,
		Cancelled: l.rec.Cancelled, CancelReason: l.rec.CancelReason, Times: l.rec.Times}
	if _, err := l.s.journal.Put(r); err != nil {
		if errors.Is(err, journal.ErrAlreadyDone) {
			return err
		}
		return fmt.Errorf("%w: %w", errNotStarted, err)
	}
	*l.rec = r
	return nil
}

// running publishes the started status, with the process's pid, without
// waiting (the journal already holds the start; publishStarted), and shows the job as the
// one running in the inventory.
func (l journalLog) running(st events.JobStatus) {
	l.s.setCurrent(st.JobID)
	l.s.publishStarted(st)
	l.s.fault(FaultAfterStart)
}

// stopped shows no job running in the inventory.
func (l journalLog) stopped() { l.s.setCurrent("") }

// record journals st with the record's final state, then publishes the
// outbox; when st ends the job, the flush acks the delivery once st is
// stored. A status the journal cannot take is published directly rather
// than lost (the offer is then acked when it comes back). An error means
// st is not on the broker yet: it waits in the journal.
func (l journalLog) record(ctx context.Context, st events.JobStatus, ends bool) error {
	s := l.s
	r := *l.rec
	r.JobID, r.Phase, r.Attempt, r.PID, r.FinalState, r.ExitCode = st.JobID, journal.PhaseFinished, st.Attempt, st.PID, string(st.State), 0
	if st.ExitCode != nil {
		r.ExitCode = *st.ExitCode
	}
	restartRequired(&r, st)
	out, err := s.outgoing(st, ends)
	if err != nil {
		return err
	}
	if _, err := s.journal.Put(r, out...); err != nil {
		if errors.Is(err, journal.ErrAlreadyDone) {
			return err
		}
		s.log.Error("cannot journal the final status; publishing it directly", zap.String("job", st.JobID), zap.Error(err))
		if err := s.publishFinal(ctx, st); err != nil && !errors.Is(err, errSuperseded) {
			s.log.Error("final status lost: neither journaled nor published", zap.String("job", st.JobID), zap.Error(err))
			return err
		}
		return nil
	}
	*l.rec = r
	s.fault(FaultAfterFinish)
	ack := ""
	if ends {
		ack = r.AckSubject
	}
	if !s.report(ctx, st.JobID, ack) {
		return fmt.Errorf("status %s of job %s waits in the journal: %w", st.State, st.JobID, context.Cause(ctx))
	}
	if r.Restart == journal.RestartPending {
		s.kickRestart()
	}
	return nil
}
