package events_test

import (
	"errors"
	"testing"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"

	"github.com/pcm-project/pcm/events"
)

// TestReadHalt is the table of what the last event on a job's halt
// subject means to an agent: a halt counts when a publisher or the
// controller signed it, a resume only when a publisher did; an untrusted
// halt is refused, an untrusted resume leaves the job halted.
func TestReadHalt(t *testing.T) {
	pubKP, pubKey := newUser(t)
	ctlKP, ctlKey := newUser(t)
	strangerKP, _ := newUser(t)
	targets := []events.Target{{Kind: events.TargetAll}}
	halt := func(source string) event.Event {
		ev, err := events.NewJobHalted(source, events.JobHalted{JobID: "J1", Reason: "failed 2 of 4 finished", Targets: targets, Failed: 2, Finished: 4})
		if err != nil {
			t.Fatal(err)
		}
		return ev
	}
	resume := func() event.Event {
		ev, err := events.NewJobResumed("ops", events.JobResumed{JobID: "J1", Targets: targets})
		if err != nil {
			t.Fatal(err)
		}
		return ev
	}
	signed := func(ev event.Event, kp nkeys.KeyPair) event.Event {
		if err := events.Sign(&ev, kp); err != nil {
			t.Fatal(err)
		}
		return ev
	}
	tampered := signed(halt(events.ControllerSource("ctl")), ctlKP)
	if err := tampered.SetData(events.ContentTypeJSON, []byte(`{"job_id":"J1","targets":[{"kind":"all"}],"reason":"forged"}`)); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name       string
		ev         event.Event
		publishers []string
		halted     bool
		want       error // the error's sentinel; nil: none
	}{
		{"halt by the controller's key", signed(halt(events.ControllerSource("ctl")), ctlKP), []string{pubKey}, true, nil},
		{"halt by a publisher's key", signed(halt(events.PublisherSource("ops")), pubKP), []string{pubKey}, true, nil},
		{"unsigned halt", halt(events.ControllerSource("ctl")), []string{pubKey}, false, events.ErrUnsigned},
		{"halt by another key", signed(halt(events.ControllerSource("ctl")), strangerKP), []string{pubKey}, false, events.ErrUntrustedKey},
		{"halt altered after signing", tampered, []string{pubKey}, false, events.ErrBadSignature},
		{"unsigned halt, open agent", halt(events.ControllerSource("ctl")), nil, true, nil},
		{"resume by a publisher's key", signed(resume(), pubKP), []string{pubKey}, false, nil},
		{"resume by the controller's key", signed(resume(), ctlKP), []string{pubKey}, true, events.ErrUntrustedKey},
		{"unsigned resume", resume(), []string{pubKey}, true, events.ErrUnsigned},
		{"unsigned resume, open agent", resume(), nil, false, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			msg, err := events.NewMsg(events.HaltSubject("J1"), tc.ev, "")
			if err != nil {
				t.Fatal(err)
			}
			h, err := events.ReadHalt(msg.Header, msg.Data, "J1", tc.publishers, []string{ctlKey})
			if (h != nil) != tc.halted {
				t.Errorf("halted = %v, want %v (err %v)", h != nil, tc.halted, err)
			}
			if tc.want == nil && err != nil || tc.want != nil && !errors.Is(err, tc.want) {
				t.Errorf("err = %v, want %v", err, tc.want)
			}
		})
	}
	t.Run("another job's halt", func(t *testing.T) {
		msg, _ := events.NewMsg(events.HaltSubject("J2"), halt(events.ControllerSource("ctl")), "")
		if h, err := events.ReadHalt(msg.Header, msg.Data, "J2", nil, nil); h != nil || !errors.Is(err, events.ErrMalformed) {
			t.Errorf("got %v, %v", h, err)
		}
	})
	t.Run("an offer on the halt subject", func(t *testing.T) {
		ev, _ := events.NewJobOffered("ci", validJob())
		msg, _ := events.NewMsg(events.HaltSubject("J1"), ev, "")
		if h, err := events.ReadHalt(msg.Header, msg.Data, "J1", nil, nil); h != nil || !errors.Is(err, events.ErrUnexpectedType) {
			t.Errorf("got %v, %v", h, err)
		}
	})
	t.Run("junk", func(t *testing.T) {
		if h, err := events.ReadHalt(nats.Header{}, []byte("junk"), "J1", nil, nil); h != nil || err == nil {
			t.Errorf("got %v, %v", h, err)
		}
	})
	if _, err := events.NewJobHalted("/pcm/agent/ws-1", events.JobHalted{JobID: "J1", Targets: targets}); !errors.Is(err, events.ErrMissingAttribute) {
		t.Errorf("a halt with an agent's source: %v", err)
	}
	if _, err := events.NewJobHalted(events.ControllerSource("ctl"), events.JobHalted{JobID: "J1", Targets: targets, Failed: 3, Finished: 2}); !errors.Is(err, events.ErrInvalidState) {
		t.Errorf("a halt with more failed than finished: %v", err)
	}
}

