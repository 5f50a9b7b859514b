package integration_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/pcm-project/pcm/agent"
	"github.com/pcm-project/pcm/events"
	"github.com/pcm-project/pcm/testenv"
)

// TestOneFinalWhenTheLeaseLapsesDuringARun: a face whose lease lapses
// while its attempt runs (it was stalled, or the broker was away longer
// than the lease) is still alive and still reports the attempt; meanwhile
// the other face takes the lock, finds the attempt started and never
// finished, and settles it as interrupted. The attempt must keep exactly
// one final status, whichever is stored first: here the service's
// settlement, so the desktop's late final is not stored, and the desktop
// says the job is already done.
func TestOneFinalWhenTheLeaseLapsesDuringARun(t *testing.T) {
	env := testenv.StartBroker(t)
	p := newPublisher(t, env.JS)
	const client = "lapse"
	enroll(t, env.JS, client)
	dir := t.TempDir()
	running, proceed := filepath.Join(dir, "running"), filepath.Join(dir, "proceed")
	id := publish(t, p, job([]string{"sh", "-c", `touch ` + running + `; while [ ! -e ` + proceed + ` ]; do sleep 0.02; done`}, toClient(client)))

	// The desktop runs the job (the service is not up yet); its run waits
	// for proceed.
	d := newTestDesktop(t, env.URL, client, nil)
	type result struct {
		st  events.JobStatus
		err error
	}
	ran := make(chan result, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		st, err := d.Run(ctx, id)
		ran <- result{st, err}
	}()
	testenv.WaitFor(t, 15*time.Second, "the desktop's run to start", func() bool { _, err := os.Stat(running); return err == nil })

	// Its lease lapses: the key goes, as its TTL would take it.
	if err := locksKV(t, env.JS).Delete(context.Background(), client); err != nil {
		t.Fatal(err)
	}
	// The service takes the lock and settles the attempt it finds started
	// and never finished.
	a := startAgent(t, env.URL, client, filepath.Join(dir, "svc"))
	a.waitReady(t)
	fin := waitFinal(t, env.JS, client, id, 15*time.Second)
	if f := finals(fin); len(f) != 1 || f[0].Runner != events.RunnerService || f[0].State != events.StateFailed {
		t.Fatalf("the service did not settle the interrupted attempt: %+v", fin)
	}
	waitAcked(t, env.JS, client, 15*time.Second)

	// The desktop's run ends now: its final would be the attempt's second.
	if err := os.WriteFile(proceed, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	var r result
	select {
	case r = <-ran:
	case <-time.After(30 * time.Second):
		t.Fatal("the desktop's run did not return")
	}
	sts := readStatuses(t, env.JS, client, id)
	if f := finals(sts); len(f) != 1 {
		t.Fatalf("attempt 1 has %d final statuses: %+v", len(f), sts)
	}
	if !errors.Is(r.err, agent.ErrAlreadyDone) {
		t.Fatalf("the desktop's run returned %+v, %v; want %v", r.st, r.err, agent.ErrAlreadyDone)
	}
}

// TestOneFinalWhenTheServiceReportsAfterItsLeaseLapsed: the other way
// round, through the service's outbox. The service has run a job and
// journaled its final status, and stalls before publishing it (as one
// killed after-finish, or stopped, would); its lease lapses; the desktop
// takes the lock, finds the attempt started and never finished, and
// settles it as interrupted. When the service goes on, its final is not
// stored (the attempt has one), it counts it superseded, and the offer is
// acked.
func TestOneFinalWhenTheServiceReportsAfterItsLeaseLapsed(t *testing.T) {
	env := testenv.StartBroker(t)
	p := newPublisher(t, env.JS)
	const client = "lapse-svc"
	enroll(t, env.JS, client)
	stalled, goOn := make(chan struct{}), make(chan struct{})
	var once sync.Once
	a := startAgent(t, env.URL, client, t.TempDir(), func(c *agent.Config) {
		c.Fault = func(pt agent.FaultPoint) {
			if pt == agent.FaultAfterFinish {
				once.Do(func() { close(stalled); <-goOn })
			}
		}
	})
	a.waitReady(t)
	id := publish(t, p, job([]string{"true"}, toClient(client)))
	select {
	case <-stalled:
	case <-time.After(15 * time.Second):
		t.Fatal("the service did not run the job")
	}
	testenv.WaitFor(t, 10*time.Second, "the service's started status to be stored", func() bool {
		sts := readStatuses(t, env.JS, client, id)
		return len(sts) > 0 && sts[len(sts)-1].State == events.StateStarted
	})
	// Its lease lapses: the key goes, as its TTL would take it.
	if err := locksKV(t, env.JS).Delete(context.Background(), client); err != nil {
		t.Fatal(err)
	}
	d := newTestDesktop(t, env.URL, client, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := d.Run(ctx, id); !errors.Is(err, agent.ErrAlreadyDone) {
		t.Fatalf("the desktop's run: %v; want the interrupted attempt settled (%v)", err, agent.ErrAlreadyDone)
	}
	if f := finals(readStatuses(t, env.JS, client, id)); len(f) != 1 || f[0].Runner != events.RunnerDesktop || f[0].State != events.StateFailed {
		t.Fatalf("the desktop did not settle the interrupted attempt: %+v", f)
	}

	close(goOn)
	a.waitStats(t, 15*time.Second, "the service's final superseded", func(s agent.Stats) bool { return s.Superseded == 1 })
	waitAcked(t, env.JS, client, 15*time.Second)
	if sts := readStatuses(t, env.JS, client, id); len(finals(sts)) != 1 {
		t.Fatalf("attempt 1 has %d final statuses: %+v", len(finals(sts)), sts)
	}
}
