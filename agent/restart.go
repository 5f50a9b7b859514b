package agent

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/pcm-project/pcm/agent/journal"
	"github.com/pcm-project/pcm/events"
	"github.com/pcm-project/pcm/internal/clock"
)

// RestartConfig says how the service restarts the machine for a job that
// asked for it (an exit code of its restart_exit_codes).
type RestartConfig struct {
	// Command restarts the machine; default DefaultRestartCommand of the
	// client's platform.
	Command []string
	// DryRun, when set, names a file: instead of restarting the machine the
	// agent appends a line to it ("<time> restart for job J ...") and stops
	// as a restart would stop it; its next start counts as the machine's
	// return. For tests and rehearsals.
	DryRun string
	// BootID names the machine's current boot; default bootID (Linux's
	// /proc/sys/kernel/random/boot_id, "" elsewhere). After asking for a
	// restart, an agent started again in the same boot knows the machine
	// has not restarted yet; with "" every new start counts as the return.
	BootID func() string
}

// DefaultRestartCommand is how the agent restarts a machine running goos:
// shutdown /r on Windows, shutdown -r now elsewhere.
func DefaultRestartCommand(goos string) []string {
	if goos == "windows" {
		return []string{"shutdown", "/r", "/t", "0", "/d", "p:4:1", "/c", "pcm: a job asked for a restart"}
	}
	return []string{"shutdown", "-r", "now"}
}

func (c *RestartConfig) setDefaults(goos string) {
	if len(c.Command) == 0 {
		c.Command = DefaultRestartCommand(goos)
	}
	if c.BootID == nil {
		c.BootID = bootID
	}
}

