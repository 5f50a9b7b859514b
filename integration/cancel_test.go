package integration_test

import (
	"context"
	"errors"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/pcm-project/pcm/agent"
	"github.com/pcm-project/pcm/events"
	"github.com/pcm-project/pcm/testenv"
)

// cancelledOnly waits until job is settled on client and acked, and checks
// that the only final status is cancelled (with the reason) and that the
// command never ran (its marker file is absent).
func cancelledOnly(t *testing.T, env *testenv.Broker, client, job, reason, marker string) {
	t.Helper()
	sts := waitFinal(t, env.JS, client, job, 20*time.Second)
	waitAcked(t, env.JS, client, 10*time.Second)
	sts = readStatuses(t, env.JS, client, job)
	if len(sts) != 1 || sts[0].State != events.StateCancelled || !strings.Contains(sts[0].Reason, reason) {
		t.Fatalf("want one cancelled status saying %q, got %+v", reason, sts)
	}
	if n := markerLines(t, marker); n != 0 {
		t.Fatalf("the cancelled job ran %d times", n)
	}
}

// storeCancellation stores an unsigned cancellation of job, from
// publisher, on the job's cancellation subject only.
func storeCancellation(t *testing.T, env *testenv.Broker, publisher, job, reason string, targets ...events.Target) {
	t.Helper()
	ev, err := events.NewJobCancelled(publisher, events.JobCancelled{JobID: job, Reason: reason, Targets: targets})
	if err != nil {
		t.Fatal(err)
	}
	msg, err := events.NewMsg(events.CancelSubject(job), ev, "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := env.JS.PublishMsg(context.Background(), msg); err != nil {
		t.Fatal(err)
	}
}

