package controller

import (
	"strings"
	"testing"
	"time"

	"github.com/pcm-project/pcm/events"
)

// TestRolloutsDue is the controller's model: which staged rollouts it
// halts, from the statuses it has read.
func TestRolloutsDue(t *testing.T) {
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	at := func(d time.Duration) time.Time { return t0.Add(d) }
	halt := 20.0
	job := events.JobOffered{JobID: "J1", OfferAfter: t0, ExpireAfter: at(24 * time.Hour), MaxAttempts: 2,
		JobPlan: events.JobPlan{Rollout: &events.RolloutPlan{Rings: []events.Ring{{Percent: 10}, {Percent: 50}, {Percent: 100}},
			Soak: events.Duration(time.Hour), HaltAt: &halt, HaltMin: 4}}}
	st := func(client string, s events.State, attempt int) events.JobStatus {
		return events.JobStatus{JobID: "J1", ClientID: client, State: s, Attempt: attempt}
	}
	r := newRollouts()
	r.offer(job, t0)
	plain := job
	plain.JobID, plain.Rollout = "J2", nil
	r.offer(plain, t0)
	noThreshold := job
	noThreshold.JobID, noThreshold.Rollout = "J3", &events.RolloutPlan{Rings: []events.Ring{{Percent: 100}}}
	r.offer(noThreshold, t0)
	if len(r.jobs) != 1 || !r.watches("J1") {
		t.Fatalf("watches %v, want J1 only (a staged rollout with a threshold)", r.jobs)
	}
	r.status(st("c1", events.StateSucceeded, 1), at(time.Minute))
	r.status(st("c2", events.StateFailed, 2), at(time.Minute))
	r.status(st("c3", events.StateFailed, 1), at(time.Minute)) // will retry: not finished
	r.status(st("c4", events.StateSucceeded, 1), at(time.Minute))
	if got := r.due(at(time.Minute)); len(got) != 0 {
		t.Fatalf("halted with 3 finished (halt_min 4): %+v", got)
	}
	r.status(st("c3", events.StateStarted, 2), at(2*time.Minute))
	r.status(st("c3", events.StateFailed, 1), at(2*time.Minute)) // read late: the started attempt 2 stays
	r.status(st("c5", events.StateNotApplicable, 1), at(2*time.Minute))
	if got := r.due(at(2 * time.Minute)); len(got) != 0 {
		t.Fatalf("halted with 3 finished: %+v", got)
	}
	r.status(st("c3", events.StateTimedOut, 2), at(3*time.Minute))
	got := r.due(at(90 * time.Minute))
	if len(got) != 1 || got[0].JobID != "J1" || got[0].Failed != 2 || got[0].Finished != 4 {
		t.Fatalf("due %+v, want J1 halted with 2 of 4 failed", got)
	}
	if want := "failed on 2 of 4 finished clients (50% > halt_at 20%) with ring 2 of 3 open"; got[0].Reason != want {
		t.Errorf("reason %q, want %q", got[0].Reason, want)
	}
	if again := r.due(at(91 * time.Minute)); len(again) != 0 {
		t.Fatalf("asked twice before the halt was stored: %+v", again)
	}
	r.retry("J1")
	if again := r.due(at(91 * time.Minute)); len(again) != 1 {
		t.Fatal("a failed halt is not asked for again")
	}
	r.halt("J1", true, at(92*time.Minute))
	if again := r.due(at(93 * time.Minute)); len(again) != 0 {
		t.Fatalf("a halted rollout halted again: %+v", again)
	}
	// Resumed: only what is stored after the resume counts.
	r.halt("J1", false, at(100*time.Minute))
	if again := r.due(at(101 * time.Minute)); len(again) != 0 {
		t.Fatalf("halted again on the statuses before its resume: %+v", again)
	}
	for _, c := range []string{"d1", "d2", "d3"} {
		r.status(st(c, events.StateSucceeded, 1), at(110*time.Minute))
	}
	r.status(st("d4", events.StateFailed, 2), at(110*time.Minute))
	got = r.due(at(125 * time.Minute))
	if len(got) != 1 || got[0].Failed != 1 || got[0].Finished != 4 || !strings.Contains(got[0].Reason, "ring 3 of 3") {
		t.Fatalf("after the resume: due %+v, want 1 of 4 failed, ring 3", got)
	}
	if tm, ok := r.oldest(); !ok || !tm.Equal(t0) {
		t.Errorf("oldest %v %v", tm, ok)
	}
	r.cancelled("J1")
	if r.watches("J1") {
		t.Error("a cancelled rollout is still watched")
	}
	r.offer(job, t0)
	r.prune(at(24 * time.Hour))
	if r.watches("J1") {
		t.Error("an expired rollout is still watched")
	}
}
