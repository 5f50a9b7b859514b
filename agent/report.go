package agent

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/pcm-project/pcm/agent/journal"
	"github.com/pcm-project/pcm/events"
	"github.com/pcm-project/pcm/internal/backoff"
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

// report publishes the outbox until jobID has nothing left in it and the
// delivery ack (when not "") is acked, retrying while the broker is
// unreachable. It returns false only when ctx ends first: the status then
// waits in the journal.
func (s *Service) report(ctx context.Context, jobID, ack string) bool {
	err := backoff.Retry(ctx, backoff.Policy{
		Backoff: retryDelays,
		OnRetry: func(err error, d time.Duration) {
			s.counts.statusWaits.Add(1)
			msg := "offer not acked yet; the ack is retried"
			if errors.Is(err, errNotPersisted) {
				msg = "status not persisted yet; it waits in the journal"
			}
			s.log.Warn(msg, zap.String("job", jobID), zap.Error(err), zap.Duration("retry_in", d))
		},
	}, func(ctx context.Context) error {
		err := s.flush(ctx)
		pending, perr := s.journal.Pending(jobID)
		switch {
		case perr == nil && len(pending) == 0 && !s.ackPending(ack):
			return nil
		case len(pending) > 0 || perr != nil:
			return fmt.Errorf("%w: %w", errNotPersisted, errors.Join(err, perr))
		default:
			return fmt.Errorf("%w: %w", errNotAcked, err)
		}
	})
	return err == nil
}

// Why report retries.
var (
	errNotPersisted = errors.New("status not persisted yet")
	errNotAcked     = errors.New("offer not acked yet")
)

// flush publishes the outbox in order, each entry with its Nats-Msg-Id,
// waiting for the PubAck before marking it sent. Once a status that ends a
// job is persisted, the delivery of its offer the journal recorded (the
// offer may have been delivered to an earlier life of the agent) is queued
// for its ack, and the offers held for its end are woken; then every
// queued delivery is acked. Flushing is the one
// place that acks what the client's consumer delivered.
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
		seq, err := s.publishOutgoing(pctx, msg)
		cancel()
		if err != nil {
			return fmt.Errorf("publishing status %s: %w", o.MsgID, err)
		}
		if err := s.journal.MarkSent(o.Seq, seq); err != nil {
			return err
		}
		if o.Final {
			s.fault(FaultAfterPublish)
			if rec, ok, err := s.journal.Get(o.JobID); err == nil && ok {
				s.ackAfterFlush(rec.AckSubject)
				if rec.Restart == journal.RestartPending {
					s.kickRestart() // its status stored, the restart may come
				}
			}
			// The service does not hear its own statuses (no echo): the
			// offers held for this job's end are woken here.
			s.wakeDependents(o.JobID)
		}
	}
	return s.ackQueued(ctx)
}

// publishOutgoing publishes an outbox entry and returns its stream
// sequence. A final status is stored only if its attempt has none yet
// (storeFinal): one the other face stored first, while this face's lease
// had lapsed (it was stalled, or died after journaling its final), stands,
// and this one is dropped from the outbox as sent, with a warning.
func (s *Service) publishOutgoing(ctx context.Context, msg *nats.Msg) (uint64, error) {
	st, final := finalOf(msg)
	if !final {
		ack, err := s.js.PublishMsg(ctx, msg)
		if err != nil {
			return 0, err
		}
		return ack.Sequence, nil
	}
	var (
		seq uint64
		err error
	)
	if after, ok := s.startedSeq(ctx, st); ok {
		seq, _, err = storeFinalAfter(ctx, s.js, msg, st, after)
	} else {
		seq, _, err = storeFinal(ctx, s.js, msg, st)
	}
	if errors.Is(err, errSuperseded) {
		s.counts.superseded.Add(1)
		s.log.Warn("the attempt already has a final status, stored by the other face while this one's lease had lapsed: this one is not stored",
			zap.String("job", st.JobID), zap.Int("attempt", st.Attempt), zap.String("state", string(st.State)), zap.Error(err))
		return seq, nil
	}
	return seq, err
}

// maxAckTries bounds the tries of one ack while connected: a delivery the
// broker no longer knows (its consumer was re-created) is never answered,
// and its offer, if still pending, comes back and is settled again.
const maxAckTries = 3

