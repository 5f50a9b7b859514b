package agent

import (
	"strings"
	"testing"
	"time"

	"github.com/pcm-project/pcm/agent/journal"
	"github.com/pcm-project/pcm/agent/pkgcache"
	"github.com/pcm-project/pcm/events"
)

// TestDecide is the decision table: one row per rule of the design
// contract, for the face it concerns, without a broker.
func TestDecide(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	hourAgo, inAnHour := now.Add(-time.Hour), now.Add(time.Hour)
	// job is mandatory since an hour ago, automated, expiring tomorrow,
	// with 3 attempts.
	job := func(tweak ...func(*events.JobOffered)) events.JobOffered {
		j := events.JobOffered{JobID: "J1", OfferAfter: hourAgo, MandatoryAfter: &hourAgo, ExpireAfter: now.Add(24 * time.Hour),
			MaxAttempts: 3, Command: events.CommandLine{Argv: []string{"true"}, Automated: true, Timeout: events.Duration(time.Minute)}}
		for _, f := range tweak {
			f(&j)
		}
		return j
	}
	optional := func(j *events.JobOffered) { j.MandatoryAfter = nil }
	interactive := func(j *events.JobOffered) { j.Command.Automated = false }
	background := func(j *events.JobOffered) { j.Command.Background = true }
	last := func(s events.State, attempt int, runner events.Runner) *events.JobStatus {
		return &events.JobStatus{JobID: "J1", State: s, Attempt: attempt, Runner: runner, User: "ann"}
	}
	service := func(j events.JobOffered) Facts {
		return Facts{Face: events.RunnerService, Unattended: true, Job: j, OS: "linux", Arch: "amd64", Now: now,
			TimeFacts: TimeFacts{Grace: 5 * time.Minute}}
	}
	userPick := func(j events.JobOffered) Facts {
		return Facts{Face: events.RunnerDesktop, Job: j, OS: "linux", Arch: "amd64", Now: now, TimeFacts: TimeFacts{Grace: 5 * time.Minute}}
	}
	session := func(j events.JobOffered) Facts {
		f := userPick(j)
		f.Unattended = true
		return f
	}
	with := func(f Facts, tweak func(*Facts)) Facts { tweak(&f); return f }
	cancel := &events.JobCancelled{JobID: "J1", Reason: "wrong version"}
	// staged: ring 1 is group pilot (open since the offer, an hour ago),
	// ring 2 everyone else (opens in an hour).
	staged := func(j *events.JobOffered) {
		j.Rollout = &events.RolloutPlan{Rings: []events.Ring{{Groups: []string{"pilot"}}, {Percent: 100}}, Soak: events.Duration(2 * time.Hour)}
	}
	inRing := func(ring int) func(*Facts) {
		return func(f *Facts) {
			f.Client = "ws-1"
			if ring == 1 {
				f.Groups = []string{"lab", "pilot"}
			}
		}
	}
	halt := &events.JobHalted{JobID: "J1", Reason: "failed 3 of 10 finished clients (30% > 5%)"}
	requires := func(j *events.JobOffered) { j.Requires = []string{"J0"} }
	required := func(s events.State, attempt, maxAttempts int, reason string) func(*Facts) {
		return func(f *Facts) {
			f.Required = map[string]*events.JobStatus{"J0": {JobID: "J0", State: s, Attempt: attempt, MaxAttempts: maxAttempts, Reason: reason}}
		}
	}
	// The time rules for people.
	graceAfterOffline := func(j *events.JobOffered) { j.GraceAfterOffline = events.Duration(30 * time.Minute) }
	deferrable := func(j *events.JobOffered) {
		j.Deferrals = &events.Deferrals{Max: 3, Each: events.Duration(4 * time.Hour)}
	}
	inWindow := func(j *events.JobOffered) { j.InWindow = true }
	deferral := func(n int, until time.Time) *events.JobStatus {
		st := last(events.StateDeferred, 1, events.RunnerDesktop)
		st.Deferral, st.DeferralsMax, st.DeferredUntil = n, 3, &until
		return st
	}
	windows := func(specs ...string) events.Windows {
		var ws events.Windows
		for _, s := range specs {
			w, err := events.ParseWindow(s)
			if err != nil {
				t.Fatal(err)
			}
			ws = append(ws, w)
		}
		return ws
	}
	berlin, err := time.LoadLocation("Europe/Berlin")
	if err != nil {
		t.Fatal(err)
	}
	ptr := func(t time.Time) *time.Time { return &t }

	for _, tc := range []struct {
		name   string
		facts  Facts
		action Action
		rule   Rule
		// report is the state of the status to record, "" for none.
		report  events.State
		attempt int // of the run, or of the report
		ends    bool
		until   time.Time
		why     string // a part of Why
	}{
		// signature outcome, validity, routing
		{name: "untrusted signature, job never seen: rejected and termed",
			facts:  with(service(job()), func(f *Facts) { f.Refused = events.ErrUntrustedKey }),
			action: Refuse, rule: RuleRefused, report: events.StateRejected, attempt: 1, why: "untrusted"},
		{name: "refused event naming a job the journal knows: no rejection over its record",
			facts: with(service(job()), func(f *Facts) {
				f.Refused = ErrMisrouted
				f.Journal = &journal.Record{JobID: "J1", Phase: journal.PhaseReceived}
			}),
			action: Refuse, rule: RuleRefused},
		{name: "refused event naming no job: no rejection",
			facts:  with(service(events.JobOffered{}), func(f *Facts) { f.Refused = events.ErrMalformed }),
			action: Refuse, rule: RuleRefused},
		{name: "the desktop reports no rejection",
			facts:  with(userPick(job()), func(f *Facts) { f.Refused = events.ErrUnsigned }),
			action: Refuse, rule: RuleRefused},
		// already final
		{name: "journal says done: settled, never run again",
			facts: with(service(job()), func(f *Facts) {
				f.Journal = &journal.Record{JobID: "J1", Phase: journal.PhaseDone, FinalState: "succeeded"}
			}),
			action: Settle, rule: RuleDone},
		{name: "last status succeeded (by the desktop): settled without running",
			facts:  with(service(job()), func(f *Facts) { f.Last = last(events.StateSucceeded, 1, events.RunnerDesktop) }),
			action: Settle, rule: RuleDone, why: "by the desktop face"},
		{name: "a desktop's succeeded status of a background job is not believed: it runs, as the next attempt",
			facts:  with(service(job(background)), func(f *Facts) { f.Last = last(events.StateSucceeded, 1, events.RunnerDesktop) }),
			action: Run, rule: RuleDue, attempt: 2},
		{name: "a desktop's not_applicable of a background job is not believed either",
			facts:  with(service(job(background)), func(f *Facts) { f.Last = last(events.StateNotApplicable, 1, events.RunnerDesktop) }),
			action: Run, rule: RuleDue, attempt: 2},
		{name: "the service's own succeeded status of a background job ends it",
			facts:  with(service(job(background)), func(f *Facts) { f.Last = last(events.StateSucceeded, 1, events.RunnerService) }),
			action: Settle, rule: RuleDone},
		{name: "done outranks a cancellation",
			facts:  with(service(job()), func(f *Facts) { f.Last = last(events.StateSucceeded, 1, events.RunnerService); f.Cancel = cancel }),
			action: Settle, rule: RuleDone},
		// attempts
		{name: "failed at the last attempt: over",
			facts:  with(service(job()), func(f *Facts) { f.Last = last(events.StateFailed, 3, events.RunnerService) }),
			action: Settle, rule: RuleDone},
		{name: "failed with attempts left: the next one runs",
			facts: with(service(job()), func(f *Facts) {
				f.Last = last(events.StateTimedOut, 1, events.RunnerService)
				f.Journal = &journal.Record{JobID: "J1", Phase: journal.PhaseFinished, Attempt: 1, FinalState: "timed_out"}
			}),
			action: Run, rule: RuleDue, attempt: 2},
		{name: "a rejection does not end the job: the real offer runs",
			facts:  with(service(job()), func(f *Facts) { f.Last = last(events.StateRejected, 1, events.RunnerService) }),
			action: Run, rule: RuleDue, attempt: 1},
		// cancelled
		{name: "cancelled (read from the broker): settled cancelled, the attempt it would have been",
			facts:  with(service(job()), func(f *Facts) { f.Cancel = cancel; f.Last = last(events.StateFailed, 1, events.RunnerService) }),
			action: Settle, rule: RuleCancelled, report: events.StateCancelled, attempt: 2, ends: true, why: "wrong version"},
		{name: "cancelled (recorded in the journal before the offer came)",
			facts: with(service(job()), func(f *Facts) {
				f.Journal = &journal.Record{JobID: "J1", Phase: journal.PhaseReceived, Cancelled: true, CancelReason: "superseded"}
			}),
			action: Settle, rule: RuleCancelled, report: events.StateCancelled, attempt: 1, ends: true, why: "superseded"},
		{name: "cancelled while waiting for the mandatory time",
			facts:  with(service(job(func(j *events.JobOffered) { j.MandatoryAfter = &inAnHour })), func(f *Facts) { f.Cancel = cancel }),
			action: Settle, rule: RuleCancelled, report: events.StateCancelled, attempt: 1, ends: true},
		{name: "cancelled, the desktop: not run, nothing recorded (the service records it)",
			facts:  with(userPick(job()), func(f *Facts) { f.Cancel = cancel }),
			action: Settle, rule: RuleCancelled},
		// platform
		{name: "another platform: not applicable",
			facts:  service(job(func(j *events.JobOffered) { j.Command.Platforms = []string{"windows/*"} })),
			action: Settle, rule: RulePlatform, report: events.StateNotApplicable, attempt: 1, ends: true, why: "windows/*"},
		// window
		{name: "expired before it ran",
			facts:  service(job(func(j *events.JobOffered) { j.ExpireAfter = now })),
			action: Settle, rule: RuleExpired, report: events.StateExpired, attempt: 1, ends: true},
		{name: "before the offer time: wait until it",
			facts:  service(job(func(j *events.JobOffered) { j.OfferAfter, j.MandatoryAfter = inAnHour, &inAnHour })),
			action: Wait, rule: RuleOfferTime, until: inAnHour},
		{name: "before the mandatory time: the service waits until it",
			facts:  service(job(func(j *events.JobOffered) { j.MandatoryAfter = &inAnHour })),
			action: Wait, rule: RuleMandatoryTime, until: inAnHour},
		{name: "a user may run a job before its mandatory time",
			facts:  userPick(job(func(j *events.JobOffered) { j.MandatoryAfter = &inAnHour })),
			action: Run, rule: RuleDue, attempt: 1},
		// background vs desktop
		{name: "background on the desktop: never",
			facts:  userPick(job(background)),
			action: Wait, rule: RuleBackground, until: now.Add(24 * time.Hour)},
		{name: "background on the service: due",
			facts:  service(job(background)),
			action: Run, rule: RuleDue, attempt: 1},
		// optional, interactive, automated
		{name: "optional: the service holds it for the user until it expires",
			facts:  service(job(optional)),
			action: Wait, rule: RuleOptional, until: now.Add(24 * time.Hour)},
		{name: "optional: a user may run it",
			facts:  userPick(job(optional)),
			action: Run, rule: RuleDue, attempt: 1},
		{name: "interactive mandatory: the service leaves it to the desktop",
			facts:  service(job(interactive)),
			action: Wait, rule: RuleInteractive, until: now.Add(24 * time.Hour)},
		{name: "interactive mandatory, due: the desktop session runs it",
			facts:  session(job(interactive)),
			action: Run, rule: RuleDue, attempt: 1},
		{name: "interactive mandatory, not due: the desktop session waits for its time",
			facts:  session(job(interactive, func(j *events.JobOffered) { j.MandatoryAfter = &inAnHour })),
			action: Wait, rule: RuleMandatoryTime, until: inAnHour},
		{name: "automated mandatory: the desktop session leaves it to the service",
			facts:  session(job()),
			action: Wait, rule: RuleAutomated},
		// package
		{name: "package refused: failed without running, on the service",
			facts:  with(service(job()), func(f *Facts) { f.PackageErr = pkgcache.ErrDigestMismatch }),
			action: Settle, rule: RulePackage, report: events.StateFailed, attempt: 1, ends: true},
		{name: "package refused: the desktop records its failure too",
			facts:  with(userPick(job()), func(f *Facts) { f.PackageErr = pkgcache.ErrDigestMismatch }),
			action: Settle, rule: RulePackage, report: events.StateFailed, attempt: 1, ends: true},
		// plan: rings, halts, requires
		{name: "staged: the client's ring is open: due",
			facts:  with(service(job(staged)), inRing(1)),
			action: Run, rule: RuleDue, attempt: 1},
		{name: "staged: the client's ring opens later: wait until it opens",
			facts:  with(service(job(staged)), inRing(2)),
			action: Wait, rule: RuleRing, until: inAnHour, why: "ring 2 of 2"},
		{name: "staged: a user cannot run it before the client's ring opens",
			facts:  with(userPick(job(staged)), inRing(2)),
			action: Wait, rule: RuleRing, until: inAnHour},
		{name: "staged, halted: no client starts it, in any ring; looked at again later",
			facts:  with(with(service(job(staged)), inRing(1)), func(f *Facts) { f.Halt = halt }),
			action: Wait, rule: RuleHalted, until: now.Add(haltRecheck), why: "halted: failed 3 of 10"},
		{name: "staged, halted: the halt is said before the ring",
			facts:  with(with(service(job(staged)), inRing(2)), func(f *Facts) { f.Halt = halt }),
			action: Wait, rule: RuleHalted},
		{name: "staged, halted: a user cannot run it either",
			facts:  with(with(userPick(job(staged)), inRing(1)), func(f *Facts) { f.Halt = halt }),
			action: Wait, rule: RuleHalted},
		{name: "staged, halted, cancelled: the cancellation settles it",
			facts:  with(with(service(job(staged)), inRing(1)), func(f *Facts) { f.Halt = halt; f.Cancel = cancel }),
			action: Settle, rule: RuleCancelled, report: events.StateCancelled, attempt: 1, ends: true},
		{name: "staged, halted, expired: expired",
			facts:  with(with(service(job(staged, func(j *events.JobOffered) { j.ExpireAfter = now })), inRing(1)), func(f *Facts) { f.Halt = halt }),
			action: Settle, rule: RuleExpired, report: events.StateExpired, attempt: 1, ends: true},
		{name: "requires a job not run here yet: wait for it",
			facts:  service(job(requires)),
			action: Wait, rule: RuleRequires, until: now.Add(requiresRecheck), why: "waiting for job J0"},
		{name: "requires a job started here: wait for it",
			facts:  with(service(job(requires)), required(events.StateStarted, 1, 1, "")),
			action: Wait, rule: RuleRequires, why: "J0 (started"},
		{name: "requires a job that failed with attempts left: wait for it",
			facts:  with(service(job(requires)), required(events.StateFailed, 1, 2, "")),
			action: Wait, rule: RuleRequires},
		{name: "requires: the wait ends at the expiry at the latest",
			facts:  service(job(requires, func(j *events.JobOffered) { j.ExpireAfter = now.Add(time.Minute) })),
			action: Wait, rule: RuleRequires, until: now.Add(time.Minute)},
		{name: "requires a job that succeeded here: due",
			facts:  with(service(job(requires)), required(events.StateSucceeded, 1, 1, "")),
			action: Run, rule: RuleDue, attempt: 1},
		{name: "requires a job already present here: due",
			facts:  with(service(job(requires)), required(events.StateNotApplicable, 1, 1, events.ReasonAlreadyPresent)),
			action: Run, rule: RuleDue, attempt: 1},
		{name: "requires a job that failed for good here: not applicable, saying which",
			facts:  with(service(job(requires)), required(events.StateFailed, 2, 2, "exit code 3 is not a success code")),
			action: Settle, rule: RuleRequiredFailed, report: events.StateNotApplicable, attempt: 1, ends: true, why: "requires job J0, which ended failed"},
		{name: "requires a job cancelled here: not applicable",
			facts:  with(service(job(requires)), required(events.StateCancelled, 1, 1, "")),
			action: Settle, rule: RuleRequiredFailed, report: events.StateNotApplicable, attempt: 1, ends: true, why: "cancelled"},
		{name: "requires a job for another platform: not applicable",
			facts:  with(service(job(requires)), required(events.StateNotApplicable, 1, 1, "job is for windows/*")),
			action: Settle, rule: RuleRequiredFailed, report: events.StateNotApplicable, attempt: 1, ends: true},
		{name: "requires a job that failed for good, the desktop: not run, nothing recorded",
			facts:  with(userPick(job(requires)), required(events.StateFailed, 1, 1, "")),
			action: Settle, rule: RuleRequiredFailed},
		// the time rules for people: grace after offline
		{name: "grace after offline: seen late, the service waits the grace from first sight",
			facts:  with(service(job(graceAfterOffline)), func(f *Facts) { f.FirstSeen = now.Add(-10 * time.Minute) }),
			action: Wait, rule: RuleGraceAfterOffline, until: now.Add(20 * time.Minute), why: "grace after offline"},
		{name: "grace after offline: seen on time, due at its time",
			facts:  with(service(job(graceAfterOffline)), func(f *Facts) { f.FirstSeen = hourAgo.Add(10 * time.Second) }),
			action: Run, rule: RuleDue, attempt: 1},
		{name: "grace after offline: over, it runs",
			facts:  with(service(job(graceAfterOffline)), func(f *Facts) { f.FirstSeen = now.Add(-31 * time.Minute) }),
			action: Run, rule: RuleDue, attempt: 1},
		{name: "grace after offline: the desktop session warns for it too",
			facts:  with(session(job(graceAfterOffline, interactive)), func(f *Facts) { f.FirstSeen = now }),
			action: Wait, rule: RuleGraceAfterOffline, until: now.Add(30 * time.Minute)},
		{name: "grace after offline: capped by the expiry, so that the timeout fits before it",
			facts: with(service(job(graceAfterOffline, func(j *events.JobOffered) { j.ExpireAfter = now.Add(20 * time.Minute) })),
				func(f *Facts) { f.FirstSeen = now }),
			action: Wait, rule: RuleGraceAfterOffline, until: now.Add(19 * time.Minute)},
		// deferrals
		{name: "deferred by the user (last status): the service waits until the deferral ends",
			facts:  with(service(job(deferrable)), func(f *Facts) { f.Last = deferral(1, inAnHour) }),
			action: Wait, rule: RuleDeferred, until: inAnHour, why: "deferred by the user"},
		{name: "deferred (kept in the journal, the broker's last status since overwritten): still waits",
			facts: with(service(job(deferrable)), func(f *Facts) {
				f.Journal = &journal.Record{JobID: "J1", Phase: journal.PhaseReceived, Times: journal.Times{Deferral: 2, DeferredUntil: inAnHour}}
				f.Last = last(events.StateRejected, 1, events.RunnerService)
			}),
			action: Wait, rule: RuleDeferred, until: inAnHour},
		{name: "deferred: the desktop session waits too",
			facts:  with(session(job(deferrable, interactive)), func(f *Facts) { f.Last = deferral(1, inAnHour) }),
			action: Wait, rule: RuleDeferred, until: inAnHour},
		{name: "deferred: a user may still run it now",
			facts:  with(userPick(job(deferrable)), func(f *Facts) { f.Last = deferral(1, inAnHour) }),
			action: Run, rule: RuleDue, attempt: 1},
		{name: "deferrable, just due: the service gives the user the countdown to defer it",
			facts:  service(job(deferrable, func(j *events.JobOffered) { j.MandatoryAfter = ptr(now.Add(-time.Minute)) })),
			action: Wait, rule: RuleCountdown, until: now.Add(4 * time.Minute), why: "may defer it"},
		{name: "deferral over: the countdown again, then it runs",
			facts:  with(service(job(deferrable)), func(f *Facts) { f.Last = deferral(3, now.Add(-2*time.Minute)) }),
			action: Wait, rule: RuleCountdown, until: now.Add(3 * time.Minute)},
		{name: "deferral and countdown over (none left, or the deadline): it runs",
			facts:  with(service(job(deferrable)), func(f *Facts) { f.Last = deferral(3, now.Add(-6*time.Minute)) }),
			action: Run, rule: RuleDue, attempt: 1},
		{name: "no desktop session: a deferrable job due runs at its time, with no countdown",
			facts: with(service(job(deferrable, func(j *events.JobOffered) { j.MandatoryAfter = ptr(now.Add(-time.Minute)) })),
				func(f *Facts) { f.NoSession = true }),
			action: Run, rule: RuleDue, attempt: 1},
		{name: "no desktop session: the user's deferral does not hold the service",
			facts:  with(service(job(deferrable)), func(f *Facts) { f.Last, f.NoSession = deferral(1, inAnHour), true }),
			action: Run, rule: RuleDue, attempt: 1},
		{name: "no desktop session: the grace after offline still holds (the user may be logging in)",
			facts: with(service(job(graceAfterOffline, deferrable)), func(f *Facts) {
				f.FirstSeen, f.NoSession = now.Add(-10*time.Minute), true
			}),
			action: Wait, rule: RuleGraceAfterOffline, until: now.Add(20 * time.Minute)},
		{name: "a job that allows no deferral gets no countdown on the service",
			facts:  service(job(func(j *events.JobOffered) { j.MandatoryAfter = ptr(now.Add(-time.Minute)) })),
			action: Run, rule: RuleDue, attempt: 1},
		// maintenance windows
		{name: "window open and the timeout fits: it runs",
			facts:  with(service(job(inWindow)), func(f *Facts) { f.Windows = windows("daily 11:00-14:00 UTC") }),
			action: Run, rule: RuleDue, attempt: 1},
		{name: "window closed: waits for its opening",
			facts:  with(service(job(inWindow)), func(f *Facts) { f.Windows = windows("daily 22:00-04:00 UTC") }),
			action: Wait, rule: RuleWindow, until: time.Date(2026, 3, 1, 22, 0, 0, 0, time.UTC), why: "waiting for maintenance window (next: 2026-03-01T22:00:00Z)"},
		{name: "window open but too short for the timeout: waits for the next that fits",
			facts: with(service(job(inWindow, func(j *events.JobOffered) { j.Command.Timeout = events.Duration(2 * time.Hour) })),
				func(f *Facts) { f.Windows = windows("daily 11:00-13:00 UTC") }),
			action: Wait, rule: RuleWindow, until: time.Date(2026, 3, 2, 11, 0, 0, 0, time.UTC)},
		{name: "no window set for the client: waits until it expires",
			facts:  service(job(inWindow)),
			action: Wait, rule: RuleWindow, until: now.Add(24 * time.Hour), why: "none is set"},
		{name: "no window opens before the expiry: waits until it expires",
			facts:  with(service(job(inWindow)), func(f *Facts) { f.Windows = windows("2026-03-05 22:00-23:00 UTC") }),
			action: Wait, rule: RuleWindow, until: now.Add(24 * time.Hour), why: "opens before it expires"},
		{name: "a window binds a user's pick too",
			facts:  with(userPick(job(inWindow)), func(f *Facts) { f.Windows = windows("daily 22:00-04:00 UTC") }),
			action: Wait, rule: RuleWindow},
		{name: "daylight saving: the short night of the spring change (Europe/Berlin) does not fit 2h30, the next Sunday does",
			facts: with(service(job(inWindow, func(j *events.JobOffered) {
				j.Command.Timeout = events.Duration(150 * time.Minute)
				j.ExpireAfter = now.Add(60 * 24 * time.Hour)
			})), func(f *Facts) {
				f.Now = time.Date(2026, 3, 29, 0, 30, 0, 0, berlin)
				f.Windows = windows("Sun 01:00-04:00 Europe/Berlin")
			}),
			action: Wait, rule: RuleWindow, until: time.Date(2026, 4, 5, 1, 0, 0, 0, berlin)},
		{name: "daylight saving: the long night of the autumn change fits 3h30",
			facts: with(service(job(inWindow, func(j *events.JobOffered) {
				j.Command.Timeout = events.Duration(210 * time.Minute)
				j.ExpireAfter = now.Add(300 * 24 * time.Hour)
			})), func(f *Facts) {
				f.Now = time.Date(2026, 10, 25, 1, 0, 0, 0, berlin)
				f.Windows = windows("Sun 01:00-04:00 Europe/Berlin")
			}),
			action: Run, rule: RuleDue, attempt: 1},
		// interrupted attempts
		{name: "started elsewhere, outside the lock: decide again under it",
			facts:  with(service(job()), func(f *Facts) { f.Last = last(events.StateStarted, 1, events.RunnerDesktop) }),
			action: Run, rule: RuleDue, attempt: 2},
		{name: "started and never finished, under the lock: it counts, the next runs",
			facts:  with(service(job()), func(f *Facts) { f.Last = last(events.StateStarted, 1, events.RunnerDesktop); f.Locked = true }),
			action: Run, rule: RuleInterrupted, report: events.StateFailed, attempt: 2, why: "attempt 1 was interrupted"},
		{name: "started and never finished at the last attempt, under the lock: failed, over",
			facts:  with(service(job()), func(f *Facts) { f.Last = last(events.StateStarted, 3, events.RunnerService); f.Locked = true }),
			action: Settle, rule: RuleInterrupted, report: events.StateFailed, attempt: 3, ends: true},
		{name: "the desktop settles an interrupted last attempt too",
			facts:  with(userPick(job()), func(f *Facts) { f.Last = last(events.StateStarted, 3, events.RunnerService); f.Locked = true }),
			action: Settle, rule: RuleInterrupted, report: events.StateFailed, attempt: 3, ends: true},
		// due
		{name: "mandatory, automated, due: the service runs it",
			facts:  service(job()),
			action: Run, rule: RuleDue, attempt: 1},
		{name: "the journal counts attempts the broker has not seen yet",
			facts:  with(service(job()), func(f *Facts) { f.Journal = &journal.Record{JobID: "J1", Phase: journal.PhaseFinished, Attempt: 2} }),
			action: Run, rule: RuleDue, attempt: 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := Decide(tc.facts)
			if d.Action != tc.action || d.Rule != tc.rule {
				t.Fatalf("Decide = %s by rule %q (%s), want %s by rule %q", d.Action, d.Rule, d.Why, tc.action, tc.rule)
			}
			switch {
			case tc.report == "" && d.Report != nil:
				t.Fatalf("report %+v, want none", *d.Report)
			case tc.report != "" && d.Report == nil:
				t.Fatalf("no report, want %s", tc.report)
			case tc.report != "" && (d.Report.State != tc.report || d.Report.Ends != tc.ends || d.Report.Reason == ""):
				t.Fatalf("report %+v, want %s with a reason, ends %v", *d.Report, tc.report, tc.ends)
			}
			if tc.action == Run && d.Attempt != tc.attempt {
				t.Errorf("runs attempt %d, want %d", d.Attempt, tc.attempt)
			}
			if tc.action == Run && d.Report != nil && d.Report.Attempt != tc.attempt-1 {
				t.Errorf("settles interrupted attempt %d, want %d", d.Report.Attempt, tc.attempt-1)
			}
			if tc.action != Run && tc.report != "" && d.Report.Attempt != tc.attempt {
				t.Errorf("report of attempt %d, want %d", d.Report.Attempt, tc.attempt)
			}
			if !tc.until.IsZero() && !d.Until.Equal(tc.until) {
				t.Errorf("waits until %s, want %s", d.Until, tc.until)
			}
			if d.Why == "" || !strings.Contains(d.Why, tc.why) {
				t.Errorf("why %q, want it to say %q", d.Why, tc.why)
			}
		})
	}
}

// TestDecideIsPure: the same facts give the same decision, and deciding
// changes nothing of the facts.
func TestDecideIsPure(t *testing.T) {
	now := time.Now()
	rec := &journal.Record{JobID: "J1", Phase: journal.PhaseReceived, Cancelled: true}
	f := Facts{Face: events.RunnerService, Unattended: true, Now: now, OS: "linux", Arch: "amd64", Journal: rec,
		Job: events.JobOffered{JobID: "J1", OfferAfter: now, ExpireAfter: now.Add(time.Hour)}}
	a, b := Decide(f), Decide(f)
	if a.Action != b.Action || a.Rule != b.Rule || a.Why != b.Why || *a.Report != *b.Report {
		t.Fatalf("two decisions on the same facts differ: %+v, %+v", a, b)
	}
	if *rec != (journal.Record{JobID: "J1", Phase: journal.PhaseReceived, Cancelled: true}) || f.Cancel != nil {
		t.Fatal("Decide changed its facts")
	}
}
