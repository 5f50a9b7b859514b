package controller_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"

	"github.com/pcm-project/pcm/controller"
	"github.com/pcm-project/pcm/events"
	"github.com/pcm-project/pcm/publisher"
	"github.com/pcm-project/pcm/testenv"
)

// running is a controller run by a test.
type running struct {
	c    *controller.Controller
	stop context.CancelFunc
	done chan error
	once sync.Once
	t    *testing.T
}

func start(t *testing.T, js jetstream.JetStream, name string, signer nkeys.KeyPair) *running {
	t.Helper()
	c, err := controller.New(js, controller.Config{Name: name, Signer: signer, Lease: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{c: c, stop: cancel, done: make(chan error, 1), t: t}
	go func() { r.done <- c.Run(ctx) }()
	t.Cleanup(r.halt)
	return r
}

// halt stops the controller and waits for Run to return.
func (r *running) halt() {
	r.once.Do(func() {
		r.stop()
		if err := <-r.done; err != nil {
			r.t.Errorf("the controller's Run: %v", err)
		}
	})
}

// report stores a status of job on client, as its agent would.
func report(t *testing.T, js jetstream.JetStream, job, client string, state events.State) {
	t.Helper()
	st := events.JobStatus{JobID: job, ClientID: client, State: state, Attempt: 1, MaxAttempts: 1, Runner: events.RunnerService}
	ev, err := events.NewJobStatus(st)
	if err != nil {
		t.Fatal(err)
	}
	msg, err := events.NewMsg(events.StatusSubject(client, job), ev, ev.ID())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.PublishMsg(t.Context(), msg); err != nil {
		t.Fatal(err)
	}
}

// haltsOf returns the events stored on job's halt subject, in order.
func haltsOf(t *testing.T, js jetstream.JetStream, job string) []string {
	t.Helper()
	s, err := js.Stream(t.Context(), events.StreamJobs)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(t.Context(), jetstream.WithSubjectFilter(events.HaltSubject(job)))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for seq := uint64(1); seq <= info.State.LastSeq; seq++ {
		m, err := s.GetMsg(t.Context(), seq)
		if err != nil || m.Subject != events.HaltSubject(job) {
			continue
		}
		ev, err := events.Decode(m.Header, m.Data)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, ev.Type()+" by "+events.MakerOf(ev))
	}
	return out
}

// TestControllerHaltsOnce: one of two controllers leads; it halts a staged
// rollout once its failures pass the threshold, signed by its key; the
// other takes over when it stops and, reading the history, halts nothing
// twice; after a resume only the statuses stored since count.
func TestControllerHaltsOnce(t *testing.T) {
	env := testenv.StartBroker(t)
	js := env.JS
	signer, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	key, _ := signer.PublicKey()
	ops, err := publisher.New(js, publisher.Config{Name: "ops"})
	if err != nil {
		t.Fatal(err)
	}
	haltAt := 25.0
	job, err := ops.Publish(t.Context(), events.JobOffered{JobID: "STAGED", Command: events.CommandLine{Argv: []string{"true"}, Automated: true},
		Targets: []events.Target{{Kind: events.TargetAll}},
		JobPlan: events.JobPlan{Rollout: &events.RolloutPlan{Rings: []events.Ring{{Percent: 50}, {Percent: 100}}, Soak: events.Duration(time.Hour),
			HaltAt: &haltAt, HaltMin: 4}}})
	if err != nil {
		t.Fatal(err)
	}
	a := start(t, js, "ctl-a", signer)
	testenv.CheckFor(t, 10*time.Second, 10*time.Millisecond, func() error {
		if s := a.c.Stats(); !s.Leading || s.Watched != 1 {
			return fmt.Errorf("the first controller: %+v, want leading and watching 1 rollout", s)
		}
		return nil
	})
	b := start(t, js, "ctl-b", signer)
	for i, state := range []events.State{events.StateSucceeded, events.StateSucceeded, events.StateSucceeded, events.StateFailed} {
		report(t, js, job.JobID, fmt.Sprintf("c%d", i), state)
	}
	// 1 of 4 failed: 25%, not above 25%.
	report(t, js, job.JobID, "c4", events.StateFailed) // 2 of 5: 40%
	testenv.CheckFor(t, 10*time.Second, 10*time.Millisecond, func() error {
		if s := a.c.Stats(); s.Halts != 1 {
			return fmt.Errorf("the leader has halted %d rollouts", s.Halts)
		}
		return nil
	})
	if got := haltsOf(t, js, job.JobID); len(got) != 1 || got[0] != events.TypeJobHalted+" by controller ctl-a" {
		t.Fatalf("halt subject: %v", got)
	}
	m, err := js.Stream(t.Context(), events.StreamJobs)
	if err != nil {
		t.Fatal(err)
	}
	last, err := m.GetLastMsgForSubject(t.Context(), events.HaltSubject(job.JobID))
	if err != nil {
		t.Fatal(err)
	}
	if h, err := events.ReadHalt(last.Header, last.Data, job.JobID, []string{"UNUSEDPUBLISHERKEY"}, []string{key}); h == nil || err != nil || h.Failed != 2 || h.Finished != 5 {
		t.Fatalf("the stored halt, read by an agent trusting the controller's key: %+v, %v", h, err)
	}
	if s := b.c.Stats(); s.Leading || s.Halts != 0 {
		t.Fatalf("the second controller: %+v, want waiting", s)
	}
	a.halt()
	testenv.CheckFor(t, 10*time.Second, 10*time.Millisecond, func() error {
		if s := b.c.Stats(); !s.Leading || s.Watched != 1 {
			return fmt.Errorf("the second controller: %+v, want leading and watching 1 rollout", s)
		}
		return nil
	})
	// It has read the history: the rollout is halted already.
	report(t, js, job.JobID, "c5", events.StateFailed)
	if did, err := ops.Resume(t.Context(), job.JobID, "fixed"); err != nil || !did {
		t.Fatalf("resume: %v %v", did, err)
	}
	for i := range 3 {
		report(t, js, job.JobID, fmt.Sprintf("d%d", i), events.StateSucceeded)
	}
	report(t, js, job.JobID, "d3", events.StateFailed) // 1 of 4 since the resume: 25%
	report(t, js, job.JobID, "d4", events.StateSucceeded)
	report(t, js, job.JobID, "d5", events.StateFailed) // 2 of 6: 33%: the halt's counts say it counted only these
	testenv.CheckFor(t, 10*time.Second, 10*time.Millisecond, func() error {
		if s := b.c.Stats(); s.Halts != 1 {
			return fmt.Errorf("the second controller has halted %d rollouts", s.Halts)
		}
		return nil
	})
	want := []string{events.TypeJobHalted + " by controller ctl-a", events.TypeJobResumed + " by ops", events.TypeJobHalted + " by controller ctl-b"}
	if got := haltsOf(t, js, job.JobID); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("halt subject: %v, want %v", got, want)
	}
	last, err = m.GetLastMsgForSubject(t.Context(), events.HaltSubject(job.JobID))
	if err != nil {
		t.Fatal(err)
	}
	if h, err := events.ReadHalt(last.Header, last.Data, job.JobID, nil, nil); h == nil || err != nil || h.Failed != 2 || h.Finished != 6 {
		t.Fatalf("the second halt: %+v, %v; want 2 of 6 failed (the statuses since the resume)", h, err)
	}
}