// ackAfterFlush queues the delivery whose ack subject is subject ("" is
// nothing) for the next flush to ack.
func (s *Service) ackAfterFlush(subject string) {
	if subject == "" {
		return
	}
	s.acksMu.Lock()
	defer s.acksMu.Unlock()
	if _, queued := s.acks[subject]; !queued {
		s.acks[subject] = 0
	}
}

// ackPending reports whether the delivery of subject waits for its ack.
func (s *Service) ackPending(subject string) bool {
	s.acksMu.Lock()
	defer s.acksMu.Unlock()
	_, queued := s.acks[subject]
	return queued
}

// ackQueued acks each queued delivery and waits for the broker's
// confirmation (a double ack: after it the offer is never redelivered).
// An ack that fails stays queued for the next flush, up to maxAckTries
// while connected.
func (s *Service) ackQueued(ctx context.Context) error {
	s.acksMu.Lock()
	subjects := make([]string, 0, len(s.acks))
	for subj := range s.acks {
		subjects = append(subjects, subj)
	}
	s.acksMu.Unlock()
	if len(subjects) > 0 && !s.nc.IsConnected() {
		return fmt.Errorf("%d acks wait for the connection to the broker", len(subjects))
	}
	var failed error
	for _, subj := range subjects {
		actx, cancel := context.WithTimeout(ctx, publishTimeout)
		_, err := s.nc.RequestWithContext(actx, subj, []byte(jetstreamAck))
		cancel()
		s.acksMu.Lock()
		switch {
		case err == nil:
			delete(s.acks, subj)
		case s.nc.IsConnected() && ctx.Err() == nil:
			if s.acks[subj]++; s.acks[subj] >= maxAckTries {
				delete(s.acks, subj)
				s.log.Warn("ack not confirmed; giving up on it: the offer comes back and is settled again", zap.String("ack_subject", subj), zap.Error(err))
			}
		}
		s.acksMu.Unlock()
		if err != nil && failed == nil {
			failed = fmt.Errorf("acking a delivery: %w", err)
		}
	}
	return failed
}

// jetstreamAck is the body of a JetStream ack.
const jetstreamAck = "+ACK"

// reportLoop flushes the outbox when asked, when the connection comes back,
// and on a backoff while anything is left in it.
func (s *Service) reportLoop(ctx context.Context) {
	reconnected := s.nc.StatusChanged(nats.CONNECTED)
	defer s.nc.RemoveStatusListener(reconnected)
	b := retryDelays
	for {
		var retry <-chan time.Time
		if err := s.flush(ctx); err != nil {
			if ctx.Err() != nil {
				return
			}
			d := b.Next()
			s.log.Debug("outbox not flushed", zap.Error(err), zap.Duration("retry_in", d))
			retry = time.After(d)
		} else {
			b.Reset()
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

// startedAckWait bounds the wait for the PubAck of an attempt's started
// status when its final status is stored: past it, the final is stored
// after a read of the last status, as without it.
const startedAckWait = 500 * time.Millisecond

// startedAck is the PubAck to come of the started status of an attempt.
type startedAck struct {
	job     string
	attempt int
	ack     jetstream.PubAckFuture
}

// publishStarted publishes the started status st without waiting: the
// journal already holds the start. Its PubAck, when it comes, is the
// sequence the attempt's final status is stored after (startedSeq).
func (s *Service) publishStarted(st events.JobStatus) {
	s.started1.Store(nil)
	msg, err := statusMsg(st)
	if err != nil {
		s.log.Warn("cannot encode a status", zap.Error(err))
		return
	}
	ack, err := s.js.PublishMsgAsync(msg)
	if err != nil {
		s.log.Debug("started status not sent", zap.Error(err))
		return
	}
	s.started1.Store(&startedAck{job: st.JobID, attempt: st.Attempt, ack: ack})
}

// startedSeq is the stream sequence of the started status of st's attempt
// published by this run of the agent, once the broker stored it (ok false
// if it did not say so within startedAckWait, or if it stored a duplicate).
func (s *Service) startedSeq(ctx context.Context, st events.JobStatus) (uint64, bool) {
	a := s.started1.Load()
	if a == nil || a.job != st.JobID || a.attempt != st.Attempt {
		return 0, false
	}
	s.started1.CompareAndSwap(a, nil)
	t := time.NewTimer(startedAckWait)
	defer t.Stop()
	select {
	case ack := <-a.ack.Ok():
		return ack.Sequence, !ack.Duplicate
	case <-a.ack.Err():
	case <-t.C:
	case <-ctx.Done():
	}
	return 0, false
}
