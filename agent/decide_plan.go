package agent

import (
	"fmt"
	"time"
)

// The rules of a job's plan (events.JobPlan), rows of Decide: a required
// job that ended here without success settles the job not applicable; a
// halted rollout, a ring not open yet, a required job not done yet hold
// it. Detection is not a decision: the attempt engine runs the detect
// command under the lock (detect.go).
const (
	// RuleRequiredFailed: a job it requires ended on this client without
	// being in place (failed, cancelled, not applicable, expired): it is
	// not applicable here.
	RuleRequiredFailed Rule = "required failed"
	// RuleHalted: its staged rollout is halted; nothing starts it until an
	// operator resumes it.
	RuleHalted Rule = "halted"
	// RuleRing: the client's ring of the staged rollout has not opened.
	RuleRing Rule = "ring"
	// RuleRequires: a job it requires has not ended on this client yet.
	RuleRequires Rule = "requires"
)

// How long a job held by a halt or by a required job waits before it is
// decided again when nothing wakes it sooner: a resume wakes it at once
// (its copy reaches the client's consumer), and so does the end of a
// required job the service hears of (its status on the client's subject).
const (
	haltRecheck     = 10 * time.Minute
	requiresRecheck = 5 * time.Minute
)

// requiredFailed says whether a job the offer requires ended on this
// client without being in place, and why.
func requiredFailed(f Facts) (why string, ok bool) {
	for _, req := range f.Job.Requires {
		st := f.Required[req]
		if st == nil || !st.EndsJob(st.MaxAttempts) || st.Fulfilled() {
			continue
		}
		why = fmt.Sprintf("requires job %s, which ended %s on this client", req, st.State)
		if st.Reason != "" {
			why += " (" + st.Reason + ")"
		}
		return why, true
	}
	return "", false
}

// planWait holds an offer its plan does not let run yet: its rollout
// halted, the client's ring not open, a required job not ended here.
func planWait(f Facts, wait func(Rule, time.Time, string) Decision) (Decision, bool) {
	job := f.Job
	recheck := func(d time.Duration) time.Time {
		if at := f.Now.Add(d); at.Before(job.ExpireAfter) {
			return at
		}
		return job.ExpireAfter
	}
	if r := job.Rollout; r != nil {
		if h := f.Halt; h != nil {
			why := "halted"
			if h.Reason != "" {
				why += ": " + h.Reason
			}
			return wait(RuleHalted, recheck(haltRecheck), why), true
		}
		ring := r.RingOf(job.JobID, f.Client, f.Groups)
		if opens := r.OpensAt(job.OfferAfter, ring); f.Now.Before(opens) {
			return wait(RuleRing, opens, fmt.Sprintf("in ring %d of %d, which opens at %s", ring, len(r.Rings), opens.UTC().Format(time.RFC3339))), true
		}
	}
	for _, req := range job.Requires {
		st := f.Required[req]
		switch {
		case st == nil:
			return wait(RuleRequires, recheck(requiresRecheck), "waiting for job "+req+" (not run on this client yet)"), true
		case !st.EndsJob(st.MaxAttempts):
			return wait(RuleRequires, recheck(requiresRecheck), fmt.Sprintf("waiting for job %s (%s, attempt %d)", req, st.State, st.Attempt)), true
		}
	}
	return Decision{}, false
}

// looksAgain reports whether a wait by rule r may end at the decision's
// Until without anything else happening (an offer time, a ring's opening,
// the recheck of a halt or of required jobs): the desktop's session looks
// at the job again then.
func looksAgain(r Rule) bool {
	switch r {
	case RuleOfferTime, RuleRing, RuleHalted, RuleRequires:
		return true
	}
	return false
}
