package events

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Limits of a job's plan.
const (
	// MaxRings is the most rings a rollout plan may have.
	MaxRings = 10
	// MaxRequires is the most jobs a job may require.
	MaxRequires = 16
	// DefaultDetectTimeout is a detect command's timeout when none is given.
	DefaultDetectTimeout = 5 * time.Minute
	// ReasonAlreadyPresent is the reason of the not_applicable status of a
	// job whose detect command found it already in place: nothing ran. A
	// job that requires it counts it as done.
	ReasonAlreadyPresent = "already present"
	// ReasonNotDetected is the reason of the failed status of a job whose
	// command succeeded but whose detect command still finds it absent.
	ReasonNotDetected = "installed but not detected"
)

// JobPlan is what a job asks of its rollout beyond when and where it runs:
// rings that open one after the other and halt themselves, a command that
// detects whether the job is already in place, and jobs that must have
// succeeded on a client first. Every field is optional; a JobOffered
// embeds it, so the plan is part of the signed offer.
type JobPlan struct {
	// Rollout stages the job in rings; nil offers it to every target at
	// once.
	Rollout *RolloutPlan `json:"rollout,omitempty"`
	// Detect, when set, runs before the command (exit 0: already in place,
	// the job is not_applicable with ReasonAlreadyPresent and nothing else
	// runs) and again after a successful run (not exit 0: the job failed
	// with ReasonNotDetected).
	Detect *DetectCommand `json:"detect,omitempty"`
	// Requires names jobs that must have succeeded (or found themselves
	// already present) on a client before this one runs there; one that
	// ended otherwise makes this job not_applicable there.
	Requires []string `json:"requires,omitempty"`
}

// RolloutPlan stages a job in rings. Each client computes its own ring
// (RingOf) from a stable hash of the job and client ids, or from its
// groups for the rings that name groups; ring k (from 1) opens at
// offer_after plus k-1 soak times (OpensAt), unless the rollout is halted.
type RolloutPlan struct {
	// Rings, in order: first the rings that name groups, if any, then
	// cumulative percentages of the targets, strictly increasing and
	// ending at 100.
	Rings []Ring `json:"rings"`
	// Soak is the time between the opening of one ring and the next;
	// required when there are several rings.
	Soak Duration `json:"soak,omitempty"`
	// HaltAt, when set, is the failure rate in percent (0 to under 100)
	// above which the rollout controller halts the job: failed clients
	// over finished ones (see RolloutTally).
	HaltAt *float64 `json:"halt_at,omitempty"`
	// HaltMin is how many clients must have finished before HaltAt is
	// applied (default 1).
	HaltMin int `json:"halt_min,omitempty"`
}

// Ring is one ring of a rollout plan: a cumulative percentage of the
// targets, or the clients of some groups. Exactly one is set. In a job
// file a ring may also be written as a bare number (10) or a string ("10%",
// "group:pilot", "group:pilot+it").
type Ring struct {
	// Percent is the cumulative share of the targets in this ring and the
	// rings before it, above 0 and at most 100.
	Percent float64 `json:"percent,omitempty"`
	// Groups puts the clients enrolled in any of these groups in this
	// ring.
	Groups []string `json:"groups,omitempty"`
}

// String renders a ring as "10%" or "group:pilot+it".
func (r Ring) String() string {
	if len(r.Groups) > 0 {
		return "group:" + strings.Join(r.Groups, "+")
	}
	return strconv.FormatFloat(r.Percent, 'f', -1, 64) + "%"
}

// ParseRing reads a ring written as "10", "10%" or "group:pilot+it".
func ParseRing(s string) (Ring, error) {
	s = strings.TrimSpace(s)
	if g, ok := strings.CutPrefix(s, "group:"); ok {
		return Ring{Groups: strings.Split(g, "+")}, nil
	}
	p, err := strconv.ParseFloat(strings.TrimSuffix(s, "%"), 64)
	if err != nil || math.IsNaN(p) || math.IsInf(p, 0) {
		return Ring{}, fmt.Errorf("%w: rollout.rings: %q is neither a percentage (10, 10%%) nor group:NAME", ErrInvalidPlan, s)
	}
	return Ring{Percent: p}, nil
}

// UnmarshalJSON reads a ring as an object, a number or a string (see
// ParseRing). The wire form (MarshalJSON) is always the object.
func (r *Ring) UnmarshalJSON(b []byte) error {
	var s string
	if json.Unmarshal(b, &s) == nil {
		ring, err := ParseRing(s)
		*r = ring
		return err
	}
	var p float64
	if json.Unmarshal(b, &p) == nil {
		*r = Ring{Percent: p}
		return nil
	}
	type plain Ring
	var obj plain
	if err := json.Unmarshal(b, &obj); err != nil {
		return fmt.Errorf("%w: rollout.rings: a ring is a percentage (10), a string (\"10%%\", \"group:pilot\") or {percent: 10} / {groups: [pilot]}", ErrInvalidPlan)
	}
	*r = Ring(obj)
	return nil
}