// TestRolloutTally: which clients count for a halt threshold, and when it
// passes.
func TestRolloutTally(t *testing.T) {
	st := func(s events.State, attempt int, reason string) events.JobStatus {
		return events.JobStatus{JobID: "J1", ClientID: "c", State: s, Attempt: attempt, Reason: reason}
	}
	var tally events.RolloutTally
	for _, s := range []events.JobStatus{
		st(events.StateSucceeded, 1, ""), st(events.StateFailed, 2, ""), st(events.StateTimedOut, 2, ""),
		st(events.StateFailed, 1, ""), // attempts left: not finished
		st(events.StateNotApplicable, 1, events.ReasonAlreadyPresent), st(events.StateCancelled, 1, ""),
		st(events.StateExpired, 1, ""), st(events.StateStarted, 1, ""), st(events.StateRejected, 1, ""),
	} {
		tally.Add(s, 2)
	}
	if tally != (events.RolloutTally{Finished: 3, Failed: 2}) {
		t.Fatalf("tally %+v, want 3 finished, 2 failed", tally)
	}
	p := plan(0, 100)
	if p.Halts(tally) {
		t.Error("a plan without halt_at halted")
	}
	for _, tc := range []struct {
		at               float64
		min              int
		failed, finished int
		halts            bool
	}{
		{5, 0, 1, 20, false}, // 5% is not above 5%
		{5, 0, 2, 20, true},
		{5, 21, 2, 20, false}, // too few finished
		{0, 0, 1, 1, true},
		{0, 0, 0, 10, false},
		{50, 4, 3, 4, true},
	} {
		p.HaltAt, p.HaltMin = ptr(tc.at), tc.min
		if got := p.Halts(events.RolloutTally{Failed: tc.failed, Finished: tc.finished}); got != tc.halts {
			t.Errorf("halt_at %v%% halt_min %d, %d of %d failed: halts = %v, want %v", tc.at, tc.min, tc.failed, tc.finished, got, tc.halts)
		}
	}
}

// TestSupersedes: the latest status of a job on a client, whatever the
// order the statuses are read in.
func TestSupersedes(t *testing.T) {
	st := func(s events.State, attempt int) events.JobStatus {
		return events.JobStatus{State: s, Attempt: attempt}
	}
	for _, tc := range []struct {
		s, cur events.JobStatus
		want   bool
	}{
		{st(events.StateFailed, 2), st(events.StateFailed, 1), true},
		{st(events.StateStarted, 2), st(events.StateFailed, 1), true},
		{st(events.StateFailed, 1), st(events.StateStarted, 2), false},
		{st(events.StateSucceeded, 1), st(events.StateStarted, 1), true},
		{st(events.StateStarted, 1), st(events.StateSucceeded, 1), false},
		{st(events.StateStarted, 1), st(events.StateStarted, 1), true},
	} {
		if got := tc.s.Supersedes(tc.cur); got != tc.want {
			t.Errorf("%s/%d over %s/%d: %v, want %v", tc.s.State, tc.s.Attempt, tc.cur.State, tc.cur.Attempt, got, tc.want)
		}
	}
}