// bootID reads Linux's boot id; "" where there is none.
func bootID() string {
	b, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// Timings of restarts.
const (
	// restartRecheck bounds how long the restart loop sleeps while a
	// restart waits (for its time, or for a maintenance window).
	restartRecheck = 5 * time.Minute
	// restartAgain is how long after asking for a restart an agent that
	// finds itself in the same boot asks again.
	restartAgain = 15 * time.Minute
	// restartNeeds is how much of a maintenance window a restart needs.
	restartNeeds = time.Minute
)

// errRestarting ends the service's Run: the machine restarts.
var errRestarting = errors.New("the machine restarts")

// restartRequired is the restart a final status asks of the record of its
// job (whose job may reboot): pending, at the status's restart time.
func restartRequired(rec *journal.Record, st events.JobStatus) {
	if !st.RestartRequired || !rec.MayReboot || rec.Restart != journal.RestartNone {
		return
	}
	rec.Restart = journal.RestartPending
	if st.RestartAt != nil {
		rec.RestartAt = *st.RestartAt
	}
}

// restartAt is when the machine restarts at the earliest for a job that
// finished now: after the user's countdown.
func (f *face) restartAt() time.Time { return f.cfg.Clock.Now().Add(f.cfg.Grace).UTC() }

// returnFromRestart settles, at start, the restarts asked for by an
// earlier life of the agent: when the machine is back (another boot, or a
// dry run), the restarted status of each job is queued in the outbox and
// the restart is done; in the same boot, the restart is asked again after
// restartAgain.
func (s *Service) returnFromRestart() error {
	boot := s.cfg.Restart.BootID()
	var back []journal.Record
	err := s.journal.Records(func(r journal.Record) error {
		if r.Restart == journal.RestartRequested {
			back = append(back, r)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("%w: %w", ErrJournal, err)
	}
	for _, r := range back {
		sameBoot := s.cfg.Restart.DryRun == "" && boot != "" && r.RestartBoot == boot
		switch {
		case sameBoot && time.Since(r.RestartRequested) < restartAgain:
			s.log.Warn("a restart was asked for and the machine has not restarted yet", zap.String("job", r.JobID), zap.Time("asked_at", r.RestartRequested))
			continue
		case sameBoot:
			s.log.Warn("the machine did not restart when asked; asking again", zap.String("job", r.JobID), zap.Time("asked_at", r.RestartRequested))
			r.Restart = journal.RestartPending
			if _, err := s.journal.Put(r); err != nil {
				return fmt.Errorf("%w: %w", ErrJournal, err)
			}
			continue
		}
		st := s.newStatus(r.JobID, events.StateRestarted, r.Attempt, 0)
		st.Reason = "the machine restarted after the job, as its exit code asked (restart asked at " + stamp(r.RestartRequested) + ")"
		out, err := s.outgoing(st, false)
		if err != nil {
			return fmt.Errorf("%w: %w", ErrJournal, err)
		}
		r.Restart = journal.RestartDone
		if _, err := s.journal.Put(r, out...); err != nil {
			return fmt.Errorf("%w: %w", ErrJournal, err)
		}
		s.log.Info("the machine is back from the restart a job asked for", zap.String("job", r.JobID))
	}
	return nil
}

// restartLoop restarts the machine once a restart some job asked for is
// due: its status stored on the broker, its countdown over, inside a
// maintenance window when the job requires one. It returns errRestarting
// after asking the machine to restart, nil when ctx ends.
func (s *Service) restartLoop(ctx context.Context) error {
	for {
		wait, err := s.restartIfDue(ctx)
		switch {
		case errors.Is(err, errRestarting):
			return err
		case err != nil && ctx.Err() == nil:
			s.log.Warn("restart not made; retrying", zap.Error(err))
			wait = min(wait, retryLater)
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-s.restartKick:
		case <-t.C:
		}
		t.Stop()
	}
}

// kickRestart asks the restart loop to look at the journal now.
func (s *Service) kickRestart() {
	select {
	case s.restartKick <- struct{}{}:
	default:
	}
}

// restartIfDue restarts the machine when a pending restart is due, and
// says how long to wait before looking again.
func (s *Service) restartIfDue(ctx context.Context) (time.Duration, error) {
	var pending []journal.Record
	err := s.journal.Records(func(r journal.Record) error {
		if r.Restart == journal.RestartPending && r.Phase == journal.PhaseDone {
			pending = append(pending, r)
		}
		return nil
	})
	if err != nil || len(pending) == 0 {
		return restartRecheck, err
	}
	now := s.cfg.Clock.Now()
	wait := restartRecheck
	var due []journal.Record
	var windows events.Windows
	for _, r := range pending {
		if r.RestartAt.After(now) {
			wait = min(wait, clock.Until(s.cfg.Clock, r.RestartAt))
			continue
		}
		if r.InWindow {
			if windows == nil {
				if windows, err = s.windows(ctx); err != nil {
					return retryLater, err
				}
			}
			if _, open := windows.Open(now, restartNeeds); !open {
				if o, ok := windows.Next(now, restartNeeds); ok {
					wait = min(wait, clock.Until(s.cfg.Clock, o.Start))
				}
				s.log.Info("a restart waits for a maintenance window", zap.String("job", r.JobID))
				continue
			}
		}
		due = append(due, r)
	}
	if len(due) == 0 {
		return max(wait, time.Second), nil
	}
	return 0, s.restart(ctx, pending)
}

// restart asks the machine to restart for the jobs of recs (every pending
// restart is served by it), holding the client's lock so that no job of
// either face runs meanwhile: the request is journaled first, so that an
// agent killed by the restart reports them restarted when it is back.
func (s *Service) restart(ctx context.Context, recs []journal.Record) error {
	lease, err := s.locker.Acquire(ctx, s.lockInfo(recs[0].JobID), func(h events.LockInfo) {
		s.log.Info("the restart waits: the lock is held by the other face", zap.String("holder", string(h.Holder)), zap.String("holder_job", h.JobID))
	})
	if err != nil {
		return fmt.Errorf("taking the lock to restart: %w", err)
	}
	defer s.release(lease)
	boot := s.cfg.Restart.BootID()
	jobs := make([]string, len(recs))
	for i, r := range recs {
		r.Restart, r.RestartRequested, r.RestartBoot = journal.RestartRequested, time.Now().UTC(), boot
		if _, err := s.journal.Put(r); err != nil {
			return fmt.Errorf("%w: journaling the restart: %w", ErrJournal, err)
		}
		jobs[i] = r.JobID
	}
	log := s.log.With(zap.Strings("jobs", jobs))
	if f := s.cfg.Restart.DryRun; f != "" {
		line := fmt.Sprintf("%s restart for job %s\n", time.Now().UTC().Format(time.RFC3339Nano), strings.Join(jobs, " "))
		if err := appendLine(f, line); err != nil {
			return fmt.Errorf("restart dry run: %w", err)
		}
		log.Warn("restart dry run: the machine would restart now; the agent stops as if it did", zap.String("file", f))
		return errRestarting
	}
	argv := s.cfg.Restart.Command
	log.Warn("restarting the machine, as jobs asked", zap.Strings("command", argv))
	cctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if out, err := exec.CommandContext(cctx, argv[0], argv[1:]...).CombinedOutput(); err != nil {
		for _, r := range recs { // asked again at the next look
			r.Restart = journal.RestartPending
			_, _ = s.journal.Put(r)
		}
		return fmt.Errorf("restart command %q: %w: %s", strings.Join(argv, " "), err, truncate(strings.TrimSpace(string(out)), 512))
	}
	return errRestarting
}

// appendLine appends line to the file at path, created if need be.
func appendLine(path, line string) error {
	f, err := os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	if _, err := f.WriteString(line); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