// DetectCommand is the command that says whether a job is already in
// place on a client: exit 0 means present.
type DetectCommand struct {
	// Argv is the program and its arguments, run without a shell unless
	// Shell is set.
	Argv []string `json:"argv"`
	// Shell runs Argv through the platform shell.
	Shell bool `json:"shell,omitempty"`
	// Timeout kills the detection after this long (default
	// DefaultDetectTimeout, at most MaxTimeout); a detection that times
	// out says absent.
	Timeout Duration `json:"timeout,omitempty"`
}

// TimeoutOrDefault is the detect command's timeout with its default.
func (d DetectCommand) TimeoutOrDefault() time.Duration {
	if d.Timeout <= 0 {
		return DefaultDetectTimeout
	}
	return time.Duration(d.Timeout)
}

// validate checks the plan of job j; every error names the field.
func (p JobPlan) validate(j JobOffered) error {
	if r := p.Rollout; r != nil {
		if err := r.Validate(); err != nil {
			return err
		}
		if last := r.OpensAt(j.OfferAfter, len(r.Rings)); !j.ExpireAfter.IsZero() && !last.Before(j.ExpireAfter) {
			return fmt.Errorf("%w: rollout: ring %d opens at %s, not before expire_after (%s): shorten rollout.soak or expire later",
				ErrInvalidPlan, len(r.Rings), last.Format(time.RFC3339), j.ExpireAfter.Format(time.RFC3339))
		}
	}
	if d := p.Detect; d != nil {
		if err := validateArgv("detect argv", d.Argv); err != nil {
			return err
		}
		if d.Timeout < 0 || time.Duration(d.Timeout) > MaxTimeout {
			return fmt.Errorf("%w: detect timeout is %s: give a positive duration, at most 24h (or leave it out for %s)", ErrTimeout, d.Timeout, DefaultDetectTimeout)
		}
	}
	if len(p.Requires) > MaxRequires {
		return fmt.Errorf("%w: requires lists %d jobs: at most %d", ErrInvalidRequires, len(p.Requires), MaxRequires)
	}
	for i, req := range p.Requires {
		if err := ValidID("requires job id", req); err != nil {
			return fmt.Errorf("%w: requires[%d]: %w", ErrInvalidRequires, i, err)
		}
		if req == j.JobID {
			return fmt.Errorf("%w: requires[%d] is the job itself (%s): a job cannot wait for itself", ErrInvalidRequires, i, req)
		}
		if slices.Contains(p.Requires[:i], req) {
			return fmt.Errorf("%w: requires names job %s twice", ErrInvalidRequires, req)
		}
	}
	return nil
}

// Validate checks the rules of a rollout plan; every error wraps
// ErrInvalidPlan and names the field.
func (r RolloutPlan) Validate() error {
	n := len(r.Rings)
	switch {
	case n == 0:
		return fmt.Errorf("%w: rollout.rings is empty: give the rings as cumulative percentages ending at 100 (1,10,50,100)", ErrInvalidPlan)
	case n > MaxRings:
		return fmt.Errorf("%w: rollout.rings has %d rings: at most %d", ErrInvalidPlan, n, MaxRings)
	}
	prev, percents := 0.0, false
	for i, ring := range r.Rings {
		field := fmt.Sprintf("rollout.rings[%d]", i)
		switch {
		case len(ring.Groups) > 0 && ring.Percent != 0:
			return fmt.Errorf("%w: %s has both a percentage and groups: give one", ErrInvalidPlan, field)
		case len(ring.Groups) > 0:
			if percents {
				return fmt.Errorf("%w: %s (%s) names groups after a percentage ring: rings by group come first", ErrInvalidPlan, field, ring)
			}
			for _, g := range ring.Groups {
				if err := ValidID(field+" group", g); err != nil {
					return fmt.Errorf("%w: %w", ErrInvalidPlan, err)
				}
			}
			continue
		case math.IsNaN(ring.Percent) || ring.Percent <= 0:
			return fmt.Errorf("%w: %s is %s: a ring is a percentage above 0 (or groups)", ErrInvalidPlan, field, ring)
		case ring.Percent > 100:
			return fmt.Errorf("%w: %s is %s: a ring is at most 100%% of the targets", ErrInvalidPlan, field, ring)
		case ring.Percent <= prev:
			return fmt.Errorf("%w: %s is %s, not more than the ring before it (%s): the percentages are cumulative and must increase",
				ErrInvalidPlan, field, ring, strconv.FormatFloat(prev, 'f', -1, 64)+"%")
		}
		percents, prev = true, ring.Percent
	}
	if last := r.Rings[n-1]; last.Percent != 100 {
		return fmt.Errorf("%w: the last ring is %s: end the rings at 100 so that every target is reached", ErrInvalidPlan, last)
	}
	switch {
	case r.Soak < 0:
		return fmt.Errorf("%w: rollout.soak is %s: give a positive duration such as 2h", ErrInvalidPlan, r.Soak)
	case r.Soak == 0 && n > 1:
		return fmt.Errorf("%w: rollout.soak is 0 with %d rings: give the time between rings (--soak 2h)", ErrInvalidPlan, n)
	}
	if h := r.HaltAt; h != nil && (math.IsNaN(*h) || *h < 0 || *h >= 100) {
		return fmt.Errorf("%w: rollout.halt_at is %v%%: give a failure rate from 0 to under 100 (--halt-at 5%%)", ErrInvalidPlan, *h)
	}
	switch {
	case r.HaltMin < 0:
		return fmt.Errorf("%w: rollout.halt_min is %d: give how many clients must have finished, 1 or more", ErrInvalidPlan, r.HaltMin)
	case r.HaltMin > 0 && r.HaltAt == nil:
		return fmt.Errorf("%w: rollout.halt_min is set without rollout.halt_at: give the failure rate that halts the rollout (--halt-at 5%%)", ErrInvalidPlan)
	}
	return nil
}

