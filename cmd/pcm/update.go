package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/pcm-project/pcm/agent"
	"github.com/pcm-project/pcm/events"
	"github.com/pcm-project/pcm/internal/kvkey"
	"github.com/pcm-project/pcm/internal/osservice"
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
func applyUpdate(ctx context.Context, log *zap.Logger, nc *nats.Conn, cfg agent.Config, u *agent.Update, health time.Duration) error {
	defer u.ReleaseLock()
	log = log.With(zap.String("from", u.From), zap.String("to", u.Release.Version))
	exe, err := selfupdate.Executable()
	if err != nil {
		return fmt.Errorf("update to %s: finding the running binary: %w", u.Release.Version, err)
	}
	now := time.Now().UTC()
	rec := agent.UpdateRecord{From: u.From, To: u.Release.Version, State: agent.UpdateTrial, Executable: exe,
		At: now, Deadline: now.Add(health), Service: osservice.UnderManager(ctx)}
	if runtime.GOOS != "windows" {
		rec.PID = os.Getpid() // the new version runs in this process (exec)
	}
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
	if unit := systemdUnit(); unit != "" {
		// Under systemd the watchdog must outlive the unit's processes (a
		// new version that exits makes systemd kill the unit's control
		// group and restart it): it runs as a transient unit of its own,
		// and restarts the agent's unit after a rollback.
		watch = exec.Command("systemd-run", append([]string{"--collect", "--quiet", "--unit", fmt.Sprintf("%s-update-%d", unit, os.Getpid()),
			"--setenv=" + updateWatchEnv + "=1", "--setenv=" + updateUnitEnv + "=" + unit, previous}, os.Args[1:]...)...)
	}
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
	if osservice.UnderManager(ctx) {
		// A Windows service cannot replace its process: it exits with an
		// error, and the recovery actions start the new binary.
		return fmt.Errorf("%w: %s -> %s: exiting for the service manager to start the new binary", agent.ErrUpdateReady, u.From, u.Release.Version)
	}
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
	if rec.PID != 0 && selfupdate.Alive(rec.PID) {
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
	if rec.Service {
		// The Windows service's recovery actions start the restored binary.
		return nil
	}
	if unit := os.Getenv(updateUnitEnv); unit != "" {
		// The agent's unit restarts the restored binary; a crash loop of the
		// new version ends here too, its first exit being seen above.
		if out, err := exec.Command("systemctl", "restart", unit).CombinedOutput(); err != nil {
			return fmt.Errorf("rolled back to %s, but systemctl restart %s failed: %v: %s", rec.From, unit, err, out)
		}
		return nil
	}
	args := append([]string{rec.Executable}, os.Args[1:]...)
	return selfupdate.Exec(rec.Executable, args, withoutEnv(os.Environ(), updateWatchEnv))
}

// updateUnitEnv names the systemd unit a watchdog started by systemd-run
// restarts after a rollback.
const updateUnitEnv = "PCM_UPDATE_UNIT"

// systemdUnit is the systemd unit this process is the main process of
// ("" when it is not run by systemd: its parent is not pid 1, or systemd
// set no INVOCATION_ID).
func systemdUnit() string {
	if runtime.GOOS != "linux" || os.Getenv("INVOCATION_ID") == "" || os.Getppid() != 1 {
		return ""
	}
	if _, err := exec.LookPath("systemd-run"); err != nil {
		return ""
	}
	b, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return ""
	}
	// 0::/system.slice/pcm-agent.service
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		if i := strings.LastIndex(line, "/"); i >= 0 && strings.HasSuffix(line, ".service") {
			return strings.TrimSuffix(line[i+1:], ".service")
		}
	}
	return ""
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
			if rec.PID != 0 && !selfupdate.Alive(rec.PID) {
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
