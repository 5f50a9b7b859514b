package integration_test

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/pcm-project/pcm/agent"
	"github.com/pcm-project/pcm/events"
	"github.com/pcm-project/pcm/testenv"
)

// TestNoRerunAcrossCrashes kills a real pcm agent (SIGKILL, by the test-only
// fault hook) at each dangerous point of a run, restarts it, and checks the
// command ran once and exactly one final status is stored, and the offer is
// acked.
func TestNoRerunAcrossCrashes(t *testing.T) {
	env := testenv.StartBroker(t)
	p := newPublisher(t, env.JS)
	for _, point := range []agent.FaultPoint{agent.FaultAfterStart, agent.FaultAfterFinish, agent.FaultAfterPublish} {
		t.Run(string(point), func(t *testing.T) {
			client := "crash-" + string(point)
			dir := t.TempDir()
			enroll(t, env.JS, client)
			args := []string{"agent", "--url", env.URL, "--client-id", client, "--state-dir", filepath.Join(dir, "state"), "--lease", "2s"}
			first := startPCM(t, dir, []string{"PCM_TEST_FAULT_POINT=" + string(point)}, args...)
			marker := filepath.Join(dir, "marker")
			id := publish(t, p, job(appendTo(marker), toClient(client)))
			first.waitExit(t, 15*time.Second)
			startPCM(t, dir, nil, args...)
			sts := waitFinal(t, env.JS, client, id, 15*time.Second)
			waitAcked(t, env.JS, client, 3*testAckWait+5*time.Second)
			testenv.WaitFor(t, 5*time.Second, "the command's marker line", func() bool { return markerLines(t, marker) >= 1 })
			sts = readStatuses(t, env.JS, client, id)
			if n := markerLines(t, marker); n != 1 {
				t.Fatalf("the command ran %d times", n)
			}
			fin := finals(sts)
			if len(fin) != 1 {
				t.Fatalf("want exactly one final status, got %+v", sts)
			}
			want := events.StateSucceeded
			if point == agent.FaultAfterStart {
				want = events.StateFailed // the agent cannot know how a run it did not see end went
				if fin[0].Reason != "agent restarted during the run" {
					t.Fatalf("reason %q", fin[0].Reason)
				}
			}
			if fin[0].State != want {
				t.Fatalf("final state %s, want %s", fin[0].State, want)
			}
		})
	}
}

// TestNothingLostOffline stops the broker while a job runs; the job finishes
// and its final status waits in the journal; the agent restarts while the
// broker is still down; when the broker returns, the status appears once and
// the offer is acked.
func TestNothingLostOffline(t *testing.T) {
	env := testenv.StartBroker(t)
	p := newPublisher(t, env.JS)
	enroll(t, env.JS, "offline")
	dir := t.TempDir()
	state := filepath.Join(dir, "state")
	a := startAgent(t, env.URL, "offline", state)
	a.waitReady(t)
	gate, marker := filepath.Join(dir, "go"), filepath.Join(dir, "marker")
	id := publish(t, p, job([]string{"sh", "-c", "while [ ! -f " + gate + " ]; do sleep 0.02; done; echo ran >> " + marker}, toClient("offline")))
	a.waitStats(t, 10*time.Second, "the job running", func(s agent.Stats) bool { return s.Started > 0 })

	env.Stop()
	touch(t, gate)
	a.waitStats(t, 10*time.Second, "the final status waiting in the journal", func(s agent.Stats) bool { return s.StatusWaits > 0 })
	a.stop()
	startAgent(t, env.URL, "offline", state) // restarted while the broker is down
	env.Restart(t)

	sts := waitFinal(t, env.JS, "offline", id, 20*time.Second)
	waitAcked(t, env.JS, "offline", 10*time.Second)
	sts = readStatuses(t, env.JS, "offline", id)
	if fin := finals(sts); len(fin) != 1 || fin[0].State != events.StateSucceeded {
		t.Fatalf("want one succeeded status, got %+v", sts)
	}
	if markerLines(t, marker) != 1 {
		t.Fatal("the job did not run exactly once")
	}
}
