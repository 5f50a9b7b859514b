package broker_test

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/pcm-project/pcm/broker"
	"github.com/pcm-project/pcm/events"
)

// connectJS connects to url, closing the connection at cleanup.
func connectJS(t *testing.T, url string) jetstream.JetStream {
	t.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatalf("connect %s: %v", url, err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return js
}

func TestRestartKeepsStreamsBucketsAndMessages(t *testing.T) {
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	first := newBroker(t, broker.Config{StoreDir: dir})
	start(t, first)
	js := connectJS(t, first.ClientURL())
	if err := broker.Provision(ctx, js, broker.ProvisionOptions{}); err != nil {
		t.Fatal(err)
	}
	jobSubject := events.JobSubject(events.Target{Kind: events.TargetClient, Name: "client-1"})
	statusSubject := events.StatusSubject("client-1", "job-1")
	if _, err := js.Publish(ctx, jobSubject, []byte("offer"), jetstream.WithMsgID("job-1")); err != nil {
		t.Fatal(err)
	}
	if _, err := js.Publish(ctx, statusSubject, []byte("succeeded"), jetstream.WithMsgID("job-1.client-1.succeeded.1")); err != nil {
		t.Fatal(err)
	}
	agents, err := js.KeyValue(ctx, events.BucketAgents)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := agents.Put(ctx, "client-1", []byte("inventory")); err != nil {
		t.Fatal(err)
	}
	locks, err := js.KeyValue(ctx, events.BucketLocks)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := locks.Create(ctx, "client-1", []byte("service"), jetstream.KeyTTL(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if _, err := js.CreateOrUpdateConsumer(ctx, events.StreamJobs, jetstream.ConsumerConfig{
		Durable:        events.ConsumerName("client-1"),
		FilterSubjects: events.ConsumerFilters("client-1", []string{"lab"}),
		AckPolicy:      jetstream.AckExplicitPolicy,
		MaxDeliver:     -1,
	}); err != nil {
		t.Fatal(err)
	}
	want := streamConfigs(ctx, t, js)
	first.Shutdown()

	second := newBroker(t, broker.Config{StoreDir: dir})
	start(t, second)
	js = connectJS(t, second.ClientURL())

	got := streamConfigs(ctx, t, js)
	for _, name := range allStreams {
		if got[name].MaxConsumers != want[name].MaxConsumers || got[name].MaxAge != want[name].MaxAge || got[name].AllowDirect != want[name].AllowDirect {
			t.Errorf("stream %s after restart is %+v, want %+v", name, got[name], want[name])
		}
	}
	jobs, err := js.Stream(ctx, events.StreamJobs)
	if err != nil {
		t.Fatal(err)
	}
	if m, err := jobs.GetLastMsgForSubject(ctx, jobSubject); err != nil || string(m.Data) != "offer" {
		t.Errorf("last job on %s after restart = %v, %v; want \"offer\"", jobSubject, m, err)
	}
	status, err := js.Stream(ctx, events.StreamStatus)
	if err != nil {
		t.Fatal(err)
	}
	if m, err := status.GetLastMsgForSubject(ctx, statusSubject); err != nil || string(m.Data) != "succeeded" {
		t.Errorf("last status on %s after restart = %v, %v; want \"succeeded\"", statusSubject, m, err)
	}
	// The duplicate window survived too: a retried publish is not stored twice.
	ack, err := js.Publish(ctx, statusSubject, []byte("succeeded"), jetstream.WithMsgID("job-1.client-1.succeeded.1"))
	if err != nil || !ack.Duplicate {
		t.Errorf("republish after restart: ack %+v, err %v; want a duplicate", ack, err)
	}
	for bucket, wantValue := range map[string]string{events.BucketAgents: "inventory", events.BucketLocks: "service"} {
		kv, err := js.KeyValue(ctx, bucket)
		if err != nil {
			t.Fatalf("bucket %s after restart: %v", bucket, err)
		}
		e, err := kv.Get(ctx, "client-1")
		if err != nil || string(e.Value()) != wantValue {
			t.Errorf("%s/client-1 after restart = %v, %v; want %q", bucket, e, err, wantValue)
		}
	}
	c, err := js.Consumer(ctx, events.StreamJobs, events.ConsumerName("client-1"))
	if err != nil {
		t.Fatalf("consumer after restart: %v", err)
	}
	if p := c.CachedInfo().NumPending; p != 1 {
		t.Errorf("consumer has %d pending after restart, want 1", p)
	}
}
