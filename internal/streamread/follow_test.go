package streamread_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/pcm-project/pcm/internal/streamread"
	"github.com/pcm-project/pcm/testenv"
)

// follower collects what a Follower delivers, in the background.
type follower struct {
	mu       sync.Mutex
	msgs     []streamread.Msg
	caughtUp int
	f        *streamread.Follower
}

func follow(t *testing.T, js jetstream.JetStream, o streamread.FollowOptions) *follower {
	t.Helper()
	return followStream(t, js, testStream, o)
}

func followStream(t *testing.T, js jetstream.JetStream, stream string, o streamread.FollowOptions) *follower {
	t.Helper()
	f, err := streamread.Follow(context.Background(), js, stream, o)
	if err != nil {
		t.Fatal(err)
	}
	fl := &follower{f: f}
	collected := make(chan struct{})
	go func() {
		defer close(collected)
		for m := range f.Updates() {
			fl.mu.Lock()
			if m == nil {
				fl.caughtUp++
			} else {
				fl.msgs = append(fl.msgs, *m)
			}
			fl.mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		f.Stop()
		<-collected
		if err := f.Err(); err != nil {
			t.Errorf("the Follower stopped with %v, want nil after Stop", err)
		}
	})
	return fl
}

func (f *follower) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.msgs)
}

func (f *follower) caught() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.caughtUp > 0
}

// seqs returns the sequences delivered.
func (f *follower) seqs() []uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]uint64, len(f.msgs))
	for i, m := range f.msgs {
		out[i] = m.Seq
	}
	return out
}

// TestFollow: the history, then every new message on the filters, in
// stream order, each once, promptly, while two publishers race.
func TestFollow(t *testing.T) {
	env := testenv.StartBroker(t)
	js := env.JS
	newStream(t, js, false)
	var want []uint64
	for i := range 6 {
		seq := put(t, js, fmt.Sprintf("sr.%c.1", "abc"[i%3]), "old")
		if i%3 != 2 {
			want = append(want, seq)
		}
	}
	f := follow(t, js, streamread.FollowOptions{Options: streamread.Options{Filters: []string{"sr.a.*", "sr.b.*"}, Batch: 7}})
	testenv.WaitFor(t, 5*time.Second, "the history", f.caught)
	if got := f.seqs(); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("history %v, want %v", got, want)
	}

	t.Run("a new message within a second", func(t *testing.T) {
		n := f.count()
		start := time.Now()
		want = append(want, put(t, js, "sr.b.9", "new"))
		testenv.WaitFor(t, time.Second, "the new message", func() bool { return f.count() > n })
		t.Logf("delivered %s after the publish", time.Since(start).Round(time.Millisecond))
	})

	t.Run("racing publishers", func(t *testing.T) {
		var mu sync.Mutex
		var wg sync.WaitGroup
		for p := range 2 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range 300 {
					subj := fmt.Sprintf("sr.%c.%d", "abc"[(i+p)%3], p)
					ack, err := js.Publish(context.Background(), subj, []byte(fmt.Sprintf("p%d-%d", p, i)))
					if err != nil {
						t.Error(err)
						return
					}
					if subj[3] != 'c' {
						mu.Lock()
						want = append(want, ack.Sequence)
						mu.Unlock()
					}
				}
			}()
		}
		wg.Wait()
		testenv.WaitFor(t, 10*time.Second, "every message", func() bool { return f.count() >= len(want) })
		got := f.seqs()
		for i := 1; i < len(got); i++ {
			if got[i] <= got[i-1] {
				t.Fatalf("out of order or repeated at %d: %d after %d", i, got[i], got[i-1])
			}
		}
		seen := map[uint64]bool{}
		for _, s := range got {
			seen[s] = true
		}
		for _, s := range want {
			if !seen[s] {
				t.Fatalf("sequence %d not delivered", s)
			}
		}
		if len(got) != len(want) {
			t.Fatalf("delivered %d, want %d", len(got), len(want))
		}
	})
}

// TestFollowWithoutNotices: a message nobody told Follow about (its
// subscription hears other subjects) comes with the resync read; a notice
// of a message the stream never stores does not stop it.
func TestFollowWithoutNotices(t *testing.T) {
	env := testenv.StartBroker(t)
	js := env.JS
	newStream(t, js, false)
	f := follow(t, js, streamread.FollowOptions{
		Options:  streamread.Options{Filters: []string{"sr.a.*"}},
		Subjects: []string{"elsewhere.x"},
		Resync:   200 * time.Millisecond,
	})
	testenv.WaitFor(t, 5*time.Second, "the first round", f.caught)
	if err := env.NC.Publish("elsewhere.x", []byte("never stored")); err != nil {
		t.Fatal(err)
	}
	put(t, js, "sr.a.1", "quiet")
	testenv.WaitFor(t, 2*time.Second, "the resync read", func() bool { return f.count() == 1 })
}

