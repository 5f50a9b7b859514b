package broker_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/pcm-project/pcm/events"
	"github.com/pcm-project/pcm/testenv"
)

// TestTwoThousandConsumers checks that a provisioned PCM_JOBS takes more
// than the 1,000 consumers nats-server 2.15 allows a stream by default.
func TestTwoThousandConsumers(t *testing.T) {
	const (
		clients = 2000
		workers = 8
	)
	tb := testenv.StartBroker(t)
	// Stopping a server stops its file-backed consumers one by one, about
	// 10 ms each (20 s here); deleting the stream first removes them at
	// once. Cleanups run last-in first-out, so this runs before the stop.
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := tb.JS.DeleteStream(ctx, events.StreamJobs); err != nil {
			t.Errorf("deleting %s: %v", events.StreamJobs, err)
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	began := time.Now()
	var (
		wg     sync.WaitGroup
		next   atomic.Int64
		mu     sync.Mutex
		errs   []error
		groups = []string{"all-desktops", "lab"}
	)
	for range workers {
		wg.Go(func() {
			for {
				i := next.Add(1) - 1
				if i >= clients {
					return
				}
				client := fmt.Sprintf("client-%04d", i)
				_, err := tb.JS.CreateOrUpdateConsumer(ctx, events.StreamJobs, jetstream.ConsumerConfig{
					Durable:        events.ConsumerName(client),
					FilterSubjects: events.ConsumerFilters(client, groups),
					AckPolicy:      jetstream.AckExplicitPolicy,
					MaxDeliver:     -1,
				})
				if err != nil {
					mu.Lock()
					errs = append(errs, fmt.Errorf("consumer %d: %w", i, err))
					mu.Unlock()
					return
				}
			}
		})
	}
	wg.Wait()
	if len(errs) > 0 {
		t.Fatalf("%d consumers failed, first: %v", len(errs), errs[0])
	}
	s, err := tb.JS.Stream(ctx, events.StreamJobs)
	if err != nil {
		t.Fatal(err)
	}
	if n := s.CachedInfo().State.Consumers; n != clients {
		t.Fatalf("PCM_JOBS has %d consumers, want %d", n, clients)
	}
	t.Logf("created %d consumers in %s", clients, time.Since(began))
}
