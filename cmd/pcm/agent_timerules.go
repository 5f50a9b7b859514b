package main

import (
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/spf13/pflag"
	"go.uber.org/zap"

	"github.com/pcm-project/pcm/agent"
	"github.com/pcm-project/pcm/internal/clock"
)

// agentTimeFlags are the service face's flags of the time rules.
type agentTimeFlags struct {
	grace          time.Duration
	restartCommand string
	restartDryRun  string
}

func (f *agentTimeFlags) register(fl *pflag.FlagSet) {
	fl.DurationVar(&f.grace, "grace", agent.DefaultGrace, "countdown the user is given before a job they may defer runs (while a desktop session is open; with none, the job runs at its time), and before the machine restarts for a job (give the desktop the same)")
	fl.StringVar(&f.restartCommand, "restart-command", "", "command that restarts the machine for a job whose exit code asks for it, words separated by spaces (default: shutdown /r /t 0 on Windows, shutdown -r now elsewhere)")
	fl.StringVar(&f.restartDryRun, "restart-dry-run", "", "instead of restarting the machine, append a line to this file and stop the agent as a restart would (for tests and rehearsals; the next start counts as the machine's return)")
}

// apply sets the time rules of cfg from the flags, and the test clock from
// PCM_TEST_CLOCK.
func (f *agentTimeFlags) apply(cfg *agent.Config, log *zap.Logger) error {
	cfg.Grace = f.grace
	if f.restartCommand != "" {
		cfg.Restart.Command = strings.Fields(f.restartCommand)
	}
	cfg.Restart.DryRun = f.restartDryRun
	c, err := clockFromEnv(log)
	cfg.Clock = c
	return err
}

// clockFromEnv is the clock of the time rules: the system's, or the test
// clock PCM_TEST_CLOCK gives (tests only: hours of rules in seconds).
func clockFromEnv(log *zap.Logger) (agent.Clock, error) {
	spec := os.Getenv(clock.Env)
	if spec == "" {
		return clock.System, nil
	}
	c, err := clock.Parse(spec)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", clock.Env, err)
	}
	log.Warn("test clock: the time rules read a clock that is not the system's", zap.Time("now", c.Now()), zap.Float64("speed", c.Speed))
	return c, nil
}
