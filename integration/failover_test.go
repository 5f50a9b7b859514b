package integration_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/pcm-project/pcm/agent"
	"github.com/pcm-project/pcm/agent/runner"
	"github.com/pcm-project/pcm/events"
	"github.com/pcm-project/pcm/testenv"
)

// countingRunner runs nothing and counts runs per job and client: the
// in-process runner behind the same interface as the real one.
type countingRunner struct {
	mu   sync.Mutex
	runs map[string]int
}

func (c *countingRunner) Run(ctx context.Context, spec runner.Spec, started func(int)) (runner.Result, error) {
	c.mu.Lock()
	c.runs[spec.JobID+"/"+spec.ClientID]++
	c.mu.Unlock()
	now := time.Now()
	if started != nil {
		started(0)
	}
	return runner.Result{StartedAt: now, FinishedAt: time.Now()}, nil
}

func (c *countingRunner) count(job, client string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.runs[job+"/"+client]
}

// TestClusterFailover rolls 200 jobs out to 20 agents on a 3-node cluster
// with R3 streams while the leader of PCM_JOBS, then the leader of
// PCM_STATUS, is stopped and later restarted: every job runs once on every
// agent, no status is lost, and a full audit returns exactly what the
// streams hold.
func TestClusterFailover(t *testing.T) {
	if testing.Short() {
		t.Skip("cluster failover takes a while")
	}
	const agents, jobs = 20, 200
	c := testenv.StartCluster(t, 3)
	_, js := c.Connect(t)
	urls := strings.Join(c.URLs(), ",")
	runs := &countingRunner{runs: map[string]int{}}
	clients := make([]string, agents)
	running := make([]*runningAgent, agents)
	for i := range clients {
		clients[i] = fmt.Sprintf("node%02d", i)
		enroll(t, js, clients[i], "roll")
		a := startAgent(t, urls, clients[i], t.TempDir(), func(cfg *agent.Config) { cfg.Runner = runs })
		a.waitReady(t)
		running[i] = a
	}
	p := newPublisher(t, js)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	ids := make(chan string, jobs)
	published := make(chan int, jobs)
	go func() {
		for i := 0; i < jobs; i++ {
			id, err := publishRetrying(ctx, p, job([]string{"true"}, toGroup("roll")))
			if err != nil {
				t.Errorf("publish %d: %v", i, err)
				break
			}
			ids <- id
			published <- i
		}
		close(ids)
		close(published)
	}()
	done := 0 // jobs published so far
	waitPublished := func(n int) {
		for done < n {
			i, ok := <-published
			if !ok {
				return
			}
			done = i + 1
		}
	}
	for k, stream := range []string{events.StreamJobs, events.StreamStatus} {
		waitPublished((k + 1) * jobs / 3)
		leader := c.StreamLeader(t, stream)
		t.Logf("stopping node %d, leader of %s", leader, stream)
		c.Stop(leader)
		waitPublished(min(done+jobs/10, jobs)) // the rollout goes on without it
		c.Restart(t, leader)
	}
	var all []string
	for id := range ids {
		all = append(all, id)
	}
	if len(all) != jobs {
		t.Fatalf("published %d jobs, want %d", len(all), jobs)
	}
	defer func() {
		if !t.Failed() {
			return
		}
		for i, cl := range clients {
			a, p, err := consumerBacklog(js, cl)
			t.Logf("%s: ack pending %d, pending %d, err %v", cl, a, p, err)
			if a != 0 || p != 0 {
				all := running[i].logs.All()
				for _, e := range all[max(0, len(all)-60):] {
					if !strings.Contains(e.Message, "job finished") && !strings.Contains(e.Message, "running job") {
						t.Logf("  %s %s %s %v", e.Time.Format("15:04:05.000"), e.Level, e.Message, e.ContextMap())
					}
				}
				if m := lockTrace(t, js, cl); m != nil {
					t.Logf("lock key: seq %d at %s header %v data %s", m.Sequence, m.Time.Format("15:04:05.000"), m.Header, m.Data)
				}
				break
			}
		}
	}()
	testenv.WaitFor(t, 2*time.Minute, "every offer acked on every agent", func() bool {
		for _, cl := range clients {
			if a, p, err := consumerBacklog(js, cl); err != nil || a != 0 || p != 0 {
				return false
			}
		}
		return true
	})
	statuses := readAllStatuses(t, js)
	for _, cl := range clients {
		for _, id := range all {
			fin := finals(statuses[[2]string{cl, id}])
			if len(fin) != 1 || fin[0].State != events.StateSucceeded {
				t.Fatalf("job %s on %s: finals %+v", id, cl, fin)
			}
			if n := runs.count(id, cl); n != 1 {
				t.Fatalf("job %s ran %d times on %s", id, n, cl)
			}
		}
	}
	// The history is whole: a full audit through the cluster returns
	// exactly what the streams hold.
	n := checkAuditWhole(t, urls, js)
	t.Logf("a full audit printed the %d events the streams hold", n)
}

// TestPullHeartbeatFollowsTheCluster: an idle agent's pull request asks
// the broker for a heartbeat every 55 s on a single server, but every 10 s
// on a cluster member, where a pull request sent as its consumer's leader
// stops is lost without a reconnection and only missing heartbeats tell
// (TestClusterFailover waited 110 s for one). The pull requests are read
// off the wire.
func TestPullHeartbeatFollowsTheCluster(t *testing.T) {
	testenv.SameInBothModes(t)
	t.Parallel()
	heartbeatOf := func(t *testing.T, url string, spy *nats.Conn, js jetstream.JetStream) time.Duration {
		reqs := make(chan *nats.Msg, 16)
		sub, err := spy.ChanSubscribe("$JS.API.CONSUMER.MSG.NEXT."+events.StreamJobs+"."+events.ConsumerName("idle"), reqs)
		if err != nil {
			t.Fatal(err)
		}
		defer sub.Unsubscribe()
		if err := spy.Flush(); err != nil {
			t.Fatal(err)
		}
		enroll(t, js, "idle", "lab")
		startAgent(t, url, "idle", t.TempDir()).waitReady(t)
		select {
		case m := <-reqs:
			var req struct {
				Heartbeat time.Duration `json:"idle_heartbeat"`
			}
			if err := json.Unmarshal(m.Data, &req); err != nil {
				t.Fatalf("pull request %q: %v", m.Data, err)
			}
			return req.Heartbeat
		case <-time.After(15 * time.Second):
			t.Fatal("no pull request from the agent within 15 s")
		}
		return 0
	}
	t.Run("single server", func(t *testing.T) {
		env := testenv.StartBroker(t)
		if hb := heartbeatOf(t, env.URL, env.NC, env.JS); hb != 55*time.Second {
			t.Fatalf("pull heartbeat %s on a single server, want 55s", hb)
		}
	})
	t.Run("cluster", func(t *testing.T) {
		c := testenv.StartCluster(t, 3)
		nc, js := c.Connect(t)
		if hb := heartbeatOf(t, strings.Join(c.URLs(), ","), nc, js); hb != 10*time.Second {
			t.Fatalf("pull heartbeat %s on a cluster, want 10s", hb)
		}
	})
}
