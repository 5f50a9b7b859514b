package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"time"

	"github.com/nats-io/nats.go"
	"go.uber.org/zap"

	"github.com/pcm-project/pcm/agent/journal"
	"github.com/pcm-project/pcm/events"
	"github.com/pcm-project/pcm/internal/backoff"
	"github.com/pcm-project/pcm/internal/kvkey"
)

// Info is the inventory the agent publishes in PCM_AGENTS.
func (s *Service) Info() events.AgentInfo {
	return events.AgentInfo{
		ClientID: s.cfg.ClientID, Host: s.cfg.Host, OS: s.cfg.OS, Arch: s.cfg.Arch,
		Groups: s.cfg.Groups, Version: s.cfg.Version, PID: pid,
		StartedAt: s.started.UTC(), LastSeen: time.Now().UTC(),
		Heartbeat: events.Duration(s.cfg.Heartbeat), CurrentJob: s.current.Load().(string),
		Channel: s.cfg.Channel, Update: s.updateInfo(),
		StateDir: s.stateDir(),
	}
}

// stateDir is the state directory as an absolute path, when it can be made
// one.
func (s *Service) stateDir() string {
	if abs, err := filepath.Abs(s.cfg.StateDir); err == nil {
		return abs
	}
	return s.cfg.StateDir
}

// checkAlone refuses to start beside another agent of the same client id:
// one whose heartbeat is fresh and that did not stop, on another host or
// with another state directory. The same host and state directory is this
// agent restarting: the journal's lock keeps two of them from running.
func (s *Service) checkAlone(ctx context.Context) error {
	e, err := s.agents.Get(ctx)
	if errors.Is(err, kvkey.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	other, ok := events.ParseAgentInfo(s.cfg.ClientID, e.Value)
	now := time.Now()
	if !ok || other.StoppedAt != nil || other.Stale(now) || (other.Host == s.cfg.Host && other.StateDir == s.stateDir()) {
		return nil
	}
	hb := time.Duration(other.Heartbeat)
	if hb <= 0 {
		hb = 30 * time.Second
	}
	return fmt.Errorf("%w: client %s already has an agent on host %s (pid %d, state dir %s), started %s, last seen %s: "+
		"stop it, or give this one another --client-id; if it is gone, its heartbeat goes stale at %s and this agent can start then",
		ErrAlreadyRunning, s.cfg.ClientID, other.Host, other.PID, other.StateDir, other.StartedAt.Format(time.RFC3339),
		other.LastSeen.Format(time.RFC3339), other.LastSeen.Add(3*hb).Format(time.RFC3339))
}

// markStopped writes the inventory once more, saying the agent stopped
// cleanly: another agent of the client may start at once.
func (s *Service) markStopped() {
	if !s.nc.IsConnected() {
		return // it goes stale instead
	}
	info := s.Info()
	stopped := info.LastSeen
	info.StoppedAt = &stopped
	b, err := json.Marshal(info)
	if err != nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), publishTimeout)
	defer cancel()
	if _, err := s.agents.Put(ctx, b); err != nil {
		s.log.Debug("the stopped inventory was not written", zap.Error(err))
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
		s.settling.Go(func() { s.settleDesktopRun(heard.JobID, rec) })
	})
}

// settleDesktopRun acks the offer of job, held for the desktop (rec), once
// the broker holds the desktop's final status that ends it. The status is
// heard as it is published, possibly before the stream has stored it (or
// before a direct get through the client's account sees it): the stored
// status is read again for a while before the hint is given up (the
// offer then settles at its next delivery).
func (s *Service) settleDesktopRun(job string, rec journal.Record) {
	ctx, cancel := context.WithTimeout(context.Background(), publishTimeout)
	defer cancel()
	var stored *events.JobStatus
	for d := 20 * time.Millisecond; ; d = min(2*d, 500*time.Millisecond) {
		var err error
		stored, err = s.lastStatus(ctx, job)
		if err == nil && stored != nil && stored.Runner == events.RunnerDesktop && stored.EndsJob(stored.MaxAttempts) {
			break
		}
		if backoff.Sleep(ctx, d) != nil {
			return // the broker holds no such status: nothing was reported
		}
	}
	st := *stored
	// The offer may have settled meanwhile (a redelivery found it over).
	if now, ok, err := s.journal.Get(job); err != nil || !ok || now.Phase != journal.PhaseReceived || now.AckSubject != rec.AckSubject {
		return
	}
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
}
