package publisher_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/pcm-project/pcm/events"
	"github.com/pcm-project/pcm/publisher"
	"github.com/pcm-project/pcm/testenv"
)

// stagedJob is a job to group lab in rings 10 and 100.
func stagedJob(id string) events.JobOffered {
	return events.JobOffered{JobID: id, Command: events.CommandLine{Argv: []string{"true"}, Automated: true},
		Targets: []events.Target{{Kind: events.TargetGroup, Name: "lab"}},
		JobPlan: events.JobPlan{Rollout: &events.RolloutPlan{Rings: []events.Ring{{Percent: 10}, {Percent: 100}}, Soak: events.Duration(time.Hour)}}}
}

// TestHaltAndResume: a halt and a resume are stored on the job's halt
// subject, once each (a second halt of a halted job stores nothing), and
// copied to its targets; a job without a rollout plan is not halted; the
// controller's publisher halts under its own source and never resumes,
// publishes or cancels.
func TestHaltAndResume(t *testing.T) {
	tb := testenv.StartBroker(t)
	ctx := t.Context()
	p, err := publisher.New(tb.JS, publisher.Config{Name: "ops"})
	if err != nil {
		t.Fatal(err)
	}
	ctl, err := publisher.New(tb.JS, publisher.Config{Name: "ctl", Controller: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Publish(ctx, stagedJob("STAGED")); err != nil {
		t.Fatal(err)
	}
	plain := stagedJob("PLAIN")
	plain.Rollout = nil
	if _, err := p.Publish(ctx, plain); err != nil {
		t.Fatal(err)
	}
	stream, err := tb.JS.Stream(ctx, events.StreamJobs)
	if err != nil {
		t.Fatal(err)
	}
	last := func() (string, string) {
		t.Helper()
		m, err := stream.GetLastMsgForSubject(ctx, events.HaltSubject("STAGED"))
		if err != nil {
			t.Fatal(err)
		}
		ev, err := events.Decode(m.Header, m.Data)
		if err != nil {
			t.Fatal(err)
		}
		return ev.Type(), ev.Source()
	}
	if did, err := p.Resume(ctx, "STAGED", "nothing to resume"); err != nil || did {
		t.Fatalf("resume of a job never halted: %v, %v", did, err)
	}
	if did, err := ctl.Halt(ctx, events.JobHalted{JobID: "STAGED", Reason: "failed 2 of 4", Failed: 2, Finished: 4}); err != nil || !did {
		t.Fatalf("halt: %v, %v", did, err)
	}
	if typ, src := last(); typ != events.TypeJobHalted || src != events.ControllerSource("ctl") {
		t.Fatalf("the halt subject holds a %s by %s", typ, src)
	}
	if did, err := p.Halt(ctx, events.JobHalted{JobID: "STAGED", Reason: "again"}); err != nil || did {
		t.Fatalf("a halt of a halted job stored something: %v, %v", did, err)
	}
	if _, err := ctl.Resume(ctx, "STAGED", "controller"); !errors.Is(err, publisher.ErrController) {
		t.Fatalf("the controller resumed: %v", err)
	}
	if did, err := p.Resume(ctx, "STAGED", "fixed"); err != nil || !did {
		t.Fatalf("resume: %v, %v", did, err)
	}
	if typ, _ := last(); typ != events.TypeJobResumed {
		t.Fatalf("the halt subject holds a %s after the resume", typ)
	}
	copies, err := stream.GetLastMsgForSubject(ctx, events.JobSubject(events.Target{Kind: events.TargetGroup, Name: "lab"}))
	if err != nil {
		t.Fatal(err)
	}
	if ev, err := events.Decode(copies.Header, copies.Data); err != nil || ev.Type() != events.TypeJobResumed {
		t.Fatalf("the target's subject does not hold the resume's copy: %v", err)
	}
	info, err := stream.Info(ctx, jetstream.WithSubjectFilter(events.HaltSubject("STAGED")))
	if err != nil {
		t.Fatal(err)
	}
	if n := info.State.Subjects[events.HaltSubject("STAGED")]; n != 2 {
		t.Errorf("the halt subject holds %d events, want 2 (one halt, one resume)", n)
	}
	if _, err := p.Halt(ctx, events.JobHalted{JobID: "PLAIN"}); !errors.Is(err, publisher.ErrNotStaged) || !strings.Contains(err.Error(), "pcm cancel") {
		t.Errorf("halt of a job without rings: %v", err)
	}
	if _, err := p.Halt(ctx, events.JobHalted{JobID: "NOPE"}); !errors.Is(err, publisher.ErrJobNotFound) {
		t.Errorf("halt of an unknown job: %v", err)
	}
	if _, err := ctl.Publish(ctx, stagedJob("CTL")); !errors.Is(err, publisher.ErrController) {
		t.Errorf("the controller published: %v", err)
	}
	if err := ctl.Cancel(ctx, "STAGED", ""); !errors.Is(err, publisher.ErrController) {
		t.Errorf("the controller cancelled: %v", err)
	}
}

// TestRequiresCycle: a job whose required jobs require it back is refused
// before it is published, naming the cycle; a required job not published
// yet is fine.
func TestRequiresCycle(t *testing.T) {
	tb := testenv.StartBroker(t)
	ctx := t.Context()
	p, err := publisher.New(tb.JS, publisher.Config{Name: "ops"})
	if err != nil {
		t.Fatal(err)
	}
	job := func(id string, requires ...string) events.JobOffered {
		j := stagedJob(id)
		j.Rollout, j.Requires = nil, requires
		return j
	}
	for _, j := range []events.JobOffered{job("A", "B"), job("C", "A")} {
		if _, err := p.Publish(ctx, j); err != nil {
			t.Fatalf("publishing %s (requires %v, not published yet): %v", j.JobID, j.Requires, err)
		}
	}
	for _, tc := range []struct {
		job  events.JobOffered
		path string
	}{
		{job("B", "A"), "B -> A -> B"},
		{job("B", "C"), "B -> C -> A -> B"},
	} {
		_, err := p.Publish(ctx, tc.job)
		if !errors.Is(err, events.ErrInvalidRequires) || !errors.Is(err, publisher.ErrInvalidJob) || !strings.Contains(err.Error(), tc.path) {
			t.Errorf("publishing %s requiring %v: %v, want a cycle %s refused", tc.job.JobID, tc.job.Requires, err, tc.path)
		}
	}
	if _, err := p.Publish(ctx, job("D", "D")); !errors.Is(err, events.ErrInvalidRequires) || !strings.Contains(err.Error(), "requires[0]") {
		t.Errorf("a job requiring itself: %v", err)
	}
	stream, err := tb.JS.Stream(ctx, events.StreamJobs)
	if err != nil {
		t.Fatal(err)
	}
	info, err := stream.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != 2 {
		t.Errorf("PCM_JOBS holds %d messages, want the 2 jobs published", info.State.Msgs)
	}
}
