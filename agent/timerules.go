package agent

import (
	"fmt"
	"time"

	"github.com/pcm-project/pcm/events"
)

// The time rules for people, as rows of the decision (see Decide): the
// grace after offline, the user's deferrals, the countdown the service
// gives the user of a job that may be deferred, and maintenance windows.

// TimeFacts are what the time rules decide from, besides the offer, its
// last status and the journal (embedded in Facts).
type TimeFacts struct {
	// FirstSeen is when the face first saw the offer (the service keeps it
	// in its journal across restarts, the desktop session in memory); zero
	// means Now.
	FirstSeen time.Time
	// Windows are the client's maintenance windows (its own, its groups'
	// and every client's). They are read only for a job that requires one;
	// nil means none is set.
	Windows events.Windows
	// Grace is the countdown the user is given before a job the user may
	// defer runs (Config.Grace): the service waits it once the job is due.
	Grace time.Duration
	// NoSession is set on the service when no desktop session of the
	// client is open: nobody is there to defer a job or be warned, so
	// neither the user's deferral nor the countdown holds it (the grace
	// after offline still does: the user may be logging in).
	NoSession bool
}

// firstSeen is FirstSeen, Now when unknown.
func (f Facts) firstSeen() time.Time {
	if f.FirstSeen.IsZero() {
		return f.Now
	}
	return f.FirstSeen
}

// deferred is the user's last deferral of the job the facts know: its
// number (0 for none) and its end. The journal keeps what the service saw;
// the last status is what the broker holds now; the later one counts.
func deferred(f Facts) (n int, until time.Time) {
	if r := f.Journal; r != nil && r.Deferral > 0 {
		n, until = r.Deferral, r.DeferredUntil
	}
	if l := f.Last; l != nil && l.State == events.StateDeferred && l.Deferral >= n && l.DeferredUntil != nil {
		n, until = l.Deferral, *l.DeferredUntil
	}
	return n, until
}

// unattendedDue is when a mandatory job is due for an unattended run once
// its mandatory time has come, by the time rules: the end of the grace
// after offline of a client that saw it late, or the end of the user's
// deferral, whichever is later; and the rule and words that say why. A job
// with neither is due at its mandatory time (RuleMandatoryTime).
func unattendedDue(f Facts) (due time.Time, rule Rule, why string) {
	job := f.Job
	due, rule, why = *job.MandatoryAfter, RuleMandatoryTime, "waiting for its mandatory time"
	if end, late := job.GraceEnd(f.firstSeen()); late && end.After(due) {
		due, rule = end, RuleGraceAfterOffline
		why = fmt.Sprintf("first seen at %s, after its mandatory time (%s): the user is warned until %s (grace after offline)",
			stamp(f.firstSeen()), stamp(*job.MandatoryAfter), stamp(end))
	}
	if n, until := deferred(f); n > 0 && until.After(due) && !f.NoSession {
		due, rule = until, RuleDeferred
		why = fmt.Sprintf("deferred by the user until %s (deferral %d)", stamp(until), n)
	}
	return due, rule, why
}

// startsAt is when a mandatory job runs without the user, as the desktop
// tells it: when it is due (unattendedDue), or, for a job counted down
// first (one that needs the user or that the user may defer), grace after
// it is due or after the session first saw it, whichever is later.
func startsAt(f Facts, grace time.Duration) time.Time {
	due, _, _ := unattendedDue(f)
	if f.Job.Command.Automated && f.Job.Deferrals == nil {
		return due
	}
	if seen := f.FirstSeen; seen.After(due) {
		due = seen
	}
	return due.Add(grace)
}

// countsDown reports whether the service gives the user a countdown
// before it runs a job that is due: a job the user may defer (the desktop
// offers the deferral during the countdown), while a desktop session is
// open.
func countsDown(f Facts) bool {
	return f.Face == events.RunnerService && f.Job.Deferrals != nil && f.Grace > 0 && !f.NoSession
}

