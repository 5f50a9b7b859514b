package agent

import (
	"context"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"go.uber.org/zap"

	"github.com/pcm-project/pcm/agent/journal"
	"github.com/pcm-project/pcm/events"
)

// statusMsg encodes a status as a NATS message with its Nats-Msg-Id.
func statusMsg(st events.JobStatus) (*nats.Msg, error) {
	ev, err := events.NewJobStatus(st)
	if err != nil {
		return nil, err
	}
	return events.NewMsg(events.StatusSubject(st.ClientID, st.JobID), ev, ev.ID())
}

// outgoing turns a status into a journal outbox entry. final marks the
// status that ends the job on this client.
func (s *Service) outgoing(st events.JobStatus, final bool) ([]journal.Outgoing, error) {
	msg, err := statusMsg(st)
	if err != nil {
		return nil, err
	}
	return []journal.Outgoing{{
		JobID: st.JobID, Subject: msg.Subject, MsgID: msg.Header.Get(events.HeaderMsgID),
		Header: map[string]string{events.HeaderContentType: events.ContentTypeCloudEvents},
		Data:   msg.Data, Final: final,
	}}, nil
}

// report publishes the outbox until jobID has nothing left in it, retrying
// while the broker is unreachable. It returns false only when ctx ends
// first: the status then waits in the journal.
func (s *Service) report(ctx context.Context, jobID string) bool {
	b := newBackoff()
	for {
		err := s.flush(ctx)
		if err == nil {
			pending, perr := s.journal.Pending(jobID)
			if perr == nil && len(pending) == 0 {
				return true
			}
		}
		d := b.delay()
		s.log.Warn("status not persisted yet; it waits in the journal", zap.String("job", jobID), zap.Error(err), zap.Duration("retry_in", d))
		if !sleep(ctx, d) {
			return false
		}
	}
}

// flush publishes the outbox in order, each entry with its Nats-Msg-Id,
// waiting for the PubAck before marking it sent. After a final status is
// persisted, the offer is acked through the ack subject the journal kept.
func (s *Service) flush(ctx context.Context) error {
	s.flushMu.Lock()
	defer s.flushMu.Unlock()
	pending, err := s.journal.Pending("")
	if err != nil {
		return err
	}
	for _, o := range pending {
		msg := nats.NewMsg(o.Subject)
		msg.Data = o.Data
		for k, v := range o.Header {
			msg.Header.Set(k, v)
		}
		msg.Header.Set(events.HeaderMsgID, o.MsgID)
		pctx, cancel := context.WithTimeout(ctx, publishTimeout)
		ack, err := s.js.PublishMsg(pctx, msg)
		cancel()
		if err != nil {
			return fmt.Errorf("publishing status %s: %w", o.MsgID, err)
		}
		if err := s.journal.MarkSent(o.Seq, ack.Sequence); err != nil {
			return err
		}
		if o.Final {
			s.fault(FaultAfterPublish)
			if s.ackRecorded(ctx, o.JobID) {
				s.markLiveAcked(o.JobID)
			}
		}
	}
	return nil
}

// ackRecorded acks the last delivery of jobID's offer through the ack
// subject kept in the journal (the offer may have been delivered to an
// earlier life of the agent). It reports whether the broker confirmed it.
func (s *Service) ackRecorded(ctx context.Context, jobID string) bool {
	rec, ok, err := s.journal.Get(jobID)
	if err != nil || !ok || rec.AckSubject == "" {
		return false
	}
	actx, cancel := context.WithTimeout(ctx, publishTimeout)
	defer cancel()
	if _, err := s.nc.RequestWithContext(actx, rec.AckSubject, []byte("+ACK")); err != nil {
		s.log.Debug("ack through the journal not confirmed; the offer is acked when it comes back", zap.String("job", jobID), zap.Error(err))
		return false
	}
	return true
}

// markLiveAcked marks the message in the consume loop's hands acked when
// it is jobID's recorded delivery, which ackRecorded just acked.
func (s *Service) markLiveAcked(jobID string) {
	live := s.live.Load()
	if live == nil {
		return
	}
	if rec, ok, err := s.journal.Get(jobID); err == nil && ok && rec.AckSubject == live.Reply() {
		live.acked.Store(true)
	}
}

// reportLoop flushes the outbox when asked, when the connection comes back,
// and on a backoff while anything is left in it.
func (s *Service) reportLoop(ctx context.Context) {
	reconnected := s.nc.StatusChanged(nats.CONNECTED)
	defer s.nc.RemoveStatusListener(reconnected)
	b := newBackoff()
	for {
		var retry <-chan time.Time
		if err := s.flush(ctx); err != nil {
			if ctx.Err() != nil {
				return
			}
			d := b.delay()
			s.log.Debug("outbox not flushed", zap.Error(err), zap.Duration("retry_in", d))
			retry = time.After(d)
		} else {
			b.reset()
		}
		select {
		case <-ctx.Done():
			return
		case <-s.kick:
		case <-reconnected:
		case <-retry:
		}
	}
}
