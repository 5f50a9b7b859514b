package agent

import (
	"context"
	"fmt"
	"time"

	"go.uber.org/zap"

	"github.com/pcm-project/pcm/events"
)

// detect runs the job's detect command (events.DetectCommand) in the job's
// directory, its output appended to the job's log, and says whether the
// job is in place: exit 0. Anything else (another exit code, a timeout, a
// command that cannot start, a face stopping) says absent, with why.
func (f *face) detect(ctx context.Context, job events.JobOffered, attempt int) (present bool, why string) {
	d := job.Detect
	spec := f.runSpec(job, attempt)
	spec.Argv, spec.Shell, spec.Timeout = d.Argv, d.Shell, d.TimeoutOrDefault()
	f.counts.detections.Add(1)
	res, err := f.cfg.Runner.Run(ctx, spec, nil)
	switch {
	case err != nil:
		why = "the detect command did not run: " + err.Error()
	case res.TimedOut:
		why = fmt.Sprintf("the detect command timed out after %s", spec.Timeout)
	case res.ExitCode != 0:
		why = fmt.Sprintf("the detect command exited %d", res.ExitCode)
	default:
		f.counts.present.Add(1)
		return true, "the detect command exited 0"
	}
	return false, why
}

// detectBefore runs the detection of a job that has one before its
// command, under the lease: when the job is already in place it records
// the status that ends it, not_applicable with events.ReasonAlreadyPresent
// (nothing else runs), and returns it with present true.
func (f *face) detectBefore(ctx context.Context, sl statusLog, job events.JobOffered, attempt int, revision uint64) (st events.JobStatus, present bool, err error) {
	if job.Detect == nil {
		return st, false, nil
	}
	log := f.log.With(zap.String("job", job.JobID), zap.Int("attempt", attempt))
	ok, why := f.detect(ctx, job, attempt)
	if !ok {
		if ctx.Err() != nil {
			return st, false, errStopping
		}
		log.Info("job not in place yet: running it", zap.String("detection", why))
		return st, false, nil
	}
	st = f.newStatus(job.JobID, events.StateNotApplicable, attempt, job.Attempts())
	st.Reason, st.LockRevision = events.ReasonAlreadyPresent, revision
	now := time.Now().UTC()
	st.FinishedAt = &now
	log.Info("job already in place: not running it", zap.String("detection", why))
	return st, true, sl.record(ctx, st, true)
}

// detectAfter checks, for a job with a detect command whose attempt
// succeeded, that the job is now in place: when the detection still says
// absent, the attempt failed with events.ReasonNotDetected.
func (f *face) detectAfter(ctx context.Context, job events.JobOffered, final events.JobStatus) events.JobStatus {
	if job.Detect == nil || final.State != events.StateSucceeded {
		return final
	}
	if ok, why := f.detect(ctx, job, final.Attempt); !ok {
		f.log.Warn("the command succeeded but the job is not detected: the attempt failed", zap.String("job", job.JobID),
			zap.Int("attempt", final.Attempt), zap.String("detection", why))
		final.State, final.Reason = events.StateFailed, events.ReasonNotDetected
	}
	return final
}