// timeRules are rows 10 of Decide, for an unattended run of a mandatory
// job whose mandatory time has come: it waits for the grace after
// offline, for the user's deferral, and, on the service, for the
// countdown of a job the user may defer. ok is false when none holds it.
func timeRules(f Facts) (d Decision, ok bool) {
	due, rule, why := unattendedDue(f)
	if f.Now.Before(due) {
		return Decision{Action: Wait, Rule: rule, Until: due, Why: why}, true
	}
	if countsDown(f) && f.Now.Before(due.Add(f.Grace)) {
		return Decision{Action: Wait, Rule: RuleCountdown, Until: due.Add(f.Grace),
			Why: fmt.Sprintf("due at %s: the user is warned for %s and may defer it", stamp(due), f.Grace)}, true
	}
	return Decision{}, false
}

// windowRule is row 11 of Decide: a job that requires a maintenance window
// starts only inside one of the client's, with its timeout fitting in what
// is left of it; otherwise it waits for the next that fits (until it
// expires, when none does before). ok is false when the job may start.
func windowRule(f Facts) (d Decision, ok bool) {
	job := f.Job
	if !job.InWindow {
		return Decision{}, false
	}
	need := time.Duration(job.Command.Timeout)
	o, found := f.Windows.Next(f.Now, need)
	switch {
	case found && !o.Start.After(f.Now):
		return Decision{}, false
	case len(f.Windows) == 0:
		return Decision{Action: Wait, Rule: RuleWindow, Until: job.ExpireAfter,
			Why: "waiting for maintenance window (none is set for this client: pcm window set)"}, true
	case !found || !o.Start.Before(job.ExpireAfter):
		return Decision{Action: Wait, Rule: RuleWindow, Until: job.ExpireAfter,
			Why: fmt.Sprintf("waiting for maintenance window (none long enough for its timeout of %s opens before it expires)", job.Command.Timeout)}, true
	}
	return Decision{Action: Wait, Rule: RuleWindow, Until: o.Start,
		Why: fmt.Sprintf("waiting for maintenance window (next: %s)", stamp(o.Start))}, true
}

// Deferral says whether the user may defer a job now (see
// deferralOffer).
type Deferral struct {
	// Allowed is true when the user may defer it now: then Number is the
	// deferral it would be and Until when it would end.
	Allowed bool
	Number  int
	Until   time.Time
	// Left is how many deferrals are left (after this one, when Allowed).
	Left int
	// Deadline is the job's hard deadline, if it has one.
	Deadline *time.Time
	// Why says why not, when not allowed.
	Why string
}

// leftNow is how many deferrals the user has now (before the one offered,
// when Allowed).
func (o Deferral) leftNow() int {
	if o.Allowed {
		return o.Left + 1
	}
	return o.Left
}

// deferralOffer says whether the user may defer the job of f, a job that
// allows deferrals, now: not before its mandatory time, not once its
// deadline has passed, and not beyond the deferrals it allows.
func deferralOffer(f Facts) Deferral {
	rules := f.Job.Deferrals
	used, _ := deferred(f)
	off := Deferral{Deadline: rules.Deadline, Left: max(rules.Max-used, 0)}
	switch {
	case f.Now.Before(*f.Job.MandatoryAfter):
		off.Why = "it is not mandatory before " + stamp(*f.Job.MandatoryAfter)
	case used >= rules.Max:
		off.Why = fmt.Sprintf("no deferral left: it was deferred %d times, the most it allows", used)
	case rules.Deadline != nil && !f.Now.Before(*rules.Deadline):
		off.Why = "its deadline " + stamp(*rules.Deadline) + " has passed"
	default:
		off.Allowed, off.Number, off.Until, off.Left = true, used+1, rules.Until(f.Now), rules.Max-used-1
	}
	return off
}

// stamp writes an instant for the logs and the user: RFC 3339 in UTC.
func stamp(t time.Time) string { return t.UTC().Format(time.RFC3339) }
