package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/pcm-project/pcm/agent"
	"github.com/pcm-project/pcm/events"
	"github.com/pcm-project/pcm/internal/kvkey"
	"github.com/pcm-project/pcm/internal/selfupdate"
)

// updateWatchEnv, set to 1, makes pcm agent the watchdog of an update:
// the previous binary, started by the agent that swapped itself, judges
// whether the new version reports healthy in time and otherwise restores
// itself and runs the agent again.
const updateWatchEnv = "PCM_UPDATE_WATCH"

// DefaultUpdateHealthTimeout is --update-health-timeout's default.
const DefaultUpdateHealthTimeout = 2 * time.Minute

// applyUpdate installs the release the service stopped for: it keeps the
// previous binary, swaps in the new one, records the trial in the state
// directory, starts the previous binary as the watchdog of the trial, and
// re-executes itself as the new version. It returns only on error.
func applyUpdate(log *zap.Logger, nc *nats.Conn, cfg agent.Config, u *agent.Update, health time.Duration) error {
	defer u.ReleaseLock()
	log = log.With(zap.String("from", u.From), zap.String("to", u.Release.Version))
	exe, err := selfupdate.Executable()
	if err != nil {
		return fmt.Errorf("update to %s: finding the running binary: %w", u.Release.Version, err)
	}
	now := time.Now().UTC()
	rec := agent.UpdateRecord{From: u.From, To: u.Release.Version, State: agent.UpdateTrial, Executable: exe,
		PID: os.Getpid(), At: now, Deadline: now.Add(health)}
	previous, err := selfupdate.Swap(exe, u.Binary)
	if err != nil {
		// The binary is unchanged: record why, and run it again.
		rec.State, rec.Reason = events.UpdateFailed, err.Error()
		_ = agent.WriteUpdateRecord(cfg.StateDir, rec)
		log.Error("update failed: the binary could not be replaced; running on", zap.Error(err))
		u.ReleaseLock()
		nc.Close()
		return selfupdate.Exec(exe, os.Args, os.Environ())
	}
	rec.Previous = previous
	if err := agent.WriteUpdateRecord(cfg.StateDir, rec); err != nil {
		_ = selfupdate.Restore(exe, previous)
		return fmt.Errorf("update to %s: recording it in %s: %w", u.Release.Version, cfg.StateDir, err)
	}
	watch := exec.Command(previous, os.Args[1:]...)
	watch.Env = append(withoutEnv(os.Environ(), updateWatchEnv), updateWatchEnv+"=1")
	watch.Stderr = os.Stderr
	if err := watch.Start(); err != nil {
		_ = selfupdate.Restore(exe, previous)
		rec.State, rec.Reason = events.UpdateFailed, "starting the watchdog: "+err.Error()
		_ = agent.WriteUpdateRecord(cfg.StateDir, rec)
		return fmt.Errorf("update to %s: starting the watchdog %s: %w", u.Release.Version, previous, err)
	}
	_ = watch.Process.Release()
	log.Info("binary swapped; restarting as the new version", zap.String("binary", exe), zap.String("previous", previous),
		zap.Int("watchdog_pid", watch.Process.Pid), zap.Duration("health_deadline", health))
	_ = log.Sync()
	u.ReleaseLock()
	nc.Close()
	return selfupdate.Exec(exe, os.Args, withoutEnv(os.Environ(), updateWatchEnv))
}

// watchUpdate is the watchdog (pcm agent with PCM_UPDATE_WATCH=1, run from
// the previous binary): the new version is healthy once its inventory in
// PCM_AGENTS shows its version from a start after the swap (it connected,
// opened and checked its journal, and reported); when it exits first, or
// the deadline passes, the watchdog stops it, restores the previous
// binary, records why the update failed, and runs the agent again.
func watchUpdate(ctx context.Context, log *zap.Logger, nc *nats.Conn, cfg agent.Config) error {
	rec, ok := agent.ReadUpdateRecord(cfg.StateDir)
	if !ok || rec.State != agent.UpdateTrial {
		log.Info("no update on trial: the watchdog has nothing to do")
		return nil
	}
	log = log.With(zap.String("from", rec.From), zap.String("to", rec.To))
	reason := healthOf(ctx, nc, cfg.ClientID, rec)
	if ctx.Err() != nil {
		return nil
	}
	if reason == "" {
		rec.State = events.UpdateApplied
		log.Info("update applied: the new version reported healthy")
		return agent.WriteUpdateRecord(cfg.StateDir, rec)
	}
	log.Error("update failed: rolling back", zap.String("reason", reason))
	if selfupdate.Alive(rec.PID) {
		selfupdate.Kill(rec.PID)
		for end := time.Now().Add(10 * time.Second); selfupdate.Alive(rec.PID) && time.Now().Before(end); {
			time.Sleep(50 * time.Millisecond) // a killed process has no event to wait for here
		}
	}
	if err := selfupdate.Restore(rec.Executable, rec.Previous); err != nil {
		rec.Reason = reason + "; restoring the previous binary failed: " + err.Error()
	} else {
		rec.Reason = reason + "; the previous binary was restored"
	}
	rec.State = events.UpdateFailed
	if err := agent.WriteUpdateRecord(cfg.StateDir, rec); err != nil {
		log.Error("cannot record the failed update", zap.Error(err))
	}
	nc.Close()
	args := append([]string{rec.Executable}, os.Args[1:]...)
	return selfupdate.Exec(rec.Executable, args, withoutEnv(os.Environ(), updateWatchEnv))
}

// healthOf waits for the new version's inventory; it returns "" when
// healthy, else why not. It reads the client's own key of PCM_AGENTS (what
// an agent's credentials allow: a direct get of its key, no watcher) when
// it hears the key written, and every second of the trial besides.
func healthOf(ctx context.Context, nc *nats.Conn, client string, rec agent.UpdateRecord) string {
	js, err := jetstream.New(nc)
	if err != nil {
		return err.Error()
	}
	key := kvkey.New(js, events.BucketAgents, client)
	heard := make(chan struct{}, 1)
	if sub, err := nc.Subscribe(key.Subject(), func(*nats.Msg) {
		select {
		case heard <- struct{}{}:
		default:
		}
	}); err == nil {
		defer func() { _ = sub.Unsubscribe() }()
	}
	deadline := time.NewTimer(time.Until(rec.Deadline))
	defer deadline.Stop()
	alive := time.NewTicker(200 * time.Millisecond)
	defer alive.Stop()
	read := time.NewTicker(time.Second)
	defer read.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err().Error()
		case <-deadline.C:
			return fmt.Sprintf("version %s did not report healthy (connected, journal checked, inventory written) within %s",
				rec.To, rec.Deadline.Sub(rec.At).Round(time.Second))
		case <-alive.C:
			if !selfupdate.Alive(rec.PID) {
				return fmt.Sprintf("version %s exited before reporting healthy", rec.To)
			}
			continue
		case <-heard:
		case <-read.C:
		}
		rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		e, err := key.Get(rctx)
		cancel()
		if err != nil {
			continue
		}
		if info, ok := events.ParseAgentInfo(client, e.Value); ok && info.Version == rec.To && info.StartedAt.After(rec.At.Add(-time.Second)) {
			return ""
		}
	}
}

func withoutEnv(env []string, name string) []string {
	out := env[:0:0]
	for _, kv := range env {
		if !strings.HasPrefix(kv, name+"=") {
			out = append(out, kv)
		}
	}
	return out
}
