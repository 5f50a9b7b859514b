package agent

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/nats-io/nats.go"
	"go.uber.org/zap"

	"github.com/pcm-project/pcm/events"
	"github.com/pcm-project/pcm/internal/streamread"
)

// brokerFacts is what the broker says of a job on this client: its last
// status and its cancellation, and for a job with a plan, the halt of its
// rollout and the last statuses of the jobs it requires.
type brokerFacts struct {
	last     *events.JobStatus
	cancel   *events.JobCancelled
	halt     *events.JobHalted
	required map[string]*events.JobStatus
}

// lookup reads what the broker says of job on this client, every read at
// once: the last status on pcm.status.<client>.<job> (no rerun), the last
// cancellation on pcm.jobs.cancel.<job> (a cancellation holds whatever the
// order in which it and the offer arrive), for a staged rollout the last
// halt or resume on pcm.jobs.halt.<job> (so does a halt), and the last
// status here of each job it requires. Each is one direct get by subject,
// the only reads an agent's credentials allow on those subjects. A job
// known by its id alone (job.JobID) gets the first two.
func (f *face) lookup(ctx context.Context, job events.JobOffered) (brokerFacts, error) {
	ctx, cancel := context.WithTimeout(ctx, publishTimeout)
	defer cancel()
	var (
		bf   brokerFacts
		wg   sync.WaitGroup
		errs = make([]error, 3+len(job.Requires))
		reqs = make([]*events.JobStatus, len(job.Requires))
	)
	wg.Go(func() { bf.cancel, errs[1] = f.cancellation(ctx, job.JobID) })
	if job.Rollout != nil {
		wg.Go(func() { bf.halt, errs[2] = f.halted(ctx, job.JobID) })
	}
	for i, req := range job.Requires {
		wg.Go(func() { reqs[i], errs[3+i] = f.lastStatus(ctx, req) })
	}
	bf.last, errs[0] = f.lastStatus(ctx, job.JobID)
	wg.Wait()
	if len(job.Requires) > 0 {
		bf.required = make(map[string]*events.JobStatus, len(reqs))
		for i, req := range job.Requires {
			bf.required[req] = reqs[i]
		}
	}
	return bf, errors.Join(errs...)
}

// lastStatus returns the last status of jobID on this client; nil when
// there is none, or when what is stored cannot be read (logged).
func (f *face) lastStatus(ctx context.Context, jobID string) (*events.JobStatus, error) {
	m, found, err := streamread.Last(ctx, f.js, events.StreamStatus, events.StatusSubject(f.cfg.ClientID, jobID))
	if err != nil {
		return nil, fmt.Errorf("reading the last status of job %s: %w", jobID, err)
	}
	if !found {
		return nil, nil
	}
	ev, err := events.Decode(m.Header, m.Data)
	if err == nil {
		var st events.JobStatus
		if st, err = events.ParseJobStatus(ev); err == nil {
			return &st, nil
		}
	}
	f.log.Warn("ignoring an unreadable status on the broker", zap.String("subject", m.Subject), zap.Error(err))
	return nil, nil
}

// cancellation returns the last cancellation of jobID stored on its
// cancellation subject, nil when there is none. One that is not a valid
// cancellation of jobID, or is not signed by a trusted key (see
// Config.TrustedKeys), is ignored (logged): only the publisher's word
// cancels a job.
func (f *face) cancellation(ctx context.Context, jobID string) (*events.JobCancelled, error) {
	m, found, err := streamread.Last(ctx, f.js, events.StreamJobs, events.CancelSubject(jobID))
	if err != nil {
		return nil, fmt.Errorf("reading the cancellation of job %s: %w", jobID, err)
	}
	if !found {
		return nil, nil
	}
	c, err := f.parseCancellation(m.Header, m.Data)
	if err == nil && c.JobID != jobID {
		err = fmt.Errorf("%w: the cancellation stored for job %s cancels job %s", events.ErrMalformed, jobID, c.JobID)
	}
	if err != nil {
		f.log.Warn("ignoring a cancellation that is not the publisher's", zap.String("job", jobID), zap.Uint64("stream_seq", m.Seq), zap.Error(err))
		return nil, nil
	}
	return &c, nil
}

// parseCancellation reads a cancellation, its signature verified.
func (f *face) parseCancellation(h nats.Header, data []byte) (events.JobCancelled, error) {
	ev, err := events.Decode(h, data)
	if err != nil {
		return events.JobCancelled{}, err
	}
	if ev.Type() != events.TypeJobCancelled {
		return events.JobCancelled{}, fmt.Errorf("%w: a %s event", events.ErrUnexpectedType, ev.Type())
	}
	if err := f.checkSignature(ev); err != nil {
		return events.JobCancelled{}, err
	}
	return events.ParseJobCancelled(ev)
}

// halted returns the halt of jobID's staged rollout: what the last event
// on its halt subject means (events.ReadHalt, with this face's trusted
// publisher and controller keys); nil when it is not halted. An event that
// says nothing (not a trusted halt) is ignored, logged and counted: only a
// publisher's or the controller's word halts a rollout, and only a
// publisher's resumes it.
func (f *face) halted(ctx context.Context, jobID string) (*events.JobHalted, error) {
	m, found, err := streamread.Last(ctx, f.js, events.StreamJobs, events.HaltSubject(jobID))
	if err != nil {
		return nil, fmt.Errorf("reading the halt of job %s: %w", jobID, err)
	}
	if !found {
		return nil, nil
	}
	h, err := events.ReadHalt(m.Header, m.Data, jobID, f.cfg.TrustedKeys, f.cfg.ControllerKeys)
	if err != nil {
		f.counts.untrustedHalts.Add(1)
		f.log.Warn("the last halt or resume of a rollout is not trusted", zap.String("job", jobID), zap.Uint64("stream_seq", m.Seq),
			zap.Bool("halted", h != nil), zap.Error(err))
	}
	return h, nil
}
