package agent

import (
	"context"
	"encoding/json"
	"errors"
	"time"

	"github.com/nats-io/nats.go"
	"go.uber.org/zap"

	"github.com/pcm-project/pcm/agent/journal"
	"github.com/pcm-project/pcm/events"
	"github.com/pcm-project/pcm/internal/backoff"
)

// Info is the inventory the agent publishes in PCM_AGENTS.
func (s *Service) Info() events.AgentInfo {
	return events.AgentInfo{
		ClientID: s.cfg.ClientID, Host: s.cfg.Host, OS: s.cfg.OS, Arch: s.cfg.Arch,
		Groups: s.cfg.Groups, Version: s.cfg.Version, PID: pid,
		StartedAt: s.started.UTC(), LastSeen: time.Now().UTC(),
		Heartbeat: events.Duration(s.cfg.Heartbeat), CurrentJob: s.current.Load().(string),
		Channel: s.cfg.Channel, Update: s.updateInfo(),
	}
}

// heartbeatLoop writes the inventory at start, every heartbeat, and when
// the running job changes. It is the agent's only periodic work.
func (s *Service) heartbeatLoop(ctx context.Context) {
	t := time.NewTicker(s.cfg.Heartbeat)
	defer t.Stop()
	for {
		b, err := json.Marshal(s.Info())
		if err == nil {
			pctx, cancel := context.WithTimeout(ctx, publishTimeout)
			_, err = s.agents.Put(pctx, b)
			cancel()
		}
		if err != nil && ctx.Err() == nil {
			s.log.Debug("heartbeat not written", zap.Error(err))
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-s.beat:
		}
	}
}

// errNotStoredYet: the status a hint announced is not in the stream yet.
var errNotStoredYet = errors.New("the status heard is not stored yet")

// watchDesktopStatuses listens (push, no polling) to this client's statuses
// and settles an offer held for the desktop as soon as the desktop reports
// a final status that ends it; a status of the desktop that ends a job
// also wakes the offers held for that job's end (wake.go; the service's
// own statuses wake them when they are stored, as the connection does not
// echo them).
// What it hears is a hint: the status stored on the broker decides, and a
// desktop's status of a job only the service runs (a background job) is
// never believed.
func (s *Service) watchDesktopStatuses() (*nats.Subscription, error) {
	return s.nc.Subscribe(events.StatusSubjectsOfClient(s.cfg.ClientID), func(m *nats.Msg) {
		ev, err := events.Decode(m.Header, m.Data)
		if err != nil {
			return
		}
		heard, err := events.ParseJobStatus(ev)
		if err != nil || !heard.EndsJob(heard.MaxAttempts) {
			return
		}
		s.wakeDependents(heard.JobID)
		if heard.Runner != events.RunnerDesktop {
			return
		}
		rec, ok, err := s.journal.Get(heard.JobID)
		if err != nil || !ok || rec.Phase != journal.PhaseReceived || rec.AckSubject == "" || rec.ForService {
			return
		}
		// The hint can come before the stream has stored the status it
		// announces (the core message and the store race): read until the
		// stored status is at least as new as the one heard, for a while.
		ctx, cancel := context.WithTimeout(context.Background(), publishTimeout)
		var stored *events.JobStatus
		err = backoff.Retry(ctx, backoff.Policy{Backoff: backoff.Backoff{Initial: 20 * time.Millisecond, Max: 500 * time.Millisecond}},
			func(ctx context.Context) error {
				var err error
				if stored, err = s.lastStatus(ctx, heard.JobID); err != nil {
					return err
				}
				if stored == nil || heard.Supersedes(*stored) && !stored.Supersedes(heard) {
					return errNotStoredYet
				}
				return nil
			})
		cancel()
		if err != nil || stored.Runner != events.RunnerDesktop || !stored.EndsJob(stored.MaxAttempts) {
			return // the broker holds no such status: nothing was reported
		}
		st := *stored
		rec.Phase = journal.PhaseDone
		rec.Attempt = st.Attempt
		rec.FinalState = string(st.State)
		restartRequired(&rec, st)
		if _, err := s.journal.Put(rec); err != nil {
			return
		}
		s.kickRestart()
		s.counts.desktopRuns.Add(1)
		s.log.Info("the desktop ran the job; acking its offer", zap.String("job", st.JobID), zap.String("state", string(st.State)), zap.String("user", st.User))
		s.ackAfterFlush(rec.AckSubject)
		select {
		case s.kick <- struct{}{}:
		default:
		}
	})
}
