package agent

import (
	"context"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/pcm-project/pcm/agent/journal"
	"github.com/pcm-project/pcm/events"
)

// handleCancel records a cancellation. A job held for later (its offer
// delivered and nak'ed) is finished as cancelled at once; a job not seen yet
// is marked so that its offer finishes as cancelled; a job already done is
// left as it is.
func (s *Service) handleCancel(ctx context.Context, msg jetstream.Msg, ev event.Event) {
	if !s.verified(ctx, msg, ev) {
		return
	}
	c, err := events.ParseJobCancelled(ev)
	if err != nil {
		s.refuse(ctx, msg, "", err)
		return
	}
	log := s.log.With(zap.String("job", c.JobID))
	rec, found, err := s.journal.Get(c.JobID)
	if err != nil {
		log.Error("cannot read the journal; the cancellation comes back", zap.Error(err))
		_ = msg.NakWithDelay(retryLater)
		return
	}
	if found && rec.Phase == journal.PhaseDone {
		log.Info("cancellation of a job already done here: nothing to cancel", zap.String("state", rec.FinalState))
		s.ack(ctx, msg)
		return
	}
	rec.JobID = c.JobID
	rec.Cancelled = true
	rec.CancelReason = c.Reason
	if rec.Phase == "" {
		rec.Phase = journal.PhaseReceived
	}
	var out []journal.Outgoing
	held := found && rec.AckSubject != ""
	if held {
		st := s.newStatus(c.JobID, events.StateCancelled, rec.Attempt+1, 0)
		st.Reason = "cancelled before it started: " + c.Reason
		if out, err = s.outgoing(st, true); err != nil {
			log.Error("cannot encode a status", zap.Error(err))
			return
		}
		rec.FinalState = string(events.StateCancelled)
	}
	if _, err := s.journal.Put(rec, out...); err != nil {
		log.Error("cannot journal the cancellation; it comes back", zap.Error(err))
		_ = msg.NakWithDelay(retryLater)
		return
	}
	log.Info("job cancelled", zap.String("reason", c.Reason), zap.Bool("was_pending_here", held))
	if held && !s.report(ctx, c.JobID) {
		_ = msg.NakWithDelay(retryLater)
		return
	}
	s.ack(ctx, msg)
}
