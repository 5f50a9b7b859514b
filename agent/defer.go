package agent

import (
	"context"
	"fmt"

	"go.uber.org/zap"

	"github.com/pcm-project/pcm/events"
)

// Defer puts jobID off, as the user at the desktop asks: it records a
// deferred status (who, the deferral's number and how many the job
// allows, until when), which both faces respect: the job does not run
// unattended before the deferral ends (the service keeps the deferral in
// its journal), and then runs after the grace countdown. A job may be
// deferred once its mandatory time has come, before it ran, while it
// allows deferrals and its deadline has not passed (ErrNoDeferral
// otherwise, saying why); a user may still run it at any time.
func (d *Desktop) Defer(ctx context.Context, jobID string) (events.JobStatus, error) {
	if err := d.bind(ctx); err != nil {
		return events.JobStatus{}, err
	}
	found, err := d.find(ctx, jobID)
	if err != nil {
		return events.JobStatus{}, err
	}
	job := found.Job
	f, dec, err := d.decide(ctx, job, true, false, found.Cancelled)
	if err != nil {
		return events.JobStatus{}, err
	}
	switch {
	case dec.Action == Settle || dec.Action == Refuse:
		return events.JobStatus{}, fmt.Errorf("%w: job %s: %s", ErrAlreadyDone, jobID, dec.Why)
	case job.Deferrals == nil:
		return events.JobStatus{}, fmt.Errorf("%w: job %s allows no deferral: it runs at its time", ErrNoDeferral, jobID)
	case f.Last != nil && f.Last.State == events.StateStarted:
		return events.JobStatus{}, fmt.Errorf("%w: job %s is running (attempt %d, by the %s face)", ErrNoDeferral, jobID, f.Last.Attempt, f.Last.Runner)
	}
	off := deferralOffer(f)
	if !off.Allowed {
		return events.JobStatus{}, fmt.Errorf("%w: job %s: %s", ErrNoDeferral, jobID, off.Why)
	}
	st := d.newStatus(jobID, events.StateDeferred, events.NextAttempt(0, f.Last), job.Attempts())
	until := off.Until.UTC()
	st.DeferredUntil, st.Deferral, st.DeferralsMax = &until, off.Number, job.Deferrals.Max
	st.Reason = fmt.Sprintf("deferred by %s until %s (deferral %d of %d, %d left)", d.user, stamp(until), off.Number, job.Deferrals.Max, off.Left)
	if err := d.persist(ctx, st); err != nil {
		return st, err
	}
	d.log.Info("job deferred by the user", zap.String("job", jobID), zap.Time("until", until), zap.Int("deferral", off.Number), zap.Int("left", off.Left))
	return st, nil
}
