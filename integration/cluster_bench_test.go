//go:build linux

package integration_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/pcm-project/pcm/events"
	"github.com/pcm-project/pcm/fleet"
	"github.com/pcm-project/pcm/testenv"
)

// BenchmarkClusterRestart weighs the consumer configurations of a 3-node
// cluster (in this process, streams provisioned with 3 replicas) for
// PCM_BENCH_CLUSTER_CONSUMERS (default 1,000) enrolled clients whose
// consumers have each delivered and acked one offer: the idle CPU of the
// cluster, the graceful stop and the restart of one member (a rolling
// restart), and whether the consumers kept their state (ack floor).
//
//	go test -run '^$' -bench BenchmarkClusterRestart -benchtime 1x -timeout 30m ./integration/
func BenchmarkClusterRestart(b *testing.B) {
	benchOpen(b)
	n := benchEnvInts(b, "PCM_BENCH_CLUSTER_CONSUMERS", 1000)[0]
	for _, v := range []struct {
		name     string
		replicas int
		memory   bool
	}{
		{"R3,storage=file", 3, false},
		{"R3,storage=memory", 3, true},
	} {
		b.Run(v.name, func(b *testing.B) {
			for b.Loop() {
				clusterRestart(b, n, v.replicas, v.memory)
			}
		})
	}
}

func clusterRestart(b *testing.B, n, replicas int, memory bool) {
	c := testenv.StartCluster(b, 3)
	_, js := c.Connect(b)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	cfg := func(client string) jetstream.ConsumerConfig {
		return jetstream.ConsumerConfig{
			Durable:        events.ConsumerName(client),
			FilterSubjects: events.ConsumerFilters(client, nil),
			AckPolicy:      jetstream.AckExplicitPolicy,
			DeliverPolicy:  jetstream.DeliverAllPolicy,
			AckWait:        fleet.DefaultAckWait,
			MaxDeliver:     -1,
			MaxAckPending:  fleet.DefaultMaxAckPending,
			Replicas:       replicas,
			MemoryStorage:  memory,
		}
	}
	if _, err := js.Publish(ctx, events.JobSubject(events.Target{Kind: events.TargetAll}), []byte("an offer")); err != nil {
		b.Fatal(err)
	}
	took := benchEnroll(b, js, "cl", n, cfg)
	benchEach(b, "cl", n, func(client string) error { // every consumer delivers and acks the offer
		cons, err := js.Consumer(ctx, events.StreamJobs, events.ConsumerName(client))
		if err != nil {
			return err
		}
		batch, err := cons.Fetch(1, jetstream.FetchMaxWait(10*time.Second))
		if err != nil {
			return err
		}
		for m := range batch.Messages() {
			if err := m.DoubleAck(ctx); err != nil {
				return err
			}
		}
		return batch.Error()
	})
	cpu0, t0 := benchSelfCPU(), time.Now()
	time.Sleep(10 * time.Second) // idle: what the consumers cost while nothing happens
	idle := float64(benchSelfCPU()-cpu0) / float64(time.Since(t0))

	kept := func() (ok, lost int) {
		var okN, lostN atomic.Int64
		benchEach(b, "cl", n, func(client string) error {
			info, err := clusterConsumerInfo(ctx, js, client)
			if err == nil && info.AckFloor.Stream == 1 && info.NumPending == 0 {
				okN.Add(1)
			} else {
				lostN.Add(1)
			}
			return nil
		})
		return int(okN.Load()), int(lostN.Load())
	}

	// One member: a rolling restart.
	t := time.Now()
	c.Stop(2)
	stop1 := time.Since(t)
	t = time.Now()
	c.Restart(b, 2)
	ready1 := time.Since(t)
	current1 := clusterWaitCurrent(b, ctx, js, n)
	ok1, lost1 := kept()

	b.Logf("%d consumers (enrolled in %s); idle CPU of the 3 members %.1f ms/s", n, took.Round(time.Millisecond), idle*1000)
	b.Logf("one member: stop %s, restart to meta leader %s, consumers current after %s; state kept by %d consumers, lost by %d",
		stop1.Round(time.Millisecond), ready1.Round(time.Millisecond), current1.Round(time.Millisecond), ok1, lost1)
	b.ReportMetric(idle*1000, "idle-cpu-ms/s")
	b.ReportMetric(stop1.Seconds(), "member-stop-s")
	b.ReportMetric(ready1.Seconds(), "member-ready-s")
	b.ReportMetric(float64(lost1), "state-lost")

	// Stopping file-backed consumers one by one is slow: delete the stream
	// first.
	dctx, dcancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer dcancel()
	_ = js.DeleteStream(dctx, events.StreamJobs)
}

// clusterConsumerInfo reads a client's consumer info, retrying while the
// cluster settles.
func clusterConsumerInfo(ctx context.Context, js jetstream.JetStream, client string) (*jetstream.ConsumerInfo, error) {
	var err error
	for range 20 {
		var cons jetstream.Consumer
		if cons, err = js.Consumer(ctx, events.StreamJobs, events.ConsumerName(client)); err == nil {
			return cons.CachedInfo(), nil
		}
		if errors.Is(err, jetstream.ErrConsumerNotFound) {
			return nil, err
		}
		time.Sleep(100 * time.Millisecond)
	}
	return nil, err
}

// clusterWaitCurrent waits until every consumer that exists has a leader
// and all its replicas are current, and returns how long that took.
func clusterWaitCurrent(b *testing.B, ctx context.Context, js jetstream.JetStream, n int) time.Duration {
	b.Helper()
	t := time.Now()
	for {
		var behind atomic.Int64
		benchEach(b, "cl", n, func(client string) error {
			info, err := clusterConsumerInfo(ctx, js, client)
			if err != nil {
				if ctx.Err() != nil {
					return err
				}
				return nil // gone (memory storage after a full restart): nothing to wait for
			}
			if info.Cluster == nil || info.Cluster.Leader == "" {
				behind.Add(1)
				return nil
			}
			for _, r := range info.Cluster.Replicas {
				if !r.Current {
					behind.Add(1)
					return nil
				}
			}
			return nil
		})
		if behind.Load() == 0 {
			return time.Since(t)
		}
		if time.Since(t) > 3*time.Minute {
			b.Logf("%d consumers still not current after 3 minutes", behind.Load())
			return time.Since(t)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
