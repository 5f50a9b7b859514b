package integration_test

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/pcm-project/pcm/agent"
	"github.com/pcm-project/pcm/events"
	"github.com/pcm-project/pcm/testenv"
)

// TestJobFlow runs the job-flow acceptance cases against one broker, one
// client per case.
func TestJobFlow(t *testing.T) {
	env := testenv.StartBroker(t)
	p := newPublisher(t, env.JS)

	t.Run("mandatory now background job runs once and is acked", func(t *testing.T) {
		_, dir := enrolledAgent(t, env, "bg")
		marker := filepath.Join(dir, "marker")
		j := job([]string{"sh", "-c", "echo ran >> " + marker + "; echo hello from the job"}, toClient("bg"))
		j.Command.Background = true
		id := publish(t, p, j)
		sts := waitFinal(t, env.JS, "bg", id, 10*time.Second)
		waitAcked(t, env.JS, "bg", 5*time.Second)
		if len(sts) != 2 || sts[0].State != events.StateStarted || sts[1].State != events.StateSucceeded {
			t.Fatalf("want started then succeeded, got %+v", sts)
		}
		fin := sts[1]
		if fin.ExitCode == nil || *fin.ExitCode != 0 || !strings.Contains(fin.OutputTail, "hello from the job") {
			t.Fatalf("final status lacks exit code or output tail: %+v", fin)
		}
		if fin.Runner != events.RunnerService || fin.LockRevision == 0 || fin.Attempt != 1 || fin.StartedAt == nil || fin.FinishedAt == nil {
			t.Fatalf("final status fields: %+v", fin)
		}
		if n := markerLines(t, marker); n != 1 {
			t.Fatalf("ran %d times", n)
		}
	})

	t.Run("mandatory in 2s runs at its time, not before", func(t *testing.T) {
		a, _ := enrolledAgent(t, env, "later")
		j := job([]string{"true"}, toClient("later"))
		at := time.Now().Add(2 * time.Second).UTC()
		j.MandatoryAfter = &at
		id := publish(t, p, j)
		sts := waitFinal(t, env.JS, "later", id, 10*time.Second)
		fin := finals(sts)[0]
		if fin.State != events.StateSucceeded {
			t.Fatalf("state %s", fin.State)
		}
		if fin.StartedAt.Before(at) {
			t.Fatalf("started at %s, before its mandatory time %s", fin.StartedAt, at)
		}
		if late := fin.StartedAt.Sub(at); late > 2*time.Second {
			t.Fatalf("started %s after its mandatory time", late)
		}
		if a.svc.Stats().Held == 0 {
			t.Fatal("the agent did not hold the job until its time")
		}
	})

	t.Run("a job that expired before delivery gets expired and never runs", func(t *testing.T) {
		dir := t.TempDir()
		enroll(t, env.JS, "exp")
		marker := filepath.Join(dir, "marker")
		j := job(appendTo(marker), toClient("exp"))
		j.ExpireAfter = time.Now().Add(time.Second).UTC()
		id := publish(t, p, j)
		testenv.WaitFor(t, 5*time.Second, "the job to expire while no agent runs", func() bool { return time.Now().After(j.ExpireAfter) })
		a := startAgent(t, env.URL, "exp", dir)
		a.waitReady(t)
		sts := waitFinal(t, env.JS, "exp", id, 10*time.Second)
		if len(sts) != 1 || sts[0].State != events.StateExpired {
			t.Fatalf("want one expired status, got %+v", sts)
		}
		waitAcked(t, env.JS, "exp", 5*time.Second)
		if markerLines(t, marker) != 0 {
			t.Fatal("an expired job ran")
		}
	})

	t.Run("a job for another platform is not applicable", func(t *testing.T) {
		a, dir := enrolledAgent(t, env, "plat")
		marker := filepath.Join(dir, "marker")
		j := job(appendTo(marker), toClient("plat"))
		j.Command.Platforms = []string{"plan9/*"}
		id := publish(t, p, j)
		sts := waitFinal(t, env.JS, "plat", id, 10*time.Second)
		if len(sts) != 1 || sts[0].State != events.StateNotApplicable || !strings.Contains(sts[0].Reason, "plan9") {
			t.Fatalf("want not_applicable naming the platform, got %+v", sts)
		}
		waitAcked(t, env.JS, "plat", 5*time.Second)
		if markerLines(t, marker) != 0 || a.svc.Stats().Filtered != 1 {
			t.Fatalf("filtered job ran, or was not counted as filtered: %+v", a.svc.Stats())
		}
	})

	t.Run("a cancelled job gets cancelled and never runs", func(t *testing.T) {
		a, dir := enrolledAgent(t, env, "canc")
		marker := filepath.Join(dir, "marker")
		j := job(appendTo(marker), toClient("canc"))
		at := time.Now().Add(time.Hour).UTC()
		j.MandatoryAfter = &at
		id := publish(t, p, j)
		a.waitStats(t, 5*time.Second, "the agent holding the job", func(s agent.Stats) bool { return s.Held > 0 })
		if err := p.Cancel(context.Background(), id, "wrong version"); err != nil {
			t.Fatal(err)
		}
		sts := waitFinal(t, env.JS, "canc", id, 10*time.Second)
		if len(sts) != 1 || sts[0].State != events.StateCancelled || !strings.Contains(sts[0].Reason, "wrong version") {
			t.Fatalf("want cancelled, got %+v", sts)
		}
		waitAcked(t, env.JS, "canc", 5*time.Second)
		if markerLines(t, marker) != 0 {
			t.Fatal("a cancelled job ran")
		}
	})

	t.Run("a timeout kills the process tree and reports timed_out", func(t *testing.T) {
		_, dir := enrolledAgent(t, env, "slow")
		pidFile := filepath.Join(dir, "child.pid")
		j := job([]string{"sh", "-c", "sleep 30 & echo $! > " + pidFile + "; wait"}, toClient("slow"))
		j.Command.Timeout = events.Duration(time.Second)
		id := publish(t, p, j)
		sts := waitFinal(t, env.JS, "slow", id, 10*time.Second)
		if fin := finals(sts); len(fin) != 1 || fin[0].State != events.StateTimedOut {
			t.Fatalf("want timed_out, got %+v", sts)
		}
		b, err := os.ReadFile(pidFile)
		if err != nil {
			t.Fatal(err)
		}
		child, _ := strconv.Atoi(strings.TrimSpace(string(b)))
		testenv.WaitFor(t, 5*time.Second, "the sleeping child gone", func() bool { return processGone(child) })
	})

	t.Run("a failing command with max_attempts 3 runs 3 times then fails", func(t *testing.T) {
		_, dir := enrolledAgent(t, env, "fail")
		marker := filepath.Join(dir, "marker")
		j := job([]string{"sh", "-c", "echo ran >> " + marker + "; exit 3"}, toClient("fail"))
		j.MaxAttempts = 3
		id := publish(t, p, j)
		testenv.WaitFor(t, 10*time.Second, "three failed attempts", func() bool {
			return len(finals(readStatuses(t, env.JS, "fail", id))) == 3
		})
		waitAcked(t, env.JS, "fail", 5*time.Second)
		fin := finals(readStatuses(t, env.JS, "fail", id))
		for i, s := range fin {
			if s.State != events.StateFailed || s.Attempt != i+1 || *s.ExitCode != 3 {
				t.Fatalf("attempt %d: %+v", i+1, s)
			}
		}
		if n := markerLines(t, marker); n != 3 {
			t.Fatalf("ran %d times, want 3", n)
		}
	})

	t.Run("a client enrolled after the job was published to its group runs it", func(t *testing.T) {
		dir := t.TempDir()
		marker := filepath.Join(dir, "marker")
		id := publish(t, p, job(appendTo(marker), toGroup("newcomers")))
		enroll(t, env.JS, "joiner", "newcomers")
		a := startAgent(t, env.URL, "joiner", dir)
		a.waitReady(t)
		sts := waitFinal(t, env.JS, "joiner", id, 10*time.Second)
		if fin := finals(sts); fin[0].State != events.StateSucceeded || markerLines(t, marker) != 1 {
			t.Fatalf("late joiner: %+v", sts)
		}
	})

	t.Run("an offer for another client is refused even if the consumer was re-filtered", func(t *testing.T) {
		dir := t.TempDir()
		enroll(t, env.JS, "victim")
		// What a hijacker with consumer rights would do: add another
		// client's subject to this client's consumer.
		ctx := context.Background()
		cons, err := env.JS.Consumer(ctx, events.StreamJobs, events.ConsumerName("victim"))
		if err != nil {
			t.Fatal(err)
		}
		cfg := cons.CachedInfo().Config
		cfg.FilterSubjects = append(cfg.FilterSubjects, events.JobSubject(toClient("someone-else")))
		if _, err := env.JS.UpdateConsumer(ctx, events.StreamJobs, cfg); err != nil {
			t.Fatal(err)
		}
		a := startAgent(t, env.URL, "victim", dir)
		a.waitReady(t)
		marker := filepath.Join(dir, "marker")
		id := publish(t, p, job(appendTo(marker), toClient("someone-else")))
		sts := waitFinal(t, env.JS, "victim", id, 10*time.Second)
		if len(sts) != 1 || sts[0].State != events.StateRejected {
			t.Fatalf("want rejected, got %+v", sts)
		}
		waitAcked(t, env.JS, "victim", 5*time.Second)
		if markerLines(t, marker) != 0 {
			t.Fatal("the agent ran another client's job")
		}
	})

	t.Run("a malformed event is refused and a valid job after it runs", func(t *testing.T) {
		a, dir := enrolledAgent(t, env, "bad")
		msg := nats.NewMsg(events.JobSubject(toClient("bad")))
		msg.Data = []byte(`{"specversion":"1.0","id":"x","type":"pcm.job.offered.v1"`)
		if _, err := env.JS.PublishMsg(context.Background(), msg); err != nil {
			t.Fatal(err)
		}
		marker := filepath.Join(dir, "marker")
		id := publish(t, p, job(appendTo(marker), toClient("bad")))
		waitFinal(t, env.JS, "bad", id, 10*time.Second)
		waitAcked(t, env.JS, "bad", 5*time.Second)
		if markerLines(t, marker) != 1 {
			t.Fatal("the valid job did not run once")
		}
		if n := a.svc.Stats().Refused; n != 1 {
			t.Fatalf("the agent refused %d events, want the malformed one", n)
		}
	})
}

// processGone reports whether pid no longer runs (a zombie counts as gone).
func processGone(pid int) bool {
	if err := syscall.Kill(pid, 0); err != nil {
		return true
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return true
	}
	fields := strings.Fields(string(b))
	return len(fields) > 2 && fields[2] == "Z"
}
