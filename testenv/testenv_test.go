package testenv_test

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/pcm-project/pcm/events"
	"github.com/pcm-project/pcm/testenv"
)

func TestBrokerRestartKeepsMessages(t *testing.T) {
	b := testenv.StartBroker(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	subject := events.JobSubject(events.Target{Kind: events.TargetAll})
	ack, err := b.JS.Publish(ctx, subject, []byte("offer-1"))
	if err != nil {
		t.Fatalf("publish: %v", err)
	}
	if ack.Stream != events.StreamJobs {
		t.Fatalf("stored in %q, want %q", ack.Stream, events.StreamJobs)
	}
	url := b.URL

	b.Restart(t)

	if b.URL != url {
		t.Fatalf("URL changed across Restart: %s -> %s", url, b.URL)
	}
	stream, err := b.JS.Stream(ctx, events.StreamJobs)
	if err != nil {
		t.Fatalf("stream after restart: %v", err)
	}
	msg, err := stream.GetMsg(ctx, ack.Sequence)
	if err != nil {
		t.Fatalf("message %d after restart: %v", ack.Sequence, err)
	}
	if string(msg.Data) != "offer-1" || msg.Subject != subject {
		t.Fatalf("got %q on %q, want %q on %q", msg.Data, msg.Subject, "offer-1", subject)
	}

	// A second connection works too, and the broker can be stopped twice.
	nc, _ := b.Connect(t)
	if !nc.IsConnected() {
		t.Fatal("new connection is not connected")
	}
	b.Stop()
	b.Stop()
	if b.Server() != nil {
		t.Fatal("Server() is not nil after Stop")
	}
}

func TestWithoutProvision(t *testing.T) {
	b := testenv.StartBroker(t, testenv.WithoutProvision())
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := b.JS.Stream(ctx, events.StreamJobs); err == nil {
		t.Fatalf("stream %s exists without provisioning", events.StreamJobs)
	}
}

func TestClusterStreamLeaderRestart(t *testing.T) {
	c := testenv.StartCluster(t, 3)
	if got := len(c.URLs()); got != 3 {
		t.Fatalf("URLs() has %d entries, want 3", got)
	}
	_, js := c.Connect(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	info, err := js.Stream(ctx, events.StreamJobs)
	if err != nil {
		t.Fatalf("stream: %v", err)
	}
	if r := info.CachedInfo().Config.Replicas; r != 3 {
		t.Fatalf("PCM_JOBS has %d replicas, want 3", r)
	}
	subject := events.JobSubject(events.Target{Kind: events.TargetAll})
	if _, err := js.Publish(ctx, subject, []byte("before")); err != nil {
		t.Fatalf("publish: %v", err)
	}

	leader := c.StreamLeader(t, events.StreamJobs)
	c.Stop(leader)
	if c.Server(leader) != nil {
		t.Fatalf("Server(%d) is not nil after Stop", leader)
	}
	if next := c.StreamLeader(t, events.StreamJobs); next == leader {
		t.Fatalf("member %d still leads PCM_JOBS after Stop", leader)
	}
	// A new leader may drop a publish while it takes over: retry with a
	// message id, as a real publisher does, so it is stored once.
	testenv.WaitFor(t, 30*time.Second, "a publish with the old leader down", func() bool {
		pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		_, err := js.Publish(pctx, subject, []byte("during"), jetstream.WithMsgID("during"))
		return err == nil
	})

	c.Restart(t, leader)
	if got, want := c.Server(leader).ClientURL(), c.URLs()[leader]; got != want {
		t.Fatalf("restarted member listens on %s, want %s", got, want)
	}
	if c.Server(leader).ClusterURL() == "" {
		t.Fatal("restarted member has no cluster URL")
	}
	testenv.WaitFor(t, 30*time.Second, "PCM_JOBS to hold both messages on every replica", func() bool {
		s, err := js.Stream(ctx, events.StreamJobs)
		if err != nil {
			return false
		}
		i := s.CachedInfo()
		if i.State.Msgs != 2 || i.Cluster == nil || len(i.Cluster.Replicas) != 2 {
			return false
		}
		for _, r := range i.Cluster.Replicas {
			if !r.Current {
				return false
			}
		}
		return true
	})
}
