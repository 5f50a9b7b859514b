package agent

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.uber.org/zap"

	"github.com/pcm-project/pcm/agent/lock"
	"github.com/pcm-project/pcm/agent/runner"
	"github.com/pcm-project/pcm/events"
	"github.com/pcm-project/pcm/internal/backoff"
)

// statusLog is where a face records the statuses of a job on this client:
// the service's journal and outbox (published in order, the offer acked once
// the status that ends the job is stored), or, for the desktop, which has no
// journal, publishes straight to the broker.
type statusLog interface {
	// begin records that attempt st.Attempt is about to start, before its
	// process exists: if the face dies during the run, whoever comes next
	// knows the attempt was made.
	begin(ctx context.Context, st events.JobStatus) error
	// running tells that the attempt's process runs (st carries its pid);
	// best effort.
	running(st events.JobStatus)
	// stopped tells that the attempt's process ended.
	stopped()
	// record persists a final status; ends says it ends the job on this
	// client.
	record(ctx context.Context, st events.JobStatus, ends bool) error
}

// Errors of an attempt that the faces act on.
var (
	// errLeaseLost: the lock was lost before the attempt started; nothing
	// was started.
	errLeaseLost = errors.New("lost the lock before starting: not starting new work")
	// errStopping: the face is stopping and killed the running attempt; its
	// start is recorded and whoever comes next settles it as interrupted.
	errStopping = errors.New("stopping: the running job was killed")
)

// runAttempt is the one attempt engine of both faces: under lease, it
// records the start of attempt through sl, runs the job's command, and
// records its final status, which it returns. A face that stops during the
// run (ctx ends) records nothing more: errStopping. A job with a detect
// command is detected first (already in place: not_applicable, nothing
// else runs) and, when its command succeeds, again after it (detect.go).
func (f *face) runAttempt(ctx context.Context, sl statusLog, job events.JobOffered, attempt int, lease *lock.Lease) (events.JobStatus, error) {
	log := f.log.With(zap.String("job", job.JobID), zap.Int("attempt", attempt))
	select {
	case <-lease.Lost():
		return events.JobStatus{}, errLeaseLost
	default:
	}
	if st, present, err := f.detectBefore(ctx, sl, job, attempt, lease.Revision()); present || err != nil {
		return st, err
	}
	started := f.newStatus(job.JobID, events.StateStarted, attempt, job.Attempts())
	started.LockRevision = lease.Revision()
	now := time.Now().UTC()
	started.StartedAt = &now
	if err := sl.begin(ctx, started); err != nil {
		return events.JobStatus{}, err
	}
	f.counts.started.Add(1)
	log.Info("running job", zap.String("user", f.user), zap.Strings("argv", job.Command.Argv), zap.Uint64("lock_revision", lease.Revision()))
	res, runErr := f.cfg.Runner.Run(ctx, f.runSpec(job, attempt), func(pid int) {
		st := started
		st.PID = pid
		sl.running(st)
	})
	sl.stopped()
	if errors.Is(runErr, runner.ErrCancelled) && ctx.Err() != nil {
		log.Warn("stopping: the running job was killed; its attempt is settled as interrupted")
		return events.JobStatus{}, errStopping
	}
	final := f.detectAfter(ctx, job, f.finalStatus(job, attempt, res, runErr, lease.Revision()))
	if err := sl.record(ctx, final, final.EndsJob(job.Attempts())); err != nil {
		return final, err
	}
	log.Info("job finished", zap.String("state", string(final.State)), zap.Int("exit_code", res.ExitCode), zap.String("reason", final.Reason))
	return final, nil
}

// reportOf is the status a decision's report records.
func (f *face) reportOf(job events.JobOffered, r *Report) events.JobStatus {
	st := f.newStatus(job.JobID, r.State, r.Attempt, job.Attempts())
	st.Reason = r.Reason
	return st
}

// directLog is the desktop's statusLog: every status is published to the
// broker and its PubAck awaited, since the desktop has no journal.
type directLog struct{ f *face }

func (l directLog) begin(ctx context.Context, st events.JobStatus) error {
	if err := l.f.publishStatus(ctx, st); err != nil {
		return fmt.Errorf("reporting the start of job %s: %w", st.JobID, err)
	}
	l.f.own.tell(st)
	return nil
}

func (l directLog) running(events.JobStatus) {}

func (l directLog) stopped() {}

// record persists st even when ctx ends (the user gave up waiting): a
// status that exists must be told, once: a final status the attempt
// already has on the broker (the service settled it while this face's
// lease had lapsed) is not stored again (errSuperseded).
func (l directLog) record(ctx context.Context, st events.JobStatus, _ bool) error {
	return l.f.persist(context.WithoutCancel(ctx), st)
}

// persistFor bounds how long the desktop retries a status the broker does
// not store.
const persistFor = 10 * time.Minute

// persist publishes a status, retrying until the broker stores it (the
// desktop has no journal: it waits for the broker instead). A final status
// is stored only if its attempt has none yet (storeFinal): otherwise it
// returns errSuperseded at once.
func (f *face) persist(ctx context.Context, st events.JobStatus) error {
	ctx, cancel := context.WithTimeout(ctx, persistFor)
	defer cancel()
	err := backoff.Retry(ctx, backoff.Policy{
		Backoff:   retryDelays,
		Retryable: func(err error) bool { return !errors.Is(err, errSuperseded) },
		OnRetry:   func(err error, _ time.Duration) { f.log.Warn("status not stored yet, retrying", zap.Error(err)) },
	}, func(ctx context.Context) error {
		if !st.State.Final() {
			return f.publishStatus(ctx, st)
		}
		return f.publishFinal(ctx, st)
	})
	if errors.Is(err, errSuperseded) {
		f.counts.superseded.Add(1)
		f.log.Warn("the attempt already has a final status, stored by the other face while this one's lease had lapsed: this one is not stored",
			zap.String("job", st.JobID), zap.Int("attempt", st.Attempt), zap.String("state", string(st.State)), zap.Error(err))
		return err
	}
	if err != nil {
		return fmt.Errorf("reporting %s of job %s: %w", st.State, st.JobID, err)
	}
	f.own.tell(st)
	return nil
}
