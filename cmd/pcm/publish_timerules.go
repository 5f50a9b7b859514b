package main

import (
	"errors"
	"fmt"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/pcm-project/pcm/events"
	"github.com/pcm-project/pcm/publisher"
)

// jobFileTimeRules are the time rules of a job file (embedded in jobFile):
//
//	deferrals: {max: 3, each: 4h, deadline: "+3d"}
//	grace_after_offline: 30m
//	in_window: true
//	command: {restart_exit_codes: [3010, 1641], may_reboot: true, ...}
type jobFileTimeRules struct {
	Deferrals         *jobFileDeferrals `json:"deferrals,omitempty"`
	GraceAfterOffline events.Duration   `json:"grace_after_offline,omitempty"`
	InWindow          bool              `json:"in_window,omitempty"`
}

// jobFileDeferrals are a job file's deferrals; the deadline is RFC 3339 or
// relative to now ("+3d" is not a Go duration: write +72h).
type jobFileDeferrals struct {
	Max      int             `json:"max"`
	Each     events.Duration `json:"each"`
	Deadline string          `json:"deadline,omitempty"`
}

// timeRuleFlags are pcm publish's flags of the time rules.
type timeRuleFlags struct {
	deferrals     int
	deferEach     time.Duration
	deferDeadline string
	grace         time.Duration
	inWindow      bool
	restartCodes  []int64
}

// defaultDeferEach is how long a deferral lasts when --defer-each is not
// given.
const defaultDeferEach = 4 * time.Hour

func (f *timeRuleFlags) register(fl *pflag.FlagSet) {
	fl.IntVar(&f.deferrals, "deferrals", 0, "the user at the desktop may put the job off this many times (1 to 20; 0: never)")
	fl.DurationVar(&f.deferEach, "defer-each", defaultDeferEach, "with --deferrals: how long one deferral puts the job off (1m to 168h)")
	fl.StringVar(&f.deferDeadline, "defer-deadline", "", "with --deferrals: no deferral lasts past this time (RFC 3339 or relative: +72h)")
	fl.DurationVar(&f.grace, "grace-after-offline", 0, "a client that first sees the job after its mandatory time (it was off) warns its user this long before running it (1m to 168h; never past the expiry)")
	fl.BoolVar(&f.inWindow, "in-window", false, "start only inside a maintenance window of the client (pcm window set) in which --timeout fits; a restart it asks for waits for one too")
	fl.Int64SliceVar(&f.restartCodes, "restart-codes", nil, "with --may-reboot: exit codes that mean success, restart required (default on Windows: 3010,1641)")
}

// apply puts the flags given on the command line into jf: over the job
// file's values when there is one.
func (f *timeRuleFlags) apply(cmd *cobra.Command, jf *jobFile) error {
	changed := cmd.Flags().Changed
	if (changed("defer-each") || changed("defer-deadline")) && !changed("deferrals") && jf.Deferrals == nil {
		return fmt.Errorf("%w: --defer-each and --defer-deadline need --deferrals N (how many times the user may put the job off)", events.ErrDeferrals)
	}
	if changed("deferrals") {
		if f.deferrals == 0 {
			jf.Deferrals = nil
		} else {
			jf.Deferrals = &jobFileDeferrals{Max: f.deferrals, Each: events.Duration(f.deferEach), Deadline: f.deferDeadline}
		}
	}
	if d := jf.Deferrals; d != nil {
		if changed("defer-each") || d.Each == 0 {
			d.Each = events.Duration(f.deferEach)
		}
		if changed("defer-deadline") {
			d.Deadline = f.deferDeadline
		}
	}
	if changed("grace-after-offline") {
		jf.GraceAfterOffline = events.Duration(f.grace)
	}
	if changed("in-window") {
		jf.InWindow = f.inWindow
	}
	if changed("restart-codes") {
		jf.Command.RestartExitCodes = f.restartCodes
	}
	if changed("may-reboot") {
		jf.Command.MayReboot, _ = cmd.Flags().GetBool("may-reboot")
	}
	return nil
}

// timeRules resolves a job file's time rules at now.
func (jf jobFileTimeRules) timeRules(now time.Time) (events.TimeRules, error) {
	r := events.TimeRules{GraceAfterOffline: jf.GraceAfterOffline, InWindow: jf.InWindow}
	if d := jf.Deferrals; d != nil {
		r.Deferrals = &events.Deferrals{Max: d.Max, Each: d.Each}
		if d.Deadline != "" {
			t, err := publisher.ParseWhen(d.Deadline, now)
			if err != nil {
				return r, fmt.Errorf("--defer-deadline (deferrals.deadline): %w", err)
			}
			t = t.UTC()
			r.Deferrals.Deadline = &t
		}
	}
	return r, nil
}

// explainTimeRule adds to an error of the time rules which flags set them.
func explainTimeRule(err error) error {
	switch {
	case errors.Is(err, events.ErrDeferrals):
		return fmt.Errorf("%w (--deferrals, --defer-each, --defer-deadline, or deferrals in the job file)", err)
	case errors.Is(err, events.ErrGraceAfterOffline):
		return fmt.Errorf("%w (--grace-after-offline, or grace_after_offline in the job file)", err)
	case errors.Is(err, events.ErrRestartExitCodes):
		return fmt.Errorf("%w (--restart-codes with --may-reboot, or command.restart_exit_codes in the job file)", err)
	}
	return err
}
