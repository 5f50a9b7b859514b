package console

import (
	"testing"
	"time"

	"github.com/pcm-project/pcm/events"
	"github.com/pcm-project/pcm/fleet"
)

// TestJobSummaryStates: the jobs list tells apart the clients that
// reported and, of those that did not, the offline, the pending (their
// agent received the offer) and those that did not receive it.
func TestJobSummaryStates(t *testing.T) {
	now := time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC)
	job := events.JobOffered{JobID: "j1", Targets: []events.Target{{Kind: events.TargetGroup, Name: "g"}},
		OfferAfter: now.Add(-time.Hour), ExpireAfter: now.Add(time.Hour)}
	x := newJobIndex()
	x.offered(job, "ci", "pcm.jobs.group.g", 10, now.Add(-time.Hour))
	enr := func(c string, delivered uint64) fleet.Enrollment {
		return fleet.Enrollment{Client: c, Filters: []string{"pcm.jobs.group.g"}, Delivered: delivered}
	}
	alive := events.AgentInfo{LastSeen: now, Heartbeat: events.Duration(30 * time.Second)}
	x.setFleet(map[string]fleet.Enrollment{
		"ok": enr("ok", 10), "bad": enr("bad", 10), "run": enr("run", 10),
		"held": enr("held", 12), "late": enr("late", 5), "gone": enr("gone", 10),
	}, map[string]events.AgentInfo{"ok": alive, "bad": alive, "run": alive, "held": alive, "late": alive,
		"gone": {LastSeen: now.Add(-time.Hour), Heartbeat: events.Duration(30 * time.Second)}})
	for c, st := range map[string]events.State{"ok": events.StateSucceeded, "bad": events.StateTimedOut, "run": events.StateStarted} {
		x.status(events.JobStatus{JobID: "j1", ClientID: c, State: st, Attempt: 1, MaxAttempts: 1})
	}
	got := x.list(now, 0)
	if len(got) != 1 {
		t.Fatalf("%d jobs listed, want 1", len(got))
	}
	want := map[string]int{StateSucceeded: 1, StateFailed: 1, StateRunning: 1, StatePending: 1, StateNotReceived: 1, StateOffline: 1}
	for s, n := range want {
		if got[0].Counts[s] != n {
			t.Errorf("counts %v, want %v", got[0].Counts, want)
			break
		}
	}
	if got[0].Total != 6 || !got[0].Live {
		t.Errorf("total %d live %v, want 6 and live", got[0].Total, got[0].Live)
	}
	// Halted: whoever has not reported waits for the resume.
	x.jobs["j1"].halted = true
	x.jobs["j1"].changed()
	if h := x.list(now, 0)[0].Counts[StateHalted]; h != 3 {
		t.Errorf("a halted job counts %d clients halted, want 3", h)
	}
}

// TestStatusBeforeItsOffer: a status read before its job's offer (the two
// streams are followed apart: after a broker restart the statuses of a job
// offered during it can come first) counts once the offer comes.
func TestStatusBeforeItsOffer(t *testing.T) {
	now := time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC)
	x := newJobIndex()
	if e := x.status(events.JobStatus{JobID: "j2", ClientID: "c1", State: events.StateSucceeded, Attempt: 1, MaxAttempts: 1}); e != nil {
		t.Fatalf("a status of an unknown job made an entry")
	}
	job := events.JobOffered{JobID: "j2", Targets: []events.Target{{Kind: events.TargetClient, Name: "c1"}},
		OfferAfter: now.Add(-time.Hour), ExpireAfter: now.Add(time.Hour)}
	x.offered(job, "ci", "pcm.jobs.client.c1", 3, now.Add(-time.Minute))
	got := x.list(now, 0)
	if len(got) != 1 || got[0].Counts[StateSucceeded] != 1 || got[0].Total != 1 {
		t.Fatalf("after the offer: %+v, want c1 succeeded", got)
	}
	if len(x.early) != 0 || x.nEarly != 0 {
		t.Errorf("%d early statuses kept after their offer came", x.nEarly)
	}
}
