package events_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/pcm-project/pcm/events"
)

// TestTimeRulesValidation: each time rule of a job, valid and out of range;
// an invalid one is refused with its sentinel and a message naming the
// field and what to give.
func TestTimeRulesValidation(t *testing.T) {
	defer4h := func(j *events.JobOffered) {
		j.Deferrals = &events.Deferrals{Max: 3, Each: events.Duration(4 * time.Hour)}
	}
	cases := []struct {
		name   string
		mutate func(*events.JobOffered)
		want   error
		says   string // a part of the message
	}{
		{"deferrals: 3 of 4h ok", defer4h, nil, ""},
		{"deferrals: with a deadline ok", func(j *events.JobOffered) {
			defer4h(j)
			j.Deferrals.Deadline = ptr(j.MandatoryAfter.Add(8 * time.Hour))
		}, nil, ""},
		{"deferrals: max 0", func(j *events.JobOffered) { defer4h(j); j.Deferrals.Max = 0 }, events.ErrDeferrals, "deferrals.max is 0: give 1 to 20"},
		{"deferrals: max 21", func(j *events.JobOffered) { defer4h(j); j.Deferrals.Max = 21 }, events.ErrDeferrals, "deferrals.max is 21"},
		{"deferrals: each 30s", func(j *events.JobOffered) { defer4h(j); j.Deferrals.Each = events.Duration(30 * time.Second) }, events.ErrDeferrals, "deferrals.each is 30s: give 1m0s to 168h0m0s"},
		{"deferrals: each 8 days", func(j *events.JobOffered) { defer4h(j); j.Deferrals.Each = events.Duration(8 * 24 * time.Hour) }, events.ErrDeferrals, "deferrals.each"},
		{"deferrals: optional job", func(j *events.JobOffered) { defer4h(j); j.MandatoryAfter = nil }, events.ErrDeferrals, "give mandatory_after"},
		{"deferrals: background job", func(j *events.JobOffered) { defer4h(j); j.Command.Background = true }, events.ErrDeferrals, "drop background or deferrals"},
		{"deferrals: deadline before the mandatory time", func(j *events.JobOffered) {
			defer4h(j)
			j.Deferrals.Deadline = ptr(j.MandatoryAfter.Add(-time.Minute))
		}, events.ErrDeferrals, "deferrals.deadline"},
		{"deferrals: deadline at expiry", func(j *events.JobOffered) { defer4h(j); j.Deferrals.Deadline = ptr(j.ExpireAfter) }, events.ErrDeferrals, "before the job expires"},
		{"grace after offline: 30m ok", func(j *events.JobOffered) { j.GraceAfterOffline = events.Duration(30 * time.Minute) }, nil, ""},
		{"grace after offline: 10s", func(j *events.JobOffered) { j.GraceAfterOffline = events.Duration(10 * time.Second) }, events.ErrGraceAfterOffline, "grace_after_offline is 10s: give 1m0s to 168h0m0s"},
		{"grace after offline: negative", func(j *events.JobOffered) { j.GraceAfterOffline = events.Duration(-time.Hour) }, events.ErrGraceAfterOffline, "grace_after_offline"},
		{"grace after offline: optional job", func(j *events.JobOffered) {
			j.GraceAfterOffline = events.Duration(time.Hour)
			j.MandatoryAfter = nil
		}, events.ErrGraceAfterOffline, "give mandatory_after"},
		{"in window ok", func(j *events.JobOffered) { j.InWindow = true }, nil, ""},
		{"restart codes with may_reboot ok", func(j *events.JobOffered) {
			j.Command.MayReboot = true
			j.Command.RestartExitCodes = []int64{3010, 1641}
		}, nil, ""},
		{"restart codes without may_reboot", func(j *events.JobOffered) { j.Command.RestartExitCodes = []int64{3010} }, events.ErrRestartExitCodes, "set may_reboot"},
		{"restart code negative", func(j *events.JobOffered) {
			j.Command.MayReboot = true
			j.Command.RestartExitCodes = []int64{-1}
		}, events.ErrRestartExitCodes, "0 to 4294967295"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			j := validJob()
			tc.mutate(&j)
			err := j.Validate()
			if tc.want == nil {
				if err != nil {
					t.Fatalf("valid job refused: %v", err)
				}
				// and it survives the wire
				ev, err := events.NewJobOffered("ci", j)
				if err != nil {
					t.Fatal(err)
				}
				back, err := events.ParseJobOffered(ev)
				if err != nil {
					t.Fatalf("parsing it back: %v", err)
				}
				if back.InWindow != j.InWindow || (j.Deferrals != nil) != (back.Deferrals != nil) || back.GraceAfterOffline != j.GraceAfterOffline ||
					len(back.Command.RestartExitCodes) != len(j.Command.RestartExitCodes) {
					t.Fatalf("time rules changed on the wire: %+v, want %+v", back.TimeRules, j.TimeRules)
				}
				return
			}
			if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.says) {
				t.Fatalf("got %v, want %v saying %q", err, tc.want, tc.says)
			}
		})
	}
}

