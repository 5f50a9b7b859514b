package agent

import (
	"context"
	"sync"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/pcm-project/pcm/agent/journal"
	"github.com/pcm-project/pcm/events"
)

// waiters are the held offers that wait for the end of a job they require
// on this client, by required job: the service wakes them when it hears
// that job end (its status on the client's subject), so a chain of jobs
// runs one after the other without waiting for the redeliveries. It is a
// hint kept in memory: after a restart the offers come back at their time
// (requiresRecheck) all the same.
type waiters struct {
	mu    sync.Mutex
	byJob map[string]map[string]bool // required job -> jobs waiting for it
}

// add records that job waits for each of required.
func (w *waiters) add(job string, required []string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.byJob == nil {
		w.byJob = map[string]map[string]bool{}
	}
	for _, r := range required {
		if w.byJob[r] == nil {
			w.byJob[r] = map[string]bool{}
		}
		w.byJob[r][job] = true
	}
}

// take returns the jobs waiting for required, and forgets them.
func (w *waiters) take(required string) []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []string
	for j := range w.byJob[required] {
		out = append(out, j)
	}
	delete(w.byJob, required)
	return out
}

// wakeDependents wakes the held offers that wait for job, which ended on
// this client.
func (s *Service) wakeDependents(job string) {
	for _, dep := range s.waiting.take(job) {
		s.wake(dep, "job "+job+" it requires ended")
	}
}

// wake asks the broker to deliver the held offer of job again now (a nak
// without delay on the ack subject of its latest delivery, which the
// journal keeps), so that it is decided again at once. An offer that is
// not held here (not received, running, done) is left alone.
func (s *Service) wake(job, why string) {
	rec, found, err := s.journal.Get(job)
	if err != nil || !found || rec.Phase == journal.PhaseDone || rec.Phase == journal.PhaseStarted || rec.AckSubject == "" {
		return
	}
	if err := s.nc.Publish(rec.AckSubject, []byte(jetstreamNak)); err != nil {
		s.log.Debug("cannot wake a held offer; it comes back at its time", zap.String("job", job), zap.Error(err))
		return
	}
	s.counts.woken.Add(1)
	s.log.Info("held job woken", zap.String("job", job), zap.String("why", why))
}

// jetstreamNak is the body of a JetStream nak without delay.
const jetstreamNak = "-NAK"

// handleHalt handles a copy of a halt or a resume delivered by the client's
// consumer (published on one of the job's target subjects): the halt
// subject's last event decides (lookup reads it before any run), so a copy
// only wakes the job's held offer when it is a resume. It is refused when
// it is not a trusted halt or resume, and acked through the outbox flush
// like every delivery.
func (s *Service) handleHalt(ctx context.Context, msg jetstream.Msg, ev event.Event) {
	job := events.JobIDOf(ev)
	if _, err := events.ReadHalt(msg.Headers(), msg.Data(), job, s.cfg.TrustedKeys, s.cfg.ControllerKeys); err != nil {
		s.refuseEvent(ctx, msg, job, err)
		return
	}
	if ev.Type() == events.TypeJobResumed {
		s.wake(job, "its rollout was resumed")
	}
	s.ackAfterFlush(msg.Reply())
	s.report(ctx, job, msg.Reply())
}
