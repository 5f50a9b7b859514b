package events_test

import (
	"testing"
	"time"

	"github.com/pcm-project/pcm/events"
)

func TestEndsJob(t *testing.T) {
	st := func(s events.State, attempt int) events.JobStatus {
		return events.JobStatus{State: s, Attempt: attempt}
	}
	for _, tc := range []struct {
		name        string
		st          events.JobStatus
		maxAttempts int
		want        bool
	}{
		{"started", st(events.StateStarted, 1), 1, false},
		{"succeeded", st(events.StateSucceeded, 1), 3, true},
		{"failed with attempts left", st(events.StateFailed, 1), 3, false},
		{"failed at the last attempt", st(events.StateFailed, 3), 3, true},
		{"timed out with attempts left", st(events.StateTimedOut, 2), 3, false},
		{"failed, default max attempts", st(events.StateFailed, 1), 0, true},
		{"cancelled", st(events.StateCancelled, 1), 3, true},
		{"expired", st(events.StateExpired, 1), 3, true},
		{"not applicable", st(events.StateNotApplicable, 1), 3, true},
		{"rejected names an event, not a run", st(events.StateRejected, 1), 1, false},
		{"unknown state", st("paused", 1), 1, false},
	} {
		if got := tc.st.EndsJob(tc.maxAttempts); got != tc.want {
			t.Errorf("%s: EndsJob(%d) = %v, want %v", tc.name, tc.maxAttempts, got, tc.want)
		}
	}
}

func TestFailure(t *testing.T) {
	want := map[events.State]bool{events.StateFailed: true, events.StateTimedOut: true, events.StateExpired: true}
	for _, s := range events.States {
		if got := s.Failure(); got != want[s] {
			t.Errorf("%s.Failure() = %v, want %v", s, got, want[s])
		}
	}
}

func TestNextAttempt(t *testing.T) {
	st := func(s events.State, attempt int) *events.JobStatus {
		return &events.JobStatus{State: s, Attempt: attempt}
	}
	for _, tc := range []struct {
		name      string
		journaled int
		last      *events.JobStatus
		want      int
	}{
		{"nothing known", 0, nil, 1},
		{"journal ahead of the broker", 2, st(events.StateFailed, 1), 3},
		{"broker ahead of the journal (the other face ran)", 1, st(events.StateFailed, 2), 3},
		{"an attempt started elsewhere counts", 0, st(events.StateStarted, 1), 2},
		{"a rejection counts no attempt", 0, st(events.StateRejected, 1), 1},
	} {
		if got := events.NextAttempt(tc.journaled, tc.last); got != tc.want {
			t.Errorf("%s: NextAttempt = %d, want %d", tc.name, got, tc.want)
		}
	}
}

func TestWithDefaults(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	past, later := now.Add(-time.Minute), now.Add(30*24*time.Hour)

	j := events.JobOffered{Command: events.CommandLine{Background: true}}.WithDefaults(now)
	if !j.OfferAfter.Equal(now) || !j.ExpireAfter.Equal(now.Add(events.DefaultExpiry)) ||
		time.Duration(j.Command.Timeout) != events.DefaultTimeout || !j.Command.Automated || j.JobID != "" {
		t.Errorf("defaults of an empty job: %+v", j)
	}
	if j := (events.JobOffered{MandatoryAfter: &past}).WithDefaults(now); !j.OfferAfter.Equal(past) {
		t.Errorf("a job mandatory a moment ago is offered from %s, want %s", j.OfferAfter, past)
	}
	if j := (events.JobOffered{MandatoryAfter: &later}).WithDefaults(now); !j.ExpireAfter.Equal(later.Add(events.DefaultExpiry)) {
		t.Errorf("a job mandatory in a month expires at %s, want a week after that", j.ExpireAfter)
	}
	given := events.JobOffered{OfferAfter: later, ExpireAfter: later.Add(time.Hour), Command: events.CommandLine{Timeout: events.Duration(time.Minute)}}
	if j := given.WithDefaults(now); !j.OfferAfter.Equal(given.OfferAfter) || !j.ExpireAfter.Equal(given.ExpireAfter) || j.Command.Timeout != given.Command.Timeout {
		t.Errorf("WithDefaults changed given fields: %+v", j)
	}
	if j := (events.JobOffered{}).WithDefaults(now.In(time.FixedZone("x", 3600))); j.OfferAfter.Location() != time.UTC {
		t.Errorf("offer_after in %s, want UTC", j.OfferAfter.Location())
	}
}
