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
	"github.com/pcm-project/pcm/internal/clock"
)

// retryLater is how long an offer waits before it comes back when the agent
// cannot decide about it now (journal or broker unreachable).
const retryLater = 5 * time.Second

// handle decides about one message of the client's consumer. It never
// returns an error: whatever happens is logged, and the message is settled
// (acked through the outbox flush), nak'ed or termed so that the agent
// carries on with the rest.
func (s *Service) handle(ctx context.Context, msg jetstream.Msg) {
	ev, err := events.Decode(msg.Headers(), msg.Data())
	if err != nil {
		s.refuseEvent(ctx, msg, jobIDOfRaw(msg.Headers(), msg.Data()), err)
		return
	}
	switch ev.Type() {
	case events.TypeJobOffered:
		s.handleOffer(ctx, msg, ev)
	case events.TypeJobCancelled:
		s.handleCancel(ctx, msg, ev)
	case events.TypeJobHalted, events.TypeJobResumed:
		s.handleHalt(ctx, msg, ev)
	default:
		s.refuseEvent(ctx, msg, events.JobIDOf(ev), fmt.Errorf("%w: a %s event on jobs subject %s", events.ErrUnexpectedType, ev.Type(), msg.Subject()))
	}
}

// refuseEvent refuses an event that is not an offer the agent can act on,
// naming jobID ("" when none can be read), for reason.
func (s *Service) refuseEvent(ctx context.Context, msg jetstream.Msg, jobID string, reason error) {
	f := Facts{Face: events.RunnerService, Job: events.JobOffered{JobID: jobID}, Refused: reason, Journal: s.knownRecord(jobID)}
	s.refuse(ctx, msg, f, Decide(f))
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

// knownRecord is the journal's record of jobID, nil when it has none. A
// journal that cannot be read counts as knowing the job: a refused event
// then reports no rejection, which could overwrite a real job's record.
func (s *Service) knownRecord(jobID string) *journal.Record {
	if jobID == "" {
		return nil
	}
	rec, found, err := s.journal.Get(jobID)
	switch {
	case err != nil:
		return &journal.Record{JobID: jobID}
	case !found:
		return nil
	}
	return &rec
}

// offerFacts gathers what the service knows about one delivery of an offer
// before the lock: the event checked (signature, validity, routing), the
// journal's record (after publishing what an earlier delivery left in the
// outbox) and the maintenance windows a job bound to one needs. The job's
// last status and cancellation are read only when the decision is not to
// run (see handleOffer): a run is decided again under the lock with both
// read. ok is false when the
// facts cannot be known now (journal or broker unreachable): the offer was
// nak'ed and comes back.
func (s *Service) offerFacts(ctx context.Context, msg jetstream.Msg, ev event.Event) (f Facts, ok bool) {
	f = Facts{Face: events.RunnerService, Unattended: true, Client: s.cfg.ClientID, Groups: s.groups, OS: s.cfg.OS, Arch: s.cfg.Arch}
	f.Job.JobID = events.JobIDOf(ev)
	if err := s.checkSignature(ev); err != nil {
		f.Refused = err
	} else if job, err := events.ParseJobOffered(ev); err != nil {
		f.Refused = err
	} else if t, ok := events.TargetOfSubject(msg.Subject()); !ok || !slices.Contains(job.Targets, t) ||
		(t.Kind == events.TargetClient && t.Name != s.cfg.ClientID) {
		f.Refused = fmt.Errorf("%w: job %s arrived on %s", ErrMisrouted, job.JobID, msg.Subject())
	} else {
		f.Job = job
	}
	if f.Refused != nil {
		f.Journal = s.knownRecord(f.Job.JobID)
		return f, true
	}
	log := s.log.With(zap.String("job", f.Job.JobID))
	rec, found, err := s.journal.Get(f.Job.JobID)
	if err == nil && found {
		// A final status of an earlier delivery may still wait in the outbox.
		if pending, _ := s.journal.Pending(f.Job.JobID); len(pending) > 0 {
			if !s.report(ctx, f.Job.JobID, "") {
				_ = msg.NakWithDelay(retryLater)
				return f, false
			}
			rec, found, err = s.journal.Get(f.Job.JobID)
		}
	}
	if err != nil {
		log.Error("cannot read the journal; the offer comes back", zap.Error(err))
		_ = msg.NakWithDelay(retryLater)
		return f, false
	}
	if found {
		f.Journal = &rec
	}
	f.Now = s.now()
	f.Grace, f.FirstSeen, f.NoSession = s.cfg.Grace, f.Now, !s.sessionOpen()
	if found && !rec.FirstSeen.IsZero() {
		f.FirstSeen = rec.FirstSeen
	}
	// The cancellation is not read here: a decision to run is made again
	// under the lock with it, and any other with it too (handleOffer).
	if f.Job.InWindow {
		if f.Windows, err = s.windows(ctx); err != nil {
			return f, s.unknownFacts(ctx, msg, f.Job.JobID, err)
		}
	}
	return f, true
}

// unknownFacts sends the offer back for later when what the broker says of
// its job cannot be read now (unless the agent is stopping), and reports
// false.
func (s *Service) unknownFacts(ctx context.Context, msg jetstream.Msg, jobID string, err error) bool {
	if ctx.Err() == nil {
		s.log.Warn("cannot read the job's last status, cancellation or maintenance windows; the offer comes back", zap.String("job", jobID), zap.Error(err))
		_ = msg.NakWithDelay(retryLater)
	}
	return false
}

// brokerFacts adds the broker's last status and cancellation of f's job to
// f, at the time now. On failure the offer is nak'ed and false returned.
func (s *Service) brokerFacts(ctx context.Context, msg jetstream.Msg, f *Facts) bool {
	// The time is taken first: what the broker says is at least as fresh
	// as the instant the decision is made for.
	now := s.now()
	bf, err := s.lookup(ctx, f.Job)
	if err != nil {
		return s.unknownFacts(ctx, msg, f.Job.JobID, err)
	}
	f.Last, f.Cancel, f.Halt, f.Required, f.Now = bf.last, bf.cancel, bf.halt, bf.required, now
	return true
}

// handleOffer decides about one delivery of an offer and does what the
// decision says. A decision not to run is made again with the job's last
// status, which outranks everything but a refusal (a job the desktop
// already ran is settled as it is, not cancelled nor held), and so is one
// to run a job with a package (not fetched for a job already over); a
// decision to run is made again under the lock, with the last status and
// the cancellation read afresh, so the hot path reads the last status
// once. A job with a plan (a staged rollout, required jobs) has what the
// broker says of it read before the lock too: the lock is never taken for
// a job that waits.
func (s *Service) handleOffer(ctx context.Context, msg jetstream.Msg, ev event.Event) {
	f, ok := s.offerFacts(ctx, msg, ev)
	if !ok {
		return
	}
	d := Decide(f)
	// A package is fetched before the lock: not for a job already over.
	planned := f.Job.Rollout != nil || len(f.Job.Requires) > 0
	if f.Refused == nil && (d.Action != Run || f.Job.Package != nil || planned) {
		if !s.brokerFacts(ctx, msg, &f) {
			return
		}
		d = Decide(f)
	}
	if f.Refused == nil {
		seen := s.counts.offers.Add(1)
		if d.Rule == RulePlatform {
			filtered := s.counts.filtered.Add(1)
			s.log.Info("job filtered out by platform", zap.String("job", f.Job.JobID), zap.String("why", d.Why),
				zap.Int64("jobs_before_filter", seen), zap.Int64("jobs_after_filter", seen-filtered))
		}
	}
	s.apply(ctx, msg, f, d)
}

// apply does what d says with one delivery of an offer: run it, nak it
// until d.Until, settle it (its final status recorded, then acked through
// the outbox), or refuse it.
func (s *Service) apply(ctx context.Context, msg jetstream.Msg, f Facts, d Decision) {
	switch d.Action {
	case Refuse:
		s.refuse(ctx, msg, f, d)
	case Wait:
		s.hold(msg, f, d)
	case Settle:
		if err := s.settle(ctx, msg.Reply(), f, d); err != nil {
			s.log.Warn("the job's final status is not persisted yet; the offer comes back", zap.String("job", f.Job.JobID), zap.Error(err))
			_ = msg.NakWithDelay(retryLater)
		}
	case Run:
		s.execute(ctx, msg, f, d)
	}
}

// refuse handles an event the agent will not act on: it logs why, reports
// rejected when the decision says so (a job this client has never seen),
// and terms the message so it is not redelivered. If the rejected status
// cannot be persisted, the message is nak'ed and comes back.
func (s *Service) refuse(ctx context.Context, msg jetstream.Msg, f Facts, d Decision) {
	log := s.log.With(zap.String("subject", msg.Subject()), zap.String("job", f.Job.JobID))
	if meta, err := msg.Metadata(); err == nil {
		log = log.With(zap.Uint64("stream_seq", meta.Sequence.Stream))
	}
	s.counts.refused.Add(1)
	log.Warn("refusing an event", zap.Error(f.Refused))
	if r := d.Report; r != nil {
		st := s.reportOf(f.Job, r)
		st.MaxAttempts = 0
		if err := s.publishStatus(ctx, st); err != nil {
			log.Warn("cannot report the rejection yet; the event comes back", zap.Error(err))
			_ = msg.NakWithDelay(retryLater)
			return
		}
	}
	_ = msg.TermWithReason(truncate(d.Why, 256))
}

// windowRecheck bounds how long the service holds a job that waits for a
// maintenance window before it reads the windows again (an operator may
// change them), in the time of the time rules.
const windowRecheck = 15 * time.Minute

// hold records the delivery (so a cancellation or the desktop can settle it
// later), with what the time rules need to hold across restarts (first
// sight, the user's deferral), and asks the broker to redeliver the offer
// when the wait ends.
func (s *Service) hold(msg jetstream.Msg, f Facts, d Decision) {
	rec := journal.Record{JobID: f.Job.JobID, Phase: journal.PhaseReceived}
	if f.Journal != nil {
		rec = *f.Journal
	}
	before := rec
	rec.AckSubject = msg.Reply()
	rec.ForService = f.Job.Command.Background
	keepTimes(&rec, f)
	if rec != before || f.Journal == nil {
		if _, err := s.journal.Put(rec); err != nil {
			s.log.Error("cannot journal a pending job; it comes back", zap.String("job", rec.JobID), zap.Error(err))
			_ = msg.NakWithDelay(retryLater)
			return
		}
	}
	wake := d.Until
	if d.Rule == RuleWindow {
		wake = minTime(wake, f.Now.Add(windowRecheck))
	}
	until := clock.Until(s.cfg.Clock, wake) + 5*time.Millisecond
	switch d.Rule {
	case RuleRequires:
		s.waiting.add(rec.JobID, f.Job.Requires)
	case RuleHalted:
		s.counts.haltedHolds.Add(1)
	}
	s.counts.held.Add(1)
	s.log.Info("job pending", zap.String("job", rec.JobID), zap.String("why", d.Why), zap.Time("until", d.Until))
	_ = msg.NakWithDelay(until)
}

// settle ends the job on this client without running it; ack is the
// subject that acks the offer's delivery. A decision with a report records
// it (journal, then broker), and the outbox flush acks the offer once it is
// stored. Without one the job is already over here: the journal is told so
// (keeping what the broker says of it) and the flush acks the offer. An
// error means the final status is not persisted yet.
func (s *Service) settle(ctx context.Context, ack string, f Facts, d Decision) error {
	log := s.log.With(zap.String("job", f.Job.JobID), zap.String("rule", string(d.Rule)))
	rec := journal.Record{JobID: f.Job.JobID}
	if f.Journal != nil {
		rec = *f.Journal
	}
	rec.AckSubject = ack
	keepTimes(&rec, f)
	if d.Report != nil {
		log.Info("job ends without running", zap.String("state", string(d.Report.State)), zap.String("why", d.Why))
		return s.journalLog(&rec).record(ctx, s.reportOf(f.Job, d.Report), d.Report.Ends)
	}
	log.Info("job already over on this client; not running it", zap.String("why", d.Why))
	if rec.Phase != journal.PhaseDone || (f.Last != nil && f.Last.RestartRequired && rec.Restart == journal.RestartNone) {
		rec.Phase = journal.PhaseDone
		if f.Last != nil {
			rec.Attempt, rec.FinalState = f.Last.Attempt, string(f.Last.State)
			restartRequired(&rec, *f.Last) // the desktop ran it and asks for a restart
		}
		if _, err := s.journal.Put(rec); err != nil {
			log.Warn("cannot journal that the job is over here", zap.Error(err))
		}
		s.kickRestart()
	}
	s.ackAfterFlush(ack)
	s.report(ctx, f.Job.JobID, ack)
	return nil
}

// keepTimes records in rec what the time rules need to hold across
// restarts of the agent: when it first saw the job, the user's latest
// deferral, and what the job says of restarts (its record may be the one
// a restart the desktop's run asks for is made from).
func keepTimes(rec *journal.Record, f Facts) {
	if rec.FirstSeen.IsZero() {
		rec.FirstSeen = f.firstSeen().UTC()
	}
	if n, until := deferred(f); n > rec.Deferral {
		rec.Deferral, rec.DeferredUntil = n, until.UTC()
	}
	rec.MayReboot, rec.InWindow = f.Job.Command.MayReboot, f.Job.InWindow
}

// minTime is the earlier of a and b.
func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}
