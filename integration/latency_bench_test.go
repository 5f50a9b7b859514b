//go:build linux

package integration_test

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/pcm-project/pcm/agent"
	"github.com/pcm-project/pcm/agent/runner"
	"github.com/pcm-project/pcm/events"
	"github.com/pcm-project/pcm/fleet"
	"github.com/pcm-project/pcm/testenv"
)

// BenchmarkJobLatency runs one real agent (production defaults, fsynced
// journal, the exec runner) and publishes PCM_BENCH_JOBS (default 1,000)
// jobs running true to it, one at a time, each after the agent has gone
// back to waiting for offers. For each job it measures, from the call to
// Publish:
//
//   - started: the runner's started callback, right after the process exists;
//   - final: the final status delivered from PCM_STATUS (so persisted);
//   - acked: the agent's ack of the offer, as the server receives it.
//
// It reports p50, p99 and the maximum of each. Run it with:
//
//	go test -run '^$' -bench BenchmarkJobLatency -benchtime 1x ./integration/
func BenchmarkJobLatency(b *testing.B) {
	benchOpen(b)
	jobs := benchEnvInts(b, "PCM_BENCH_JOBS", 1000)[0]
	const warmup = 20
	const client = "lat"
	env := testenv.StartBroker(b)
	if _, err := fleet.EnrollConsumer(context.Background(), env.JS, client, nil, fleet.ConsumerOptions{}); err != nil {
		b.Fatal(err)
	}
	nc, err := nats.Connect(env.URL, agent.ConnectOptions("bench latency agent")...)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(nc.Close)
	tr := &latRunner{inner: runner.NewExec(), at: map[string]time.Time{}}
	svc, err := agent.New(nc, agent.Config{ClientID: client, StateDir: b.TempDir(), Runner: tr, Version: "bench"})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx) }()
	b.Cleanup(func() { cancel(); <-done })
	select {
	case <-svc.Ready():
	case err := <-done:
		b.Fatalf("agent stopped: %v", err)
	case <-time.After(30 * time.Second):
		b.Fatal("agent not ready after 30s")
	}

	finals := latWatchFinals(b, env.JS, client)
	acks := latWatchAcks(b, env.NC, client)
	p := newPublisher(b, env.JS)
	srv := env.Server().Server()
	var started, final, acked []time.Duration
	seq := 0
	one := func(measure bool) {
		seq++
		t0 := time.Now()
		id := publish(b, p, job([]string{"true"}, toClient(client)))
		fin := latWait(b, finals, id)
		ack := latWait(b, acks, strconv.Itoa(seq))
		st, ok := tr.startedAt(id)
		if !ok {
			b.Fatalf("job %s: the runner never started it", id)
		}
		latQuiet(b, srv)
		if measure {
			started = append(started, st.Sub(t0))
			final = append(final, fin.Sub(t0))
			acked = append(acked, ack.Sub(t0))
		}
	}
	load0 := benchLoad()
	for range warmup {
		one(false)
	}
	for b.Loop() {
		started, final, acked = started[:0], final[:0], acked[:0]
		for range jobs {
			one(true)
		}
	}
	for _, m := range []struct {
		name string
		ds   []time.Duration
	}{{"started", started}, {"final", final}, {"acked", acked}} {
		b.ReportMetric(float64(benchPercentile(m.ds, 50))/1e6, m.name+"-p50-ms")
		b.ReportMetric(float64(benchPercentile(m.ds, 99))/1e6, m.name+"-p99-ms")
		b.Logf("%d jobs, publish -> %-7s p50 %s ms, p90 %s ms, p99 %s ms, max %s ms", len(m.ds), m.name,
			benchMs(benchPercentile(m.ds, 50)), benchMs(benchPercentile(m.ds, 90)), benchMs(benchPercentile(m.ds, 99)), benchMs(benchPercentile(m.ds, 100)))
	}
	b.Logf("load average before: %s, after: %s", load0, benchLoad())
}