// TestFollowReconnects: Follow carries on across a broker restart, from
// where it was.
func TestFollowReconnects(t *testing.T) {
	env := testenv.StartBroker(t)
	js := env.JS
	newStream(t, js, false)
	put(t, js, "sr.a.1", "before")
	f := follow(t, js, streamread.FollowOptions{Options: streamread.Options{Filters: []string{"sr.a.*"}, Timeout: time.Second}})
	testenv.WaitFor(t, 5*time.Second, "the history", func() bool { return f.count() == 1 })
	env.Restart(t)
	testenv.WaitFor(t, 10*time.Second, "the stream after the restart", func() bool {
		_, err := js.Stream(context.Background(), testStream)
		return err == nil
	})
	put(t, js, "sr.a.2", "after")
	testenv.WaitFor(t, 5*time.Second, "the message stored after the restart", func() bool { return f.count() == 2 })
	if got := f.seqs(); fmt.Sprint(got) != "[1 2]" {
		t.Fatalf("delivered %v", got)
	}
}

func TestFollowErrors(t *testing.T) {
	env := testenv.StartBroker(t)
	js := env.JS
	newStream(t, js, false)
	put(t, js, "sr.a.1", "x")
	for _, tc := range []struct {
		name   string
		stream string
		opts   streamread.FollowOptions
		want   error
	}{
		{"nothing to subscribe to", testStream, streamread.FollowOptions{}, streamread.ErrInvalidOptions},
		{"bad subject", testStream, streamread.FollowOptions{Subjects: []string{"a..b"}}, streamread.ErrInvalidOptions},
		{"bad batch", testStream, streamread.FollowOptions{Subjects: []string{"sr.>"}, Options: streamread.Options{Batch: -1}}, streamread.ErrInvalidOptions},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := streamread.Follow(context.Background(), js, tc.stream, tc.opts); !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
		})
	}
	t.Run("no such stream ends the updates", func(t *testing.T) {
		f, err := streamread.Follow(context.Background(), js, "NOPE", streamread.FollowOptions{Subjects: []string{"nope.>"}})
		if err != nil {
			t.Fatal(err)
		}
		for m := range f.Updates() {
			t.Fatalf("update %v from a stream that does not exist", m)
		}
		if err := f.Err(); !errors.Is(err, streamread.ErrNoStream) {
			t.Fatalf("got %v, want ErrNoStream", err)
		}
	})
	t.Run("the end of the context stops it without error", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		f, err := streamread.Follow(ctx, js, testStream, streamread.FollowOptions{Subjects: []string{"sr.>"}})
		if err != nil {
			t.Fatal(err)
		}
		if m := <-f.Updates(); m == nil || m.Seq != 1 {
			t.Fatalf("first update %v, want sequence 1", m)
		}
		if m := <-f.Updates(); m != nil {
			t.Fatalf("second update %v, want the caught-up mark (nil)", m)
		}
		cancel()
		for range f.Updates() {
		}
		if err := f.Err(); err != nil {
			t.Fatalf("got %v, want nil", err)
		}
	})
}

// TestClusterRead: on a 3-node cluster (PCM_STATUS with 3 replicas, each
// answering direct gets), a scan and a follow see every message once, in
// order; a replica lagging behind at most ends a read early.
func TestClusterRead(t *testing.T) {
	c := testenv.StartCluster(t, 3)
	_, js := c.Connect(t)
	const n = 300
	f := followStream(t, js, "PCM_STATUS", streamread.FollowOptions{
		Options: streamread.Options{Filters: []string{"pcm.status.c1.*"}, Batch: 7},
	})
	for i := range n {
		if _, err := js.Publish(context.Background(), fmt.Sprintf("pcm.status.c%d.j%d", 1+i%2, i), []byte("x")); err != nil {
			t.Fatal(err)
		}
	}
	testenv.WaitFor(t, 10*time.Second, "every message of c1 followed", func() bool { return f.count() >= n/2 })
	seqs := f.seqs()
	for i := 1; i < len(seqs); i++ {
		if seqs[i] <= seqs[i-1] {
			t.Fatalf("out of order or repeated at %d: %d after %d", i, seqs[i], seqs[i-1])
		}
	}
	if len(seqs) != n/2 {
		t.Fatalf("followed %d, want %d", len(seqs), n/2)
	}
	testenv.WaitFor(t, 10*time.Second, "a scan of every message", func() bool {
		got := 0
		err := streamread.Scan(context.Background(), js, "PCM_STATUS", streamread.Options{Batch: 50}, func(streamread.Msg) error {
			got++
			return nil
		})
		return err == nil && got == n
	})
}

// TestFollowWholeStreamAcrossRestarts: a Follower of a whole stream on a
// connection of its own hears each message stored after a broker restart,
// restart after restart, well before its resync.
func TestFollowWholeStreamAcrossRestarts(t *testing.T) {
	env := testenv.StartBroker(t)
	newStream(t, env.JS, false)
	put(t, env.JS, "sr.a.0", "before")
	_, js := env.Connect(t)
	f := follow(t, js, streamread.FollowOptions{Subjects: []string{"sr.>"}, Resync: time.Hour,
		Options: streamread.Options{Timeout: time.Second}})
	testenv.WaitFor(t, 5*time.Second, "the history", func() bool { return f.count() == 1 })
	for i := 1; i <= 5; i++ {
		env.Restart(t)
		put(t, env.JS, fmt.Sprintf("sr.a.%d", i), "after")
		want := i + 1
		testenv.WaitFor(t, 8*time.Second, fmt.Sprintf("the message stored after restart %d", i), func() bool { return f.count() == want })
	}
}