// OpensAt is when ring (from 1) opens for a job offered from offerAfter:
// offerAfter plus ring-1 soak times.
func (r RolloutPlan) OpensAt(offerAfter time.Time, ring int) time.Time {
	return offerAfter.Add(time.Duration(max(ring-1, 0)) * time.Duration(r.Soak))
}

// HaltMinOrDefault is HaltMin with its default (1).
func (r RolloutPlan) HaltMinOrDefault() int { return max(r.HaltMin, 1) }

// RingPosition is where client falls among the targets of job: a number
// in [0, 100) drawn from a stable hash (SHA-256) of the two ids, uniform
// over client ids, the same on every machine and for ever.
func RingPosition(job, client string) float64 {
	sum := sha256.Sum256([]byte(job + "/" + client))
	return float64(binary.BigEndian.Uint64(sum[:8])>>11) / (1 << 53) * 100
}

// RingOf is the ring (from 1) of client, enrolled in groups, in this plan
// of job: the first ring naming one of its groups, else the first
// percentage ring whose cumulative percentage is above the client's
// RingPosition. A client keeps its ring when rings after it change. 0
// means no ring (a plan that does not end at 100).
func (r RolloutPlan) RingOf(job, client string, groups []string) int {
	pos := -1.0
	for i, ring := range r.Rings {
		if len(ring.Groups) > 0 {
			for _, g := range ring.Groups {
				if slices.Contains(groups, g) {
					return i + 1
				}
			}
			continue
		}
		if pos < 0 {
			pos = RingPosition(job, client)
		}
		if pos < ring.Percent {
			return i + 1
		}
	}
	return 0
}

// RolloutTally counts the clients of a rollout for its halt threshold:
// those whose latest status shows it ran to its end there.
type RolloutTally struct {
	// Finished counts the clients where the job succeeded, or failed or
	// timed out at its last attempt; clients where it did not run (not
	// applicable, already present, cancelled, expired) are not counted.
	Finished int
	// Failed counts those of them where it failed or timed out.
	Failed int
}

// Add counts a client's latest status of a job that allows maxAttempts
// attempts.
func (t *RolloutTally) Add(s JobStatus, maxAttempts int) {
	if !s.EndsJob(maxAttempts) {
		return
	}
	switch s.State {
	case StateSucceeded:
		t.Finished++
	case StateFailed, StateTimedOut:
		t.Finished++
		t.Failed++
	}
}

// Halts reports whether a tally passes the plan's threshold: at least
// HaltMin clients finished and more than HaltAt percent of them failed.
// A plan without HaltAt never halts by itself.
func (r RolloutPlan) Halts(t RolloutTally) bool {
	if r.HaltAt == nil || t.Finished < r.HaltMinOrDefault() {
		return false
	}
	return float64(t.Failed)*100 > *r.HaltAt*float64(t.Finished)
}

// Fulfilled reports whether a job that ended in s is in place on its
// client, for the jobs that require it: it succeeded, or its detection
// found it already present.
func (s JobStatus) Fulfilled() bool {
	return s.State == StateSucceeded || (s.State == StateNotApplicable && s.Reason == ReasonAlreadyPresent)
}
