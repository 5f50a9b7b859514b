package agent

import (
	"testing"

	"github.com/pcm-project/pcm/events"
)

// TestSettles: which last status on a job's subject means an attempt
// already has its final status (storeFinal then stores none).
func TestSettles(t *testing.T) {
	st := func(state events.State, attempt int) events.JobStatus {
		return events.JobStatus{State: state, Attempt: attempt}
	}
	for _, tc := range []struct {
		name    string
		last    events.JobStatus
		attempt int
		want    bool
	}{
		{"its own start", st(events.StateStarted, 1), 1, false},
		{"a final of the attempt", st(events.StateFailed, 1), 1, true},
		{"a success of the attempt", st(events.StateSucceeded, 2), 2, true},
		{"a restart after the attempt's final", st(events.StateRestarted, 1), 1, true},
		{"a final of the attempt before", st(events.StateFailed, 1), 2, false},
		{"a start of a later attempt", st(events.StateStarted, 3), 2, true},
		{"a deferral numbering the attempt to come", st(events.StateDeferred, 2), 1, false},
		{"a rejection", st(events.StateRejected, 1), 1, false},
	} {
		if got := settles(tc.last, tc.attempt); got != tc.want {
			t.Errorf("%s: settles(%s of attempt %d, attempt %d) = %v, want %v", tc.name, tc.last.State, tc.last.Attempt, tc.attempt, got, tc.want)
		}
	}
}
