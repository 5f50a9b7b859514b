package agent

import (
	"fmt"
	"strings"
	"time"

	"github.com/pcm-project/pcm/agent/journal"
	"github.com/pcm-project/pcm/events"
)

// Action is what a face does with an offer (see Decide).
type Action int

// The four actions.
const (
	// Run: run Decision.Attempt now (after recording Decision.Report, an
	// interrupted attempt, if any). Outside the lock it means "take the
	// lock and decide again".
	Run Action = iota + 1
	// Wait: leave the offer until Decision.Until; the service naks it with
	// that delay, the desktop does not list or run it now.
	Wait
	// Settle: the job is over on this client: record Decision.Report, if
	// any, then ack the offer (the service) or leave it (the desktop).
	Settle
	// Refuse: the event is not acted on: record Decision.Report (a
	// rejection), if any, then term the message (the service) or ignore it
	// (the desktop).
	Refuse
)

func (a Action) String() string {
	switch a {
	case Run:
		return "run"
	case Wait:
		return "wait"
	case Settle:
		return "settle"
	case Refuse:
		return "refuse"
	}
	return fmt.Sprintf("action(%d)", int(a))
}

// Rule names the rule of the design contract that made a decision.
type Rule string

// The rules, in the order Decide applies them.
const (
	// RuleRefused: the offer's signature is not trusted, it is not a valid
	// offer, or it came on a subject that is not one of its targets'.
	RuleRefused Rule = "refused"
	// RuleDone: the job is over on this client (the journal says done, or
	// the last status ends it): it never runs again.
	RuleDone Rule = "done"
	// RuleCancelled: the job was cancelled before it started here.
	RuleCancelled Rule = "cancelled"
	// RulePlatform: the job is for other platforms.
	RulePlatform Rule = "platform"
	// RuleExpired: the job's expiry has passed before it ran.
	RuleExpired Rule = "expired"
	// RuleBackground: a background job is for the service only; the
	// desktop never shows or runs it.
	RuleBackground Rule = "background"
	// RulePackage: the job's package is missing, altered or too large: it
	// fails without running.
	RulePackage Rule = "package"
	// RuleOfferTime: nothing runs before the offer time.
	RuleOfferTime Rule = "offer time"
	// RuleOptional: a job without a mandatory time runs only when a user
	// picks it at the desktop.
	RuleOptional Rule = "optional"
	// RuleInteractive: a mandatory job that needs the user is the
	// desktop's to run at its mandatory time, never the service's.
	RuleInteractive Rule = "interactive"
	// RuleAutomated: a mandatory automated job is the service's to run at
	// its mandatory time; the desktop does not count it down.
	RuleAutomated Rule = "automated"
	// RuleMandatoryTime: an unattended run waits for the mandatory time.
	RuleMandatoryTime Rule = "mandatory time"
	// RuleGraceAfterOffline, RuleDeferred, RuleCountdown and RuleWindow are
	// the time rules for people (timerules.go), applied after the
	// mandatory time.
	RuleGraceAfterOffline Rule = "grace after offline"
	RuleDeferred          Rule = "deferred"
	RuleCountdown         Rule = "countdown"
	RuleWindow            Rule = "maintenance window"
	// RuleInterrupted: an attempt was started and never finished (its face
	// died); found under the lock, it counts as failed.
	RuleInterrupted Rule = "interrupted"
	// RuleDue: the job runs now.
	RuleDue Rule = "due"
)

// Facts is everything a face knows about one offer when it decides: the
// offer, what the journal and the broker say of the job on this client,
// the cancellation, the platform and the time.
type Facts struct {
	// Face is the face deciding: events.RunnerService or
	// events.RunnerDesktop.
	Face events.Runner
	// Unattended is true when nobody asked for the run: always for the
	// service; for the desktop, its session at a job's mandatory time.
	// False is a user picking the job at the desktop.
	Unattended bool
	// Job is the offer. For a refused event only JobID may be set (empty
	// when no job can be named).
	Job events.JobOffered
	// Refused says why the event cannot be acted on: its signature is not
	// trusted, it is not a valid offer, or it is misrouted. Nil when it
	// can.
	Refused error
	// Journal is the service's record of the job; nil when the journal has
	// none, and always for the desktop.
	Journal *journal.Record
	// Last is the last status of the job on this client, as the broker
	// stores it; nil when there is none.
	Last *events.JobStatus
	// Disbelieved is set by Decide, never by a caller: a status of the
	// desktop face for a job only the service runs, taken out of Last.
	Disbelieved *events.JobStatus
	// Cancel is the job's verified cancellation; nil when none is known.
	// A cancellation recorded in the journal counts as well.
	Cancel *events.JobCancelled
	// Client and Groups are this client's id and enrolled groups: its ring
	// of a staged rollout (decide_plan.go).
	Client string
	Groups []string
	// Halt is the halt of the job's staged rollout (events.ReadHalt); nil
	// when it is not halted.
	Halt *events.JobHalted
	// Required is the last status on this client of each job the offer
	// requires (a nil entry: none yet).
	Required map[string]*events.JobStatus
	// PackageErr is the permanent refusal of the job's package (missing,
	// altered, too large); nil when it was fetched, or not tried yet.
	PackageErr error
	// OS and Arch are this client's platform.
	OS, Arch string
	// Now is the time of the decision.
	Now time.Time
	// Locked is true when the face holds the client's lock: nothing else
	// runs on the client now, so an attempt started and never finished was
	// interrupted.
	Locked bool
	// TimeFacts: first sight, maintenance windows, the grace (timerules.go).
	TimeFacts
}