// TestControllerCountsStatusesHeardFirst: a status the controller reads
// before the offer of its rollout (its two followers do not keep the
// streams' order between them) still counts once the offer arrives.
func TestControllerCountsStatusesHeardFirst(t *testing.T) {
	env := testenv.StartBroker(t)
	js := env.JS
	c := start(t, js, "ctl", nil)
	testenv.CheckFor(t, 10*time.Second, 10*time.Millisecond, func() error {
		if s := c.c.Stats(); !s.Leading {
			return fmt.Errorf("the controller: %+v, want leading", s)
		}
		return nil
	})
	report(t, js, "EARLY", "c0", events.StateFailed)
	testenv.CheckFor(t, 10*time.Second, 10*time.Millisecond, func() error {
		if s := c.c.Stats(); s.Statuses != 1 {
			return fmt.Errorf("the controller has read %d statuses, want 1", s.Statuses)
		}
		return nil
	})
	ops, err := publisher.New(js, publisher.Config{Name: "ops"})
	if err != nil {
		t.Fatal(err)
	}
	haltAt := 0.0
	if _, err := ops.Publish(t.Context(), events.JobOffered{JobID: "EARLY", Command: events.CommandLine{Argv: []string{"true"}, Automated: true},
		Targets: []events.Target{{Kind: events.TargetAll}},
		JobPlan: events.JobPlan{Rollout: &events.RolloutPlan{Rings: []events.Ring{{Percent: 100}}, HaltAt: &haltAt}}}); err != nil {
		t.Fatal(err)
	}
	testenv.CheckFor(t, 10*time.Second, 10*time.Millisecond, func() error {
		if s := c.c.Stats(); s.Halts != 1 {
			return fmt.Errorf("the controller: %+v, want the rollout halted (1 of 1 failed)", s)
		}
		return nil
	})
}
