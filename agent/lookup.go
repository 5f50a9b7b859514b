package agent

import (
	"context"
	"fmt"

	"github.com/nats-io/nats.go"
	"go.uber.org/zap"

	"github.com/pcm-project/pcm/events"
	"github.com/pcm-project/pcm/internal/streamread"
)

// brokerFacts is what the broker says of a job on this client: its last
// status and its cancellation.
type brokerFacts struct {
	last   *events.JobStatus
	cancel *events.JobCancelled
}

// lookup reads what the broker says of jobID on this client, both reads at
// once: the last status on pcm.status.<client>.<job> (no rerun) and the last
// cancellation on pcm.jobs.cancel.<job> (a cancellation holds whatever the
// order in which it and the offer arrive). Each is one direct get by
// subject, the only reads an agent's credentials allow on those subjects.
func (f *face) lookup(ctx context.Context, jobID string) (brokerFacts, error) {
	ctx, cancel := context.WithTimeout(ctx, publishTimeout)
	defer cancel()
	type cancelRead struct {
		c   *events.JobCancelled
		err error
	}
	cancels := make(chan cancelRead, 1)
	go func() {
		c, err := f.cancellation(ctx, jobID)
		cancels <- cancelRead{c, err}
	}()
	var bf brokerFacts
	last, lerr := f.lastStatus(ctx, jobID)
	cr := <-cancels
	if lerr != nil {
		return bf, lerr
	}
	if cr.err != nil {
		return bf, cr.err
	}
	bf.last, bf.cancel = last, cr.c
	return bf, nil
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
