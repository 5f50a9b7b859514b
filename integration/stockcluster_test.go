package integration_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/pcm-project/pcm/events"
	"github.com/pcm-project/pcm/internal/offers"
	"github.com/pcm-project/pcm/testenv"
)

// stockEnv turns the stock-cluster test on: it builds nats-server and
// runs separate processes for a few minutes, too heavy for every go test.
const stockEnv = "PCM_STOCK_CLUSTER"

// TestStockCluster runs pcm on a cluster of separate nats-server processes
// of the version go.mod pins, configured with docs/examples/stock-cluster
// (open mode), plus a fourth member without JetStream: provisioned by pcm
// broker provision, 10 real pcm agent processes run 150 jobs while the
// leaders of PCM_JOBS and PCM_STATUS are killed (SIGKILL) and restarted.
// It checks that each (job, client) ran once with one final status, that
// no offer is left unacked, and that pcm audit prints exactly what the
// streams hold (pcm audit --verify: whole). Then, on the same history with
// events stored with forged headers added (3,000+ events):
//   - pcm publish during a leader election (the leader killed, then a
//     stepdown) succeeds, one stored offer per target;
//   - 20 audits through the member holding no replica, and 20 through a
//     replica that lags (paused with SIGSTOP while events are stored, then
//     resumed): each complete, or failed with a named error, never a
//     silent gap.
//
// PCM_STOCK_CLUSTER=1 go test -count=1 -run TestStockCluster -v -timeout 20m ./integration/
func TestStockCluster(t *testing.T) {
	if os.Getenv(stockEnv) == "" {
		t.Skipf("set %s=1 to run the stock-cluster test (see docs/testing.md)", stockEnv)
	}
	bin := natsServerBinary(t)
	c := startStockCluster(t, bin, 1)
	urls := c.urls()
	if out, errOut, code := runPCM(t, nil, "broker", "provision", "--url", urls, "--replicas", "3"); code != 0 {
		t.Fatalf("pcm broker provision: exit %d\n%s%s", code, out, errOut)
	}
	// The admin connection stays on the JetStream members (it reads the
	// streams through ordered consumers, to compare the audits with).
	admin, js := c.connect(t, urls, nats.IgnoreDiscoveredServers())
	ctx := context.Background()
	for _, s := range []string{events.StreamJobs, events.StreamStatus} {
		c.leader(t, js, s)
	}

	// The fleet: real agent processes, each job appending its id to its
	// client's marker file.
	const agents, jobs = 10, 150
	dir := t.TempDir()
	markers := filepath.Join(dir, "markers")
	if err := os.MkdirAll(markers, 0o755); err != nil {
		t.Fatal(err)
	}
	clients := make([]string, agents)
	for i := range clients {
		clients[i] = fmt.Sprintf("stock%02d", i)
		enroll(t, js, clients[i], "fleet")
		startPCM(t, dir, nil, "agent", "--url", urls, "--client-id", clients[i], "--state-dir", filepath.Join(dir, "state-"+clients[i]),
			"--lease", "2s", "--heartbeat", "5s", "--log-level", "warn")
	}
	// One "<job> start <ns>" line per run, as readRuns reads them.
	record := []string{"sh", "-c", `echo "$PCM_JOB_ID start $(date +%s%N)" >> ` + markers + `/"$PCM_CLIENT_ID"`}
	p := newPublisher(t, js)
	pctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	// targets maps each job to the clients it targets.
	var mu sync.Mutex
	targets := map[string][]string{}
	published := make(chan int, jobs)
	go func() {
		defer close(published)
		for i := range jobs {
			id, err := publishRetrying(pctx, p, job(record, toGroup("fleet")))
			if err != nil {
				t.Errorf("publish %d: %v", i, err)
				return
			}
			mu.Lock()
			targets[id] = clients
			mu.Unlock()
			published <- i
		}
	}()
	waitPublished := func(n int) {
		for i := range published {
			if i+1 >= n {
				return
			}
		}
	}
	for k, stream := range []string{events.StreamJobs, events.StreamStatus} {
		waitPublished((k + 1) * jobs / 3)
		leader := c.leader(t, js, stream)
		t.Logf("killing %s (SIGKILL), leader of %s", c.nodes[leader].name, stream)
		c.kill(leader)
		if now := c.leader(t, js, stream); now == leader {
			t.Fatalf("%s still leads %s after its kill", c.nodes[leader].name, stream)
		}
		c.start(leader)
		c.waitHealthy(t)
	}
	waitPublished(jobs)

	t.Run("publish during a leader election", func(t *testing.T) {
		for _, how := range []string{"kill", "stepdown"} {
			leader := c.leader(t, js, events.StreamJobs)
			id := newJobID()
			switch how {
			case "kill":
				c.kill(leader)
			case "stepdown":
				if _, err := admin.Request("$JS.API.STREAM.LEADER.STEPDOWN."+events.StreamJobs, nil, 5*time.Second); err != nil {
					t.Fatalf("stepdown: %v", err)
				}
			}
			start := time.Now()
			out, errOut, code := runPCM(t, nil, "publish", "--url", urls, "--job-id", id, "--client", clients[0], "--client", clients[1], "--", record[0], record[1], record[2])
			took := time.Since(start)
			if code != 0 || strings.TrimSpace(out) != id {
				t.Fatalf("pcm publish during a leader election (%s of %s): exit %d after %s\n%s%s", how, c.nodes[leader].name, code, took, out, errOut)
			}
			t.Logf("pcm publish during a leader election (%s of %s) succeeded in %s", how, c.nodes[leader].name, took.Round(time.Millisecond))
			if how == "kill" {
				c.start(leader)
				c.waitHealthy(t)
			}
			offer, err := offers.Find(ctx, js, nil, id)
			if err != nil || len(offer.Copies) != 2 || offer.Copies[0].Subject == offer.Copies[1].Subject {
				t.Fatalf("stored offers of %s: %+v, %v: want one per target", id, offer.Copies, err)
			}
			mu.Lock()
			targets[id] = clients[:2]
			mu.Unlock()
		}
	})

	// Settle: every offer acked everywhere.
	testenv.WaitFor(t, 5*time.Minute, "every offer acked on every agent", func() bool {
		for _, cl := range clients {
			if a, p, err := consumerBacklog(js, cl); err != nil || a != 0 || p != 0 {
				return false
			}
		}
		return true
	})
	t.Run("each (job, client) ran once, with one final status", func(t *testing.T) {
		finalsOf := map[string]int{}
		for _, e := range readStored(t, js, events.StreamStatus) {
			if e.state.Final() {
				finalsOf[e.job+"/"+e.client]++
			}
		}
		pairs := 0
		runsOf := map[string]map[string]int{}
		for _, cl := range clients {
			runsOf[cl], _ = readRuns(t, filepath.Join(markers, cl))
		}
		for id, cls := range targets {
			for _, cl := range cls {
				pairs++
				if runsOf[cl][id] != 1 || finalsOf[id+"/"+cl] != 1 {
					t.Errorf("job %s on %s: %d runs, %d finals: want 1 and 1", id, cl, runsOf[cl][id], finalsOf[id+"/"+cl])
				}
			}
		}
		t.Logf("%d (job, client) pairs: each ran once with one final status; no offer unacked", pairs)
	})

	// auditOutcome runs pcm audit -o json with args and classifies it
	// against the stored history: "complete", "named" (a failure naming
	// what could not be read), or the test fails (a silent gap).
	auditOutcome := func(t *testing.T, want []storedEvent, args ...string) string {
		t.Helper()
		out, errOut, code := runPCM(t, nil, append([]string{"audit", "-o", "json"}, args...)...)
		lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
		if code != 0 {
			if !strings.Contains(errOut, "not delivered") && !strings.Contains(errOut, "no answer") {
				t.Fatalf("pcm audit %v: exit %d with an error that names no missing range: %s", args, code, errOut)
			}
			return "named"
		}
		if len(lines) != len(want) {
			t.Fatalf("silent gap: pcm audit %v exited 0 with %d events, the streams hold %d", args, len(lines), len(want))
		}
		for i, l := range lines {
			if l != string(want[i].data) {
				t.Fatalf("silent gap: pcm audit %v line %d is not %s sequence %d", args, i, want[i].stream, want[i].seq)
			}
		}
		return "complete"
	}
	t.Run("the audit returns exactly what the streams hold", func(t *testing.T) {
		hist := storedHistory(t, js)
		if got := auditOutcome(t, hist, "--url", urls); got != "complete" {
			t.Fatalf("audit %s", got)
		}
		if out, errOut, code := runPCM(t, nil, "audit", "--url", urls, "--verify"); code != 0 {
			t.Fatalf("pcm audit --verify: exit %d\n%s%s", code, out, errOut)
		}
	})

	// More history: copies of the stored events with forged headers, in
	// both streams, up past 3,000 events.
	hist := storedHistory(t, js)
	forge := func(from []storedEvent, tag string) {
		type sent struct {
			msg *nats.Msg
			f   jetstream.PubAckFuture
		}
		var all []sent
		for i, e := range from {
			msg := nats.NewMsg(e.subject)
			msg.Data = e.data
			msg.Header.Set(events.HeaderMsgID, fmt.Sprintf("%s-%d", tag, i))
			forgeHeaders(msg, i)
			f, err := js.PublishMsgAsync(msg)
			if err != nil {
				t.Fatal(err)
			}
			all = append(all, sent{msg, f})
		}
		for _, s := range all {
			select {
			case <-s.f.Ok():
			case <-s.f.Err():
				// Not stored (a leader still settling): again, the same
				// Nats-Msg-Id, until it is.
				testenv.CheckFor(t, 30*time.Second, 100*time.Millisecond, func() error {
					pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
					defer cancel()
					if _, err := js.PublishMsg(pctx, s.msg); err != nil {
						return fmt.Errorf("storing a forged copy: %w", err)
					}
					return nil
				})
			case <-time.After(time.Minute):
				t.Fatal("forged copies not stored within a minute")
			}
		}
	}
	forge(hist[:len(hist)/3], "forged")
	hist = storedHistory(t, js)
	t.Logf("the streams hold %d events", len(hist))
	if len(hist) < 3000 {
		t.Fatalf("only %d events: want 3,000+", len(hist))
	}

	t.Run("20 audits through the member holding no replica", func(t *testing.T) {
		outside := c.nodes[3]
		counts := map[string]int{}
		start := time.Now()
		for range 20 {
			counts[auditOutcome(t, hist, "--url", outside.url())]++
		}
		t.Logf("20 audits of %d events through %s (no JetStream, no replica) in %s: %d complete, %d named errors, 0 silent gaps",
			len(hist), outside.name, time.Since(start).Round(time.Millisecond), counts["complete"], counts["named"])
	})

	t.Run("20 audits through a lagging replica", func(t *testing.T) {
		// The replica to pause: neither the leader nor the member the
		// admin connection (which stores the events) is on.
		leader := c.leader(t, js, events.StreamStatus)
		lag := -1
		for i := range 3 {
			if i != leader && c.nodes[i].name != admin.ConnectedServerName() {
				lag = i
			}
		}
		// Nor the leader of PCM_JOBS, which the forged copies are stored
		// in too: a paused leader answers no publish until the others
		// elect another, and the copies sent meanwhile get no answer at all.
		testenv.CheckFor(t, 30*time.Second, 500*time.Millisecond, func() error {
			if c.leader(t, js, events.StreamJobs) != lag {
				return nil
			}
			if _, err := admin.Request("$JS.API.STREAM.LEADER.STEPDOWN."+events.StreamJobs, nil, 5*time.Second); err != nil {
				return fmt.Errorf("stepping %s down as the leader of %s: %w", c.nodes[lag].name, events.StreamJobs, err)
			}
			return fmt.Errorf("%s leads %s: asked it to step down", c.nodes[lag].name, events.StreamJobs)
		})
		c.pause(lag)
		t.Logf("paused %s (SIGSTOP), a replica of %s led by %s", c.nodes[lag].name, events.StreamStatus, c.nodes[leader].name)
		forge(hist[len(hist)/2:], "while-paused")
		c.resume(lag)
		// The audits test reads through a lagging replica, not a dial to a
		// process just woken: wait until it accepts a connection again.
		testenv.CheckFor(t, 30*time.Second, 200*time.Millisecond, func() error {
			nc, err := nats.Connect(c.nodes[lag].url(), nats.Timeout(time.Second))
			if err != nil {
				return fmt.Errorf("%s does not accept connections yet: %w", c.nodes[lag].name, err)
			}
			nc.Close()
			return nil
		})
		if s, err := js.Stream(ctx, events.StreamStatus); err == nil && s.CachedInfo().Cluster != nil {
			for _, r := range s.CachedInfo().Cluster.Replicas {
				if r.Name == c.nodes[lag].name {
					t.Logf("at resume, %s is current: %v, %d operations behind", r.Name, r.Current, r.Lag)
				}
			}
		}
		want := storedHistory(t, js)
		counts := map[string]int{}
		start := time.Now()
		for range 20 {
			counts[auditOutcome(t, want, "--url", c.nodes[lag].url())]++
		}
		t.Logf("20 audits of %d events through %s, resumed (SIGCONT) after %d events were stored without it, in %s: %d complete, %d named errors, 0 silent gaps",
			len(want), c.nodes[lag].name, len(want)-len(hist), time.Since(start).Round(time.Millisecond), counts["complete"], counts["named"])
		if counts["complete"] == 0 {
			t.Fatal("no audit completed once the replica caught up")
		}
		hist = want
	})

	t.Run("pcm audit --verify: whole", func(t *testing.T) {
		out, errOut, code := runPCM(t, nil, "audit", "--url", urls, "--verify")
		if code != 0 {
			t.Fatalf("exit %d\n%s%s", code, out, errOut)
		}
		t.Logf("pcm audit --verify:\n%s", out)
	})
}
