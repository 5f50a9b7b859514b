package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/pcm-project/pcm/agent/journal"
	"github.com/pcm-project/pcm/events"
)

// retryLater is how long an offer waits before it comes back when the agent
// cannot decide about it now (journal or broker unreachable).
const retryLater = 5 * time.Second

// handle decides about one message of the client's consumer. It never
// returns an error: whatever happens is logged, and the message is acked,
// nak'ed or termed so that the agent carries on with the rest.
func (s *Service) handle(ctx context.Context, msg jetstream.Msg) {
	ev, err := events.Decode(msg.Headers(), msg.Data())
	if err != nil {
		s.refuse(ctx, msg, jobIDOfRaw(msg.Headers(), msg.Data()), err)
		return
	}
	switch ev.Type() {
	case events.TypeJobOffered:
		s.handleOffer(ctx, msg, ev)
	case events.TypeJobCancelled:
		s.handleCancel(ctx, msg, ev)
	default:
		s.refuse(ctx, msg, events.JobIDOf(ev), fmt.Errorf("%w: a %s event on jobs subject %s", events.ErrUnexpectedType, ev.Type(), msg.Subject()))
	}
}

// jobIDOfRaw reads a job id from a message that did not decode, where one
// can be read: the body's subject attribute, its data.job_id or top-level
// job_id, or the binary-mode ce-subject header. Each must be a valid id.
func jobIDOfRaw(header nats.Header, data []byte) string {
	var probe struct {
		Subject string `json:"subject"`
		JobID   string `json:"job_id"`
		Data    struct {
			JobID string `json:"job_id"`
		} `json:"data"`
	}
	_ = json.Unmarshal(data, &probe)
	candidates := []string{probe.Subject, probe.Data.JobID, probe.JobID}
	for k, v := range header {
		if strings.EqualFold(k, "ce-subject") && len(v) > 0 {
			candidates = append(candidates, v[0])
		}
	}
	for _, c := range candidates {
		if events.ValidID("job id", c) == nil {
			return c
		}
	}
	return ""
}

// refuse handles an event the agent will not act on: it logs why, reports
// rejected when it can name a job it has never seen (so a bad event cannot
// overwrite the record of a real job), and terms the message so it is not
// redelivered. If the rejected status cannot be persisted, the message is
// nak'ed and comes back.
func (s *Service) refuse(ctx context.Context, msg jetstream.Msg, jobID string, reason error) {
	log := s.log.With(zap.String("subject", msg.Subject()), zap.String("job", jobID))
	if meta, err := msg.Metadata(); err == nil {
		log = log.With(zap.Uint64("stream_seq", meta.Sequence.Stream))
	}
	log.Warn("refusing an event", zap.Error(reason))
	if jobID != "" {
		if _, known, err := s.journal.Get(jobID); err == nil && !known {
			st := s.newStatus(jobID, events.StateRejected, 1, 0)
			st.Reason = truncate(reason.Error(), 1024)
			if err := s.publishStatus(ctx, st); err != nil {
				log.Warn("cannot report the rejection yet; the event comes back", zap.Error(err))
				_ = msg.NakWithDelay(retryLater)
				return
			}
		}
	}
	_ = msg.TermWithReason(truncate(reason.Error(), 256))
}

// handleOffer applies the rules of the design contract to an offer, in order:
// already done, cancelled, platform, expiry, offer time, mandatory time.
func (s *Service) handleOffer(ctx context.Context, msg jetstream.Msg, ev event.Event) {
	if !s.verified(ctx, msg, ev) {
		return
	}
	job, err := events.ParseJobOffered(ev)
	if err != nil {
		s.refuse(ctx, msg, events.JobIDOf(ev), err)
		return
	}
	if t, ok := events.TargetOfSubject(msg.Subject()); !ok || !slices.Contains(job.Targets, t) ||
		(t.Kind == events.TargetClient && t.Name != s.cfg.ClientID) {
		s.refuse(ctx, msg, job.JobID, fmt.Errorf("%w: job %s arrived on %s", ErrMisrouted, job.JobID, msg.Subject()))
		return
	}
	log := s.log.With(zap.String("job", job.JobID))
	rec, found, err := s.journal.Get(job.JobID)
	if err != nil {
		log.Error("cannot read the journal; the offer comes back", zap.Error(err))
		_ = msg.NakWithDelay(retryLater)
		return
	}
	if found {
		// A final status of an earlier delivery may still wait in the outbox.
		if pending, _ := s.journal.Pending(job.JobID); len(pending) > 0 {
			if !s.report(ctx, job.JobID) {
				_ = msg.NakWithDelay(retryLater)
				return
			}
			rec, _, _ = s.journal.Get(job.JobID)
		}
		if rec.Phase == journal.PhaseDone {
			log.Info("job already done on this client; acking the offer", zap.String("state", rec.FinalState))
			s.ack(ctx, msg)
			return
		}
	}
	s.seen.Add(1)
	now := time.Now()
	switch {
	case rec.Cancelled:
		s.finishUnrun(ctx, msg, job, rec, events.StateCancelled, "cancelled before it started: "+rec.CancelReason)
	case !events.PlatformMatches(job.Command.Platforms, s.cfg.OS, s.cfg.Arch):
		reason := fmt.Sprintf("job is for %s; this client is %s", strings.Join(job.Command.Platforms, ", "), s.cfg.Platform())
		log.Info("job filtered out by platform", zap.String("why", reason),
			zap.Int64("jobs_before_filter", s.seen.Load()), zap.Int64("jobs_after_filter", s.kept.Load()))
		s.finishUnrun(ctx, msg, job, rec, events.StateNotApplicable, reason)
	case !now.Before(job.ExpireAfter):
		s.kept.Add(1)
		s.finishUnrun(ctx, msg, job, rec, events.StateExpired, "expired at "+job.ExpireAfter.Format(time.RFC3339)+" before it ran")
	case now.Before(job.OfferAfter):
		s.kept.Add(1)
		s.hold(msg, job, rec, job.OfferAfter, "not offered before its offer time")
	case job.Mandatory() && job.Command.Automated && now.Before(*job.MandatoryAfter):
		s.kept.Add(1)
		s.hold(msg, job, rec, *job.MandatoryAfter, "waiting for its mandatory time")
	case job.Mandatory() && job.Command.Automated:
		s.kept.Add(1)
		s.execute(ctx, msg, job, rec)
	default:
		s.kept.Add(1)
		s.holdForDesktop(ctx, msg, job, rec)
	}
}