// Report is a status a decision asks to record.
type Report struct {
	State   events.State
	Attempt int
	Reason  string
	// Ends says the status ends the job on this client: the service acks
	// the offer once it is stored.
	Ends bool
}

// Decision is what to do with an offer, and why.
type Decision struct {
	Action Action
	// Rule is the rule that decided.
	Rule Rule
	// Why says it in words, for the logs and the user.
	Why string
	// Until is when a Wait ends.
	Until time.Time
	// Attempt is the attempt a Run starts.
	Attempt int
	// Report is the status to record: for Settle and Refuse the one that
	// ends the offer here (nil when there is nothing to record); for Run,
	// an interrupted attempt to settle before the next one starts.
	Report *Report
}

// maxReasonLen bounds the reason of a status the agent writes.
const maxReasonLen = 1024

// Decide is the agent's one decision about an offer: a pure function of the
// facts, without I/O. Both faces ask it everything they do with an offer,
// and ask again when a fact may have changed (under the lock, after a
// failed attempt, after fetching the package). The rules, in order:
//
//  1. a refused event (signature, validity, routing) is refused; the
//     service reports it rejected when the journal has never seen the job;
//  2. a job over on this client (journal done, or a last status that ends
//     it given max_attempts) is settled without running;
//  3. a cancelled job is settled cancelled;
//  4. a job for other platforms is settled not_applicable;
//  5. an expired job is settled expired;
//  6. a job that requires one which ended here without being in place
//     is settled not_applicable (decide_plan.go);
//  7. a background job waits for ever on the desktop (service-only);
//  8. a job whose package was refused is settled failed;
//  9. nothing runs before the offer time;
//  10. a staged rollout that is halted, or whose ring for this client has
//     not opened, waits; so does a job whose required jobs have not ended
//     here (decide_plan.go);
//  11. unattended, an optional job waits for the user, an interactive one
//     waits for the desktop (on the service), an automated one for the
//     service (on the desktop), and a mandatory one for its time;
//  12. unattended, a mandatory job due waits for the grace after offline
//     of a client that saw it late, for the end of the user's deferral,
//     and, on the service, for the user's countdown of a job the user may
//     defer; with no desktop session open, the service waits for neither
//     deferral nor countdown (timeRules);
//  13. a job that requires a maintenance window waits for one in which its
//     timeout fits (windowRule);
//  14. under the lock, an attempt started and never finished counts as
//     failed; outside the lock it may be running: decide again under it;
//  15. otherwise the next attempt runs.
//
// The service records what ends an offer (steps 1 to 6 and 8); the desktop
// records only its own attempts (steps 8 and 14) and leaves the rest to
// the service, which sees every offer.
func Decide(f Facts) Decision {
	job := f.Job
	if f.Last != nil && f.Last.Runner == events.RunnerDesktop && job.Command.Background {
		// A desktop never runs a background job, so its status of one is
		// not its word to give (a user holding the desktop's credentials
		// could otherwise skip a job only the service runs): it is not
		// believed. The job runs as the attempt after it, so that their
		// statuses keep apart.
		f.Disbelieved, f.Last = f.Last, nil
	}
	switch {
	case f.Refused != nil:
		d := Decision{Action: Refuse, Rule: RuleRefused, Why: f.Refused.Error()}
		if f.Face == events.RunnerService && f.Journal == nil && events.ValidID("job id", job.JobID) == nil {
			// Only for a job never seen here: a bad event cannot
			// overwrite the record of a real job.
			d.Report = &Report{State: events.StateRejected, Attempt: 1, Reason: truncate(d.Why, maxReasonLen)}
		}
		return d
	case f.Journal != nil && f.Journal.Phase == journal.PhaseDone:
		return Decision{Action: Settle, Rule: RuleDone, Why: "already " + f.Journal.FinalState + " on this client"}
	case f.Last != nil && f.Last.EndsJob(job.Attempts()):
		return Decision{Action: Settle, Rule: RuleDone,
			Why: fmt.Sprintf("already %s on this client (attempt %d, by the %s face)", f.Last.State, f.Last.Attempt, f.Last.Runner)}
	}
	journaled := 0
	if f.Journal != nil {
		journaled = f.Journal.Attempt
	}
	next := events.NextAttempt(journaled, f.Last)
	if f.Disbelieved != nil {
		next = max(next, f.Disbelieved.Attempt+1)
	}
	// ends settles the offer with a final status of the attempt it would
	// have been; the desktop records only a refused package.
	ends := func(rule Rule, state events.State, why string) Decision {
		d := Decision{Action: Settle, Rule: rule, Why: why}
		if f.Face == events.RunnerService || rule == RulePackage {
			d.Report = &Report{State: state, Attempt: next, Reason: truncate(why, maxReasonLen), Ends: true}
		}
		return d
	}
	wait := func(rule Rule, until time.Time, why string) Decision {
		return Decision{Action: Wait, Rule: rule, Until: until, Why: why}
	}
	if reason, ok := cancelled(f); ok {
		why := "cancelled before it started"
		if reason != "" {
			why += ": " + reason
		}
		return ends(RuleCancelled, events.StateCancelled, why)
	}
	reqWhy, reqFailed := requiredFailed(f)
	switch {
	case !events.PlatformMatches(job.Command.Platforms, f.OS, f.Arch):
		return ends(RulePlatform, events.StateNotApplicable,
			fmt.Sprintf("job is for %s; this client is %s/%s", strings.Join(job.Command.Platforms, ", "), f.OS, f.Arch))
	case !f.Now.Before(job.ExpireAfter):
		return ends(RuleExpired, events.StateExpired, "expired at "+job.ExpireAfter.UTC().Format(time.RFC3339)+" before it ran")
	case reqFailed:
		return ends(RuleRequiredFailed, events.StateNotApplicable, reqWhy)
	case f.Face == events.RunnerDesktop && job.Command.Background:
		return wait(RuleBackground, job.ExpireAfter, "marked background: for service-only execution")
	case f.PackageErr != nil:
		return ends(RulePackage, events.StateFailed, f.PackageErr.Error())
	case f.Now.Before(job.OfferAfter):
		return wait(RuleOfferTime, job.OfferAfter, "not offered before "+job.OfferAfter.UTC().Format(time.RFC3339))
	}
	if d, ok := planWait(f, wait); ok {
		return d
	}
	if f.Unattended {
		switch {
		case !job.Mandatory():
			return wait(RuleOptional, job.ExpireAfter, "optional: the user runs it from the desktop")
		case f.Face == events.RunnerService && !job.Command.Automated:
			return wait(RuleInteractive, job.ExpireAfter, "needs the user: the desktop runs it at its mandatory time")
		case f.Face == events.RunnerDesktop && job.Command.Automated:
			return wait(RuleAutomated, job.ExpireAfter, "automated: the service runs it at its mandatory time")
		case f.Now.Before(*job.MandatoryAfter):
			return wait(RuleMandatoryTime, *job.MandatoryAfter, "waiting for its mandatory time")
		}
		if d, ok := timeRules(f); ok {
			return d
		}
	}
	if d, ok := windowRule(f); ok {
		return d
	}
	if f.Last != nil && f.Last.State == events.StateStarted {
		if !f.Locked {
			return Decision{Action: Run, Rule: RuleDue, Attempt: next,
				Why: fmt.Sprintf("due; attempt %d was started by the %s face: checked again under the lock", f.Last.Attempt, f.Last.Runner)}
		}
		// Nothing runs while this face holds the lock: whoever started
		// the attempt died during the run. It counts.
		failed := events.JobStatus{State: events.StateFailed, Attempt: f.Last.Attempt}
		r := &Report{State: failed.State, Attempt: failed.Attempt, Ends: failed.EndsJob(job.Attempts()),
			Reason: fmt.Sprintf("the %s face stopped during the run (started by %s, no final status)", f.Last.Runner, f.Last.User)}
		if r.Ends {
			return Decision{Action: Settle, Rule: RuleInterrupted, Why: r.Reason, Report: r}
		}
		return Decision{Action: Run, Rule: RuleInterrupted, Attempt: next, Report: r,
			Why: fmt.Sprintf("attempt %d was interrupted; attempt %d runs now", f.Last.Attempt, next)}
	}
	return Decision{Action: Run, Rule: RuleDue, Attempt: next, Why: "due"}
}

// cancelled says whether the facts know a cancellation of the job, and
// its reason.
func cancelled(f Facts) (reason string, ok bool) {
	switch {
	case f.Cancel != nil:
		return f.Cancel.Reason, true
	case f.Journal != nil && f.Journal.Cancelled:
		return f.Journal.CancelReason, true
	}
	return "", false
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}
