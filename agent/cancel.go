package agent

import (
	"context"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/pcm-project/pcm/agent/journal"
	"github.com/pcm-project/pcm/events"
)

// handleCancel handles a cancellation delivered by the client's consumer
// (a copy on one of the job's target subjects). A job whose offer is held
// here (delivered and nak'ed until later) is decided at once with the
// cancellation, and settled cancelled unless it is already over; a job not
// seen yet is marked in the journal, so its offer settles cancelled (the
// agent also reads the job's cancellation subject before it runs any job);
// a job done here is left as it is. The cancellation itself is acked
// through the outbox flush like every delivery.
func (s *Service) handleCancel(ctx context.Context, msg jetstream.Msg, ev event.Event) {
	if err := s.checkSignature(ev); err != nil {
		s.refuseEvent(ctx, msg, events.JobIDOf(ev), err)
		return
	}
	c, err := events.ParseJobCancelled(ev)
	if err != nil {
		s.refuseEvent(ctx, msg, "", err)
		return
	}
	log := s.log.With(zap.String("job", c.JobID))
	rec, found, err := s.journal.Get(c.JobID)
	if err != nil {
		log.Error("cannot read the journal; the cancellation comes back", zap.Error(err))
		_ = msg.NakWithDelay(retryLater)
		return
	}
	held := found && rec.Phase != journal.PhaseDone && rec.AckSubject != ""
	switch {
	case found && rec.Phase == journal.PhaseDone:
		log.Info("cancellation of a job already done here: nothing to cancel", zap.String("state", rec.FinalState))
	case held:
		bf, err := s.lookup(ctx, events.JobOffered{JobID: c.JobID})
		if err != nil {
			log.Warn("cannot read the job's last status; the cancellation comes back", zap.Error(err))
			_ = msg.NakWithDelay(retryLater)
			return
		}
		// The offer is not at hand: its max attempts are the ones its last
		// status reports.
		job := events.JobOffered{JobID: c.JobID}
		if bf.last != nil {
			job.MaxAttempts = bf.last.MaxAttempts
		}
		f := Facts{Face: events.RunnerService, Unattended: true, Job: job, Journal: &rec,
			Last: bf.last, Cancel: &c, OS: s.cfg.OS, Arch: s.cfg.Arch, Now: s.now()}
		if err := s.settle(ctx, rec.AckSubject, f, Decide(f)); err != nil {
			log.Warn("the cancelled status is not persisted yet; the cancellation comes back", zap.Error(err))
			_ = msg.NakWithDelay(retryLater)
			return
		}
	default:
		rec.JobID, rec.Cancelled, rec.CancelReason = c.JobID, true, c.Reason
		if rec.Phase == "" {
			rec.Phase = journal.PhaseReceived
		}
		if _, err := s.journal.Put(rec); err != nil {
			log.Error("cannot journal the cancellation; it comes back", zap.Error(err))
			_ = msg.NakWithDelay(retryLater)
			return
		}
		log.Info("job cancelled before its offer was seen here", zap.String("reason", c.Reason))
	}
	s.ackAfterFlush(msg.Reply())
	s.report(ctx, c.JobID, msg.Reply())
}
