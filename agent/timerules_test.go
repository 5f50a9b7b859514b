package agent

import (
	"strings"
	"testing"
	"time"

	"github.com/pcm-project/pcm/agent/journal"
	"github.com/pcm-project/pcm/events"
)

// TestDeferralOffer is the decision table of the user's deferrals: one
// left, none left, the deadline passed, not mandatory yet, a deferral
// shortened by the deadline, the count kept by the journal.
func TestDeferralOffer(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	mandatory, deadline := now.Add(-time.Hour), now.Add(2*time.Hour)
	job := func(withDeadline bool) events.JobOffered {
		j := events.JobOffered{JobID: "J1", OfferAfter: mandatory, MandatoryAfter: &mandatory, ExpireAfter: now.Add(24 * time.Hour),
			Command: events.CommandLine{Argv: []string{"true"}, Automated: true, Timeout: events.Duration(time.Minute)}}
		j.Deferrals = &events.Deferrals{Max: 3, Each: events.Duration(4 * time.Hour)}
		if withDeadline {
			j.Deferrals.Deadline = &deadline
		}
		return j
	}
	deferredStatus := func(n int) *events.JobStatus {
		until := now.Add(-time.Minute)
		return &events.JobStatus{JobID: "J1", State: events.StateDeferred, Attempt: 1, Runner: events.RunnerDesktop,
			TimeRulesStatus: events.TimeRulesStatus{Deferral: n, DeferralsMax: 3, DeferredUntil: &until}}
	}
	for _, tc := range []struct {
		name    string
		f       Facts
		allowed bool
		number  int
		left    int
		until   time.Time
		why     string
	}{
		{name: "due, none used: the first of three", f: Facts{Job: job(false), Now: now},
			allowed: true, number: 1, left: 2, until: now.Add(4 * time.Hour)},
		{name: "one left", f: Facts{Job: job(false), Now: now, Last: deferredStatus(2)},
			allowed: true, number: 3, left: 0, until: now.Add(4 * time.Hour)},
		{name: "exhausted: three used", f: Facts{Job: job(false), Now: now, Last: deferredStatus(3)},
			why: "no deferral left: it was deferred 3 times"},
		{name: "exhausted, as the journal keeps it", f: Facts{Job: job(false), Now: now,
			Journal: &journal.Record{JobID: "J1", Times: journal.Times{Deferral: 3, DeferredUntil: now.Add(-time.Minute)}}},
			why: "no deferral left"},
		{name: "the deadline shortens a deferral", f: Facts{Job: job(true), Now: now},
			allowed: true, number: 1, left: 2, until: deadline},
		{name: "deadline passed", f: Facts{Job: job(true), Now: deadline},
			why: "its deadline 2026-03-01T14:00:00Z has passed"},
		{name: "not mandatory yet", f: Facts{Job: job(false), Now: mandatory.Add(-time.Second)},
			why: "not mandatory before"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			off := deferralOffer(tc.f)
			if off.Allowed != tc.allowed || !strings.Contains(off.Why, tc.why) {
				t.Fatalf("offer %+v, want allowed %v saying %q", off, tc.allowed, tc.why)
			}
			if tc.allowed && (off.Number != tc.number || off.Left != tc.left || !off.Until.Equal(tc.until)) {
				t.Fatalf("offer %+v, want deferral %d until %s, %d left", off, tc.number, tc.until, tc.left)
			}
		})
	}
}