// TestCancellationHolds: a job cancelled for a client before it started
// there never starts there, whatever the order in which the offer and the
// cancellation reach the client (design contract, invariant 7).
func TestCancellationHolds(t *testing.T) {
	env := testenv.StartBroker(t)
	p := newPublisher(t, env.JS)

	// The report, with real processes: the client's agent is
	// stopped, a job is published for it and cancelled, the agent starts.
	t.Run("cancelled while the client is offline", func(t *testing.T) {
		dir := t.TempDir()
		marker := filepath.Join(dir, "marker")
		enroll(t, env.JS, "off1")
		args := []string{"agent", "--url", env.URL, "--client-id", "off1", "--state-dir", filepath.Join(dir, "state"), "--lease", "2s"}
		a := startPCM(t, dir, nil, args...)
		waitPulling(t, env.JS, "off1")
		if err := a.stopGracefully(t, 10*time.Second); err != nil {
			t.Fatalf("stopping the agent: %v", err)
		}
		out, errOut, code := runPCM(t, nil, "publish", "--url", env.URL, "--client", "off1", "--", "sh", "-c", "echo RAN-CANCELLED-JOB >> "+marker)
		if code != 0 {
			t.Fatalf("pcm publish: exit %d: %s", code, errOut)
		}
		id := strings.TrimSpace(out)
		if _, errOut, code := runPCM(t, nil, "cancel", id, "--url", env.URL, "--reason", "stop it"); code != 0 {
			t.Fatalf("pcm cancel: exit %d: %s", code, errOut)
		}
		startPCM(t, dir, nil, args...)
		cancelledOnly(t, env, "off1", id, "stop it", marker)
	})

	t.Run("a client enrolled after the cancel", func(t *testing.T) {
		marker := filepath.Join(t.TempDir(), "marker")
		id := publish(t, p, job(appendTo(marker), toGroup("latecomers")))
		if err := p.Cancel(context.Background(), id, "withdrawn"); err != nil {
			t.Fatal(err)
		}
		enroll(t, env.JS, "late1", "latecomers") // the consumer delivers the group's offer, then its cancellation
		startAgent(t, env.URL, "late1", t.TempDir()).waitReady(t)
		cancelledOnly(t, env, "late1", id, "withdrawn", marker)
	})

	// busy starts client's agent running a long job: the next offers wait
	// in its consumer until the returned release.
	busy := func(t *testing.T, client string) (dir string, release func()) {
		a, dir := enrolledAgent(t, env, client)
		gate := filepath.Join(dir, "gate")
		long := publish(t, p, job([]string{"sh", "-c", "while [ ! -f " + gate + " ]; do sleep 0.02; done"}, toClient(client)))
		a.waitStats(t, 10*time.Second, "the agent running the long job", func(s agent.Stats) bool { return s.Started > 0 })
		return dir, func() {
			touch(t, gate)
			waitFinal(t, env.JS, client, long, 10*time.Second)
		}
	}

	t.Run("the cancellation stored before the offer is delivered", func(t *testing.T) {
		dir, release := busy(t, "busy1")
		marker := filepath.Join(dir, "marker")
		id := publish(t, p, job(appendTo(marker), toClient("busy1")))
		if err := p.Cancel(context.Background(), id, "too late"); err != nil {
			t.Fatal(err)
		}
		release()
		cancelledOnly(t, env, "busy1", id, "too late", marker)
	})

	t.Run("the cancellation arrives while the job waits for its mandatory time", func(t *testing.T) {
		a, dir := enrolledAgent(t, env, "wait1")
		marker := filepath.Join(dir, "marker")
		j := job(appendTo(marker), toClient("wait1"))
		at := time.Now().Add(2 * time.Second).UTC()
		j.MandatoryAfter = &at
		id := publish(t, p, j)
		a.waitStats(t, 5*time.Second, "the agent holding the job", func(s agent.Stats) bool { return s.Held > 0 })
		if err := p.Cancel(context.Background(), id, "not now"); err != nil {
			t.Fatal(err)
		}
		cancelledOnly(t, env, "wait1", id, "not now", marker)
		// Past its mandatory time, still nothing ran: the offer is acked.
		testenv.WaitFor(t, 10*time.Second, "the mandatory time passed", func() bool { return time.Now().After(at.Add(500 * time.Millisecond)) })
		if n := markerLines(t, marker); n != 0 || len(readStatuses(t, env.JS, "wait1", id)) != 1 {
			t.Fatalf("the cancelled job ran %d times after its mandatory time", n)
		}
	})

	t.Run("restarted between the offer and the cancellation", func(t *testing.T) {
		dir := t.TempDir()
		state, marker := filepath.Join(dir, "state"), filepath.Join(dir, "marker")
		enroll(t, env.JS, "rest1")
		a := startAgent(t, env.URL, "rest1", state)
		a.waitReady(t)
		j := job(appendTo(marker), toClient("rest1"))
		at := time.Now().Add(time.Hour).UTC()
		j.MandatoryAfter = &at
		id := publish(t, p, j)
		a.waitStats(t, 5*time.Second, "the agent holding the job", func(s agent.Stats) bool { return s.Held > 0 })
		a.stop()
		if err := p.Cancel(context.Background(), id, "changed plans"); err != nil {
			t.Fatal(err)
		}
		startAgent(t, env.URL, "rest1", state).waitReady(t)
		cancelledOnly(t, env, "rest1", id, "changed plans", marker)
	})

	// A publisher that died after storing the cancellation on the job's
	// cancellation subject and before its target copies: both faces still
	// never run the job.
	t.Run("stored only on the job's cancellation subject", func(t *testing.T) {
		dir, release := busy(t, "only1")
		marker := filepath.Join(dir, "marker")
		mandatory := publish(t, p, job(appendTo(marker), toClient("only1")))
		opt := job(appendTo(marker), toClient("only1"))
		opt.MandatoryAfter = nil
		optional := publish(t, p, opt)
		for _, id := range []string{mandatory, optional} {
			storeCancellation(t, env, "test", id, "half published", toClient("only1"))
		}
		d := newTestDesktop(t, env.URL, "only1", nil)
		list, err := d.List(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		for _, j := range list {
			if j.JobID == optional || j.JobID == mandatory {
				t.Fatalf("the desktop lists the cancelled job %s", j.JobID)
			}
		}
		if _, err := d.Run(context.Background(), optional); !errors.Is(err, agent.ErrNotRunnable) || !strings.Contains(err.Error(), "half published") {
			t.Fatalf("desktop run of a cancelled job: %v, want %v saying why", err, agent.ErrNotRunnable)
		}
		release()
		sts := waitFinal(t, env.JS, "only1", mandatory, 10*time.Second)
		if len(sts) != 1 || sts[0].State != events.StateCancelled {
			t.Fatalf("want the mandatory job cancelled, got %+v", sts)
		}
		sts = waitFinal(t, env.JS, "only1", optional, 10*time.Second)
		if len(sts) != 1 || sts[0].State != events.StateCancelled {
			t.Fatalf("want the optional job cancelled, got %+v", sts)
		}
		waitAcked(t, env.JS, "only1", 10*time.Second)
		if n := markerLines(t, marker); n != 0 {
			t.Fatalf("a cancelled job ran %d times", n)
		}
	})

	// A cancellation a publisher did not sign is not the publisher's word:
	// an agent that trusts keys ignores it.
	t.Run("an untrusted cancellation does not cancel", func(t *testing.T) {
		key := newSigningKey(t)
		signed := signedPublisher(t, env.JS, key)
		_, dir := enrolledAgent(t, env, "sig1", trusting(key))
		marker := filepath.Join(dir, "marker")
		j := job(appendTo(marker), toClient("sig1"))
		at := time.Now().Add(time.Second).UTC()
		j.MandatoryAfter = &at
		id := publish(t, signed, j)
		storeCancellation(t, env, "mallory", id, "forged", toClient("sig1"))
		sts := waitFinal(t, env.JS, "sig1", id, 10*time.Second)
		if fin := finals(sts); len(fin) != 1 || fin[0].State != events.StateSucceeded || markerLines(t, marker) != 1 {
			t.Fatalf("a forged cancellation stopped a trusted job: %+v", sts)
		}
	})
}

// TestCancelCLI: pcm cancel stores the cancellation on the job's
// cancellation subject before its targets, and says so.
func TestCancelCLI(t *testing.T) {
	env := testenv.StartBroker(t)
	p := newPublisher(t, env.JS)
	id := publish(t, p, job([]string{"true"}, toGroup("g1"), toClient("c9")))
	out, errOut, code := runPCM(t, nil, "cancel", id, "--url", env.URL, "--reason", "because")
	if code != 0 || !regexp.MustCompile(`^cancelled `+id+`\n$`).MatchString(out) {
		t.Fatalf("pcm cancel: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	var subjects []string
	for _, e := range storedHistory(t, env.JS) {
		if e.typ == events.TypeJobCancelled {
			subjects = append(subjects, e.subject)
		}
	}
	want := []string{events.CancelSubject(id), "pcm.jobs.group.g1", "pcm.jobs.client.c9"}
	if strings.Join(subjects, " ") != strings.Join(want, " ") {
		t.Fatalf("the cancellation is stored on %v, want %v in that order", subjects, want)
	}
}
