package streamread_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/pcm-project/pcm/internal/streamread"
	"github.com/pcm-project/pcm/testenv"
)

// readOutcome classifies one read against the sequences the stream holds:
// complete, a named error, or a silent gap (returned nil without every
// message, or out of order, or a message twice).
type readOutcome struct{ complete, named, silent int }

func (o readOutcome) String() string {
	return fmt.Sprintf("%d complete, %d named errors, %d silent gaps", o.complete, o.named, o.silent)
}

// classify records one read: got are the sequences delivered, want those
// the stream holds in the range read.
func (o *readOutcome) classify(t *testing.T, got, want []uint64, err error) {
	t.Helper()
	switch {
	case err == nil && slices.Equal(got, want):
		o.complete++
	case err == nil:
		o.silent++
		t.Errorf("silent gap: %d of %d delivered, no error", len(got), len(want))
	case errors.Is(err, streamread.ErrIncomplete) || errors.Is(err, streamread.ErrNoAnswer):
		o.named++
		if !slices.Equal(got, want[:min(len(got), len(want))]) {
			o.silent++
			t.Errorf("before the error %v: what was delivered has a gap", err)
		}
		t.Logf("named error: %v", err)
	default:
		t.Fatalf("read: %v", err)
	}
}

// TestClusterReadFromNonReplica: on a 3-node cluster, a client connected to
// the member holding no replica of an R2 stream (every direct get is
// routed to one of the two replicas) reads 3,200 messages, some stored with
// forged headers, 20 times, whole and through a filter: every read
// complete. (Separate server processes, where the answers of the two
// replicas interleave, are tested in integration: TestStockCluster.)
func TestClusterReadFromNonReplica(t *testing.T) {
	if testing.Short() {
		t.Skip("a cluster read takes a while")
	}
	c := testenv.StartCluster(t, 3, testenv.WithoutProvision())
	_, admin := c.Connect(t)
	ctx := context.Background()
	cfg := streamConfig()
	cfg.Replicas = 2
	if _, err := admin.CreateStream(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	const n = 3200
	want := map[string][]uint64{}
	body := make([]byte, 300)
	futures := make([]jetstream.PubAckFuture, 0, n)
	for i := range n {
		msg := nats.NewMsg(fmt.Sprintf("sr.%c.%d", "ab"[i%2], i%7))
		msg.Data = body
		msg.Header.Set("X-Test", "kept")
		if i%100 == 99 {
			msg.Header = forgedHeaders(i) // what any writer of the stream may store
		}
		f, err := admin.PublishMsgAsync(msg)
		if err != nil {
			t.Fatal(err)
		}
		futures = append(futures, f)
	}
	for i, f := range futures {
		select {
		case ack := <-f.Ok():
			want[""] = append(want[""], ack.Sequence)
			if i%2 == 0 {
				want["sr.a.*"] = append(want["sr.a.*"], ack.Sequence)
			}
		case err := <-f.Err():
			t.Fatal(err)
		}
	}
	slices.Sort(want[""])
	slices.Sort(want["sr.a.*"])
	info, err := admin.Stream(ctx, testStream)
	if err != nil {
		t.Fatal(err)
	}
	holders := []string{info.CachedInfo().Cluster.Leader}
	for _, p := range info.CachedInfo().Cluster.Replicas {
		holders = append(holders, p.Name)
	}
	outside := -1
	for i := range 3 {
		if !slices.ContainsFunc(holders, func(name string) bool { return c.Member(name) == i }) {
			outside = i
		}
	}
	if outside < 0 {
		t.Fatalf("every member holds a replica: %v", holders)
	}
	_, js := c.ConnectTo(t, outside)
	t.Logf("replicas on %v; reading through member %d", holders, outside)

	for _, tc := range []struct {
		name string
		opts streamread.Options
		want []uint64
	}{
		{"whole stream", streamread.Options{Batch: 100}, want[""]},
		{"one filter", streamread.Options{Filters: []string{"sr.a.*"}, Batch: 100}, want["sr.a.*"]},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var o readOutcome
			start := time.Now()
			for range 20 {
				var got []uint64
				err := streamread.Scan(ctx, js, testStream, tc.opts, func(m streamread.Msg) error {
					got = append(got, m.Seq)
					return nil
				})
				o.classify(t, got, tc.want, err)
			}
			t.Logf("20 reads of %d messages in %s: %s", len(tc.want), time.Since(start).Round(time.Millisecond), o)
			if o.complete != 20 {
				t.Fatalf("%s, want 20 complete", o)
			}
		})
	}
}
