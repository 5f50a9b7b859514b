package integration_test

import (
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/pcm-project/pcm/events"
	"github.com/pcm-project/pcm/testenv"
)

// TestJobPathRoundTrips counts what the agent asks the broker while it
// runs a queue of jobs back to back: per job two reads (the last status
// and the cancellation, both under the lock: none before it, none before
// storing the final status, which is conditioned on the sequence of the
// attempt's own started status), and the lock taken and released once per
// job (a lock kept for a next job would name the job before it).
func TestJobPathRoundTrips(t *testing.T) {
	env := testenv.StartBroker(t)
	if env.Sec != nil {
		t.Skip("each client in its own account: the test's connection does not see the agent's requests")
	}
	var (
		mu       sync.Mutex
		gets     int
		lockOps  = map[string]int{}
		statuses = map[string]bool{}
	)
	sub, err := env.NC.Subscribe(">", func(m *nats.Msg) {
		mu.Lock()
		defer mu.Unlock()
		switch {
		case strings.HasPrefix(m.Subject, "$JS.API.DIRECT.GET."+events.StreamStatus+"."),
			strings.HasPrefix(m.Subject, "$JS.API.DIRECT.GET."+events.StreamJobs+"."):
			gets++
		case strings.HasPrefix(m.Subject, "$KV."+events.BucketLocks+"."):
			op := m.Header.Get("KV-Operation")
			if op == "" {
				op = "PUT"
			}
			lockOps[op]++
		case strings.HasPrefix(m.Subject, "pcm.status."):
			statuses[m.Header.Get(events.HeaderMsgID)] = true
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	if err := env.NC.Flush(); err != nil {
		t.Fatal(err)
	}

	p := newPublisher(t, env.JS)
	const jobs = 5
	var ids []string
	for range jobs { // queued before the agent starts: they run back to back
		ids = append(ids, publish(t, p, job([]string{"true"}, toClient("rt"))))
	}
	mu.Lock()
	gets, statuses, lockOps = 0, map[string]bool{}, map[string]int{}
	mu.Unlock()
	enrolledAgent(t, env, "rt")
	for _, id := range ids {
		waitFinal(t, env.JS, "rt", id, 20*time.Second)
	}
	waitAcked(t, env.JS, "rt", 10*time.Second)
	testenv.WaitFor(t, 5*time.Second, "the lock released after each job", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return lockOps["DEL"] >= jobs
	})
	time.Sleep(100 * time.Millisecond) // a read the test would wrongly miss
	mu.Lock()
	defer mu.Unlock()
	t.Logf("%d jobs: %d direct gets, lock operations %v, %d statuses", jobs, gets, lockOps, len(statuses))
	if gets > 2*jobs {
		t.Errorf("%d direct gets for %d jobs, want at most 2 per job (last status and cancellation under the lock)", gets, jobs)
	}
	if lockOps["DEL"] != jobs {
		t.Errorf("lock released %d times for %d jobs, want once per job", lockOps["DEL"], jobs)
	}
	if len(statuses) != 2*jobs {
		t.Errorf("%d statuses published, want %d (started and final per job)", len(statuses), 2*jobs)
	}
}
