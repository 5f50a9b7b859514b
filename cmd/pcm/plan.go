package main

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/pcm-project/pcm/events"
)

// planFlags are pcm publish's flags of a job's plan (events.JobPlan): the
// rings of a staged rollout, the detection and the required jobs. Given
// with a job file, each one set replaces the file's field.
type planFlags struct {
	rings    []string
	soak     time.Duration
	haltAt   string
	haltMin  int
	detect   string
	requires []string
}

func (f *planFlags) register(fl *pflag.FlagSet) {
	fl.StringSliceVar(&f.rings, "rings", nil, "stage the rollout: cumulative percentages of the targets ending at 100 (1,10,50,100), after optional rings by group (group:pilot,10,100)")
	fl.DurationVar(&f.soak, "soak", 0, "with --rings: time between the opening of one ring and the next (required with several rings)")
	fl.StringVar(&f.haltAt, "halt-at", "", "with --rings: the rollout controller halts the job when more than this share of the clients that finished it failed (5%)")
	fl.IntVar(&f.haltMin, "halt-min", 0, "with --halt-at: how many clients must have finished before the threshold applies (default 1)")
	fl.StringVar(&f.detect, "detect", "", "shell command line that exits 0 when the job is already in place: run before the command (present: not_applicable, already present) and after it (absent: failed)")
	fl.StringArrayVar(&f.requires, "requires", nil, "id of a job that must have succeeded (or be already present) on a client before this one runs there (repeatable)")
}

// apply sets the plan's fields of jf from the flags given.
func (f *planFlags) apply(cmd *cobra.Command, jf *jobFile) error {
	changed := cmd.Flags().Changed
	if changed("rings") {
		plan := events.RolloutPlan{}
		for _, s := range f.rings {
			r, err := events.ParseRing(s)
			if err != nil {
				return fmt.Errorf("--rings: %w", err)
			}
			plan.Rings = append(plan.Rings, r)
		}
		if jf.Rollout != nil {
			plan.Soak, plan.HaltAt, plan.HaltMin = jf.Rollout.Soak, jf.Rollout.HaltAt, jf.Rollout.HaltMin
		}
		jf.Rollout = &plan
	}
	for _, flag := range []string{"soak", "halt-at", "halt-min"} {
		if changed(flag) && jf.Rollout == nil {
			return fmt.Errorf("--%s stages a rollout: give its rings with --rings (1,10,50,100)", flag)
		}
	}
	if changed("soak") {
		jf.Rollout.Soak = events.Duration(f.soak)
	}
	if changed("halt-at") {
		p, err := parsePercent(f.haltAt)
		if err != nil {
			return fmt.Errorf("%w: --halt-at: %w", events.ErrInvalidPlan, err)
		}
		jf.Rollout.HaltAt = &p
	}
	if changed("halt-min") {
		jf.Rollout.HaltMin = f.haltMin
	}
	if changed("detect") {
		if strings.TrimSpace(f.detect) == "" {
			return fmt.Errorf("--detect is empty: give the command line that exits 0 when the job is in place")
		}
		jf.Detect = &events.DetectCommand{Argv: []string{f.detect}, Shell: true}
	}
	if changed("requires") {
		jf.Requires = f.requires
	}
	return nil
}

// parsePercent reads "5%" or "5".
func parsePercent(s string) (float64, error) {
	p, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(s), "%"), 64)
	if err != nil || math.IsNaN(p) || math.IsInf(p, 0) {
		return 0, fmt.Errorf("%q is not a percentage: write it as 5%% or 5", s)
	}
	return p, nil
}