// latRunner wraps a runner and records when each job's process started.
type latRunner struct {
	inner runner.Runner
	mu    sync.Mutex
	at    map[string]time.Time
}

// Run implements runner.Runner.
func (r *latRunner) Run(ctx context.Context, spec runner.Spec, started func(pid int)) (runner.Result, error) {
	return r.inner.Run(ctx, spec, func(pid int) {
		now := time.Now()
		r.mu.Lock()
		r.at[spec.JobID] = now
		r.mu.Unlock()
		if started != nil {
			started(pid)
		}
	})
}

func (r *latRunner) startedAt(id string) (time.Time, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	t, ok := r.at[id]
	return t, ok
}

// latEvents hands out the time an event keyed by a string happened.
type latEvents struct {
	mu   sync.Mutex
	at   map[string]time.Time
	wake chan struct{}
}

func newLatEvents() *latEvents {
	return &latEvents{at: map[string]time.Time{}, wake: make(chan struct{}, 1)}
}

func (e *latEvents) record(key string, t time.Time) {
	e.mu.Lock()
	if _, dup := e.at[key]; !dup {
		e.at[key] = t
	}
	e.mu.Unlock()
	select {
	case e.wake <- struct{}{}:
	default:
	}
}

// latWait waits for the event key.
func latWait(b *testing.B, e *latEvents, key string) time.Time {
	b.Helper()
	deadline := time.After(30 * time.Second)
	for {
		e.mu.Lock()
		t, ok := e.at[key]
		e.mu.Unlock()
		if ok {
			return t
		}
		select {
		case <-e.wake:
		case <-deadline:
			b.Fatalf("no event %s within 30s", key)
		}
	}
}

// latWatchFinals records when each final status of client is delivered
// from PCM_STATUS, keyed by job id.
func latWatchFinals(b *testing.B, js jetstream.JetStream, client string) *latEvents {
	e := newLatEvents()
	ctx := context.Background()
	cons, err := js.OrderedConsumer(ctx, events.StreamStatus, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{events.StatusSubjectsOfClient(client)},
		DeliverPolicy:  jetstream.DeliverNewPolicy,
	})
	if err != nil {
		b.Fatal(err)
	}
	cc, err := cons.Consume(func(m jetstream.Msg) {
		now := time.Now()
		ev, err := events.Decode(m.Headers(), m.Data())
		if err != nil {
			return
		}
		if st, err := events.ParseJobStatus(ev); err == nil && st.State.Final() {
			e.record(st.JobID, now)
		}
	})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(cc.Stop)
	return e
}

// latWatchAcks records when the server receives the first ack of each
// offer of client, keyed by the offer's stream sequence.
func latWatchAcks(b *testing.B, nc *nats.Conn, client string) *latEvents {
	e := newLatEvents()
	sub, err := nc.Subscribe("$JS.ACK."+events.StreamJobs+"."+events.ConsumerName(client)+".>", func(m *nats.Msg) {
		now := time.Now()
		if len(m.Data) > 0 && !strings.HasPrefix(string(m.Data), "+ACK") {
			return
		}
		if tok := strings.Split(m.Subject, "."); len(tok) == 9 {
			e.record(tok[5], now)
		}
	})
	if err != nil {
		b.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = sub.Unsubscribe() })
	return e
}

// latQuiet waits until the agent waits for the next offer again (its
// trailing work, such as releasing the lock, is done), polling every
// millisecond.
func latQuiet(b *testing.B, srv *server.Server) {
	b.Helper()
	testenv.CheckFor(b, 30*time.Second, time.Millisecond, func() error {
		if s := benchConsumerState(b, srv); s.waiting != 1 || s.ackPending != 0 || s.pending != 0 {
			return fmt.Errorf("agent not back to waiting for offers: %+v", s)
		}
		return nil
	})
}