// hold records the delivery (so a cancellation or the desktop can settle it
// later) and asks the broker to redeliver the offer at until.
func (s *Service) hold(msg jetstream.Msg, job events.JobOffered, rec journal.Record, until time.Time, why string) {
	if rec.JobID == "" || rec.AckSubject != msg.Reply() {
		rec.JobID = job.JobID
		if rec.Phase == "" {
			rec.Phase = journal.PhaseReceived
		}
		rec.AckSubject = msg.Reply()
		if _, err := s.journal.Put(rec); err != nil {
			s.log.Error("cannot journal a pending job; it comes back", zap.String("job", job.JobID), zap.Error(err))
			_ = msg.NakWithDelay(retryLater)
			return
		}
	}
	d := max(time.Until(until), 0) + 5*time.Millisecond
	s.log.Info("job pending", zap.String("job", job.JobID), zap.String("why", why), zap.Time("until", until))
	_ = msg.NakWithDelay(d)
}

// holdForDesktop keeps an optional (or interactive) job for the desktop face
// until it expires, unless a final status for this client already exists.
func (s *Service) holdForDesktop(ctx context.Context, msg jetstream.Msg, job events.JobOffered, rec journal.Record) {
	last, seq, err := s.lastStatus(ctx, job.JobID)
	if err != nil {
		s.log.Warn("cannot read the job's last status; the offer comes back", zap.String("job", job.JobID), zap.Error(err))
		_ = msg.NakWithDelay(retryLater)
		return
	}
	if jobOver(last, job) {
		s.adopt(ctx, msg, job, last, seq)
		return
	}
	why := "optional: the user runs it from the desktop"
	if job.Mandatory() {
		why = "needs the user: the desktop runs it at its mandatory time"
	}
	s.hold(msg, job, rec, job.ExpireAfter, why)
}

// finishUnrun ends a job that will not run on this client with state
// (cancelled, expired, not_applicable): the final status goes to the journal,
// then to the broker, then the offer is acked.
func (s *Service) finishUnrun(ctx context.Context, msg jetstream.Msg, job events.JobOffered, rec journal.Record, state events.State, reason string) {
	st := s.newStatus(job.JobID, state, rec.Attempt+1, job.Attempts())
	st.Reason = reason
	out, err := s.outgoing(st, true)
	if err != nil {
		s.log.Error("cannot encode a status", zap.Error(err))
		return
	}
	rec.JobID = job.JobID
	if rec.Phase == "" || rec.Phase == journal.PhaseStarted {
		rec.Phase = journal.PhaseReceived
	}
	rec.FinalState = string(state)
	rec.AckSubject = msg.Reply()
	if _, err := s.journal.Put(rec, out...); err != nil {
		s.log.Error("cannot journal the final status; the offer comes back", zap.String("job", job.JobID), zap.Error(err))
		_ = msg.NakWithDelay(retryLater)
		return
	}
	s.log.Info("job ends without running", zap.String("job", job.JobID), zap.String("state", string(state)), zap.String("why", reason))
	if s.report(ctx, job.JobID) {
		s.ack(ctx, msg)
	}
}

// adopt records a final status found on the broker (published by the
// desktop, or by an earlier life of this agent whose journal was lost) and
// acks the offer without running the job.
func (s *Service) adopt(ctx context.Context, msg jetstream.Msg, job events.JobOffered, last *events.JobStatus, seq uint64) {
	_, err := s.journal.Put(journal.Record{
		JobID: job.JobID, Phase: journal.PhaseDone, Attempt: last.Attempt,
		FinalState: string(last.State), StatusSeq: seq, AckSubject: msg.Reply(),
	})
	if err != nil {
		s.log.Warn("cannot journal an adopted final status", zap.String("job", job.JobID), zap.Error(err))
	}
	s.log.Info("job already has a final status on this client; not running it",
		zap.String("job", job.JobID), zap.String("state", string(last.State)), zap.String("runner", string(last.Runner)), zap.Int("attempt", last.Attempt))
	s.ack(ctx, msg)
}

// jobOver reports whether last is a final status that ends job on this
// client: not a rejection (which names an event, not a run), and either not
// retryable or the last allowed attempt.
func jobOver(last *events.JobStatus, job events.JobOffered) bool {
	if last == nil || !last.State.Final() || last.State == events.StateRejected {
		return false
	}
	return !last.State.Retryable() || last.Attempt >= job.Attempts()
}

func (s *Service) ack(ctx context.Context, msg jetstream.Msg) {
	actx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := msg.DoubleAck(actx); err != nil {
		s.log.Warn("ack not confirmed; the offer may come back and will be acked then", zap.Error(err))
	}
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}