// TestTimeRulesSchema: the schema refuses what the rules refuse where it
// can say so (an unknown field of deferrals, a count out of range).
func TestTimeRulesSchema(t *testing.T) {
	for _, data := range []string{
		`{"job_id":"J","command":{"argv":["x"],"timeout":"1m"},"targets":[{"kind":"all"}],"offer_after":"2026-01-01T00:00:00Z","expire_after":"2026-01-02T00:00:00Z","deferrals":{"max":0,"each":"1h"}}`,
		`{"job_id":"J","command":{"argv":["x"],"timeout":"1m"},"targets":[{"kind":"all"}],"offer_after":"2026-01-01T00:00:00Z","expire_after":"2026-01-02T00:00:00Z","deferrals":{"max":2,"each":"1h","later":true}}`,
		`{"job_id":"J","command":{"argv":["x"],"timeout":"1m"},"targets":[{"kind":"all"}],"offer_after":"2026-01-01T00:00:00Z","expire_after":"2026-01-02T00:00:00Z","grace_after_offline":"soon"}`,
	} {
		if err := events.ValidateSchema(events.TypeJobOffered, []byte(data)); !errors.Is(err, events.ErrSchema) {
			t.Errorf("schema accepts %s: %v", data, err)
		}
	}
}

// TestGraceEnd: the grace after offline counts from first sight, applies
// only to a client that saw the job late, and never extends past the
// expiry (it ends early enough for the timeout to fit, never before first
// sight).
func TestGraceEnd(t *testing.T) {
	j := validJob() // mandatory at t0+1h, timeout 1m
	j.ExpireAfter = t0.Add(7 * 24 * time.Hour)
	j.GraceAfterOffline = events.Duration(30 * time.Minute)
	m := *j.MandatoryAfter
	for _, tc := range []struct {
		name      string
		firstSeen time.Time
		grace     time.Duration
		want      time.Time
		late      bool
	}{
		{"seen on time: no grace", m.Add(time.Second), 30 * time.Minute, time.Time{}, false},
		{"seen before its time: no grace", m.Add(-time.Hour), 30 * time.Minute, time.Time{}, false},
		{"seen a weekend late: grace from first sight", m.Add(48 * time.Hour), 30 * time.Minute, m.Add(48*time.Hour + 30*time.Minute), true},
		{"seen late, grace capped by the expiry", j.ExpireAfter.Add(-10 * time.Minute), 30 * time.Minute, j.ExpireAfter.Add(-time.Minute), true},
		{"seen late, too late for the timeout: no wait at all", j.ExpireAfter.Add(-30 * time.Second), 30 * time.Minute, j.ExpireAfter.Add(-30 * time.Second), true},
		{"no grace given", m.Add(48 * time.Hour), 0, time.Time{}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			j := j
			j.GraceAfterOffline = events.Duration(tc.grace)
			got, late := j.GraceEnd(tc.firstSeen)
			if late != tc.late || !got.Equal(tc.want) {
				t.Fatalf("GraceEnd(%s) = %s, %v; want %s, %v", tc.firstSeen, got, late, tc.want, tc.late)
			}
		})
	}
}

// TestDeferralStatus: a deferred status needs its deferral, and each
// deferral is a status of its own (its id names it).
func TestDeferralStatus(t *testing.T) {
	until := t0.Add(4 * time.Hour)
	st := events.JobStatus{JobID: "J1", ClientID: "ws-1", State: events.StateDeferred, Attempt: 1, Runner: events.RunnerDesktop, User: "ann",
		TimeRulesStatus: events.TimeRulesStatus{DeferredUntil: &until, Deferral: 2, DeferralsMax: 3}}
	if err := st.Validate(); err != nil {
		t.Fatal(err)
	}
	if st.ID() != "J1.ws-1.deferred-2.1" || st.DeferralsLeft() != 1 {
		t.Fatalf("id %s, left %d", st.ID(), st.DeferralsLeft())
	}
	ev, err := events.NewJobStatus(st)
	if err != nil {
		t.Fatal(err)
	}
	if back, err := events.ParseJobStatus(ev); err != nil || back.Deferral != 2 || !back.DeferredUntil.Equal(until) {
		t.Fatalf("parsed back %+v, %v", back, err)
	}
	bad := st
	bad.DeferredUntil = nil
	if err := bad.Validate(); !errors.Is(err, events.ErrInvalidState) {
		t.Fatalf("a deferral without its end: %v", err)
	}
	bad = st
	bad.State = events.StateFailed
	if err := bad.Validate(); !errors.Is(err, events.ErrInvalidState) {
		t.Fatalf("deferral fields on a failed status: %v", err)
	}
	if st.State.Final() || st.EndsJob(1) || events.NextAttempt(0, &st) != 1 {
		t.Fatal("a deferral is not final, ends nothing and counts no attempt")
	}
	restarted := events.JobStatus{State: events.StateRestarted, Attempt: 1}
	succeeded := events.JobStatus{State: events.StateSucceeded, Attempt: 1}
	if restarted.State.Final() || !restarted.EndsJob(3) || !restarted.Supersedes(succeeded) || succeeded.Supersedes(restarted) {
		t.Fatal("restarted is not final, ends the job and follows its attempt's success")
	}
}
