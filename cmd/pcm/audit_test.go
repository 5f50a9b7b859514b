package main

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/pcm-project/pcm/audit"
	"github.com/pcm-project/pcm/broker/auth"
	"github.com/pcm-project/pcm/events"
	"github.com/pcm-project/pcm/testenv"
)

// syncBuffer is an io.Writer safe for the replay's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestFollowResumesOnANewConnection: a following replay whose connection
// is closed under it reconnects and resumes after the last event it
// delivered: every stored event once, in order, those stored meanwhile
// included.
func TestFollowResumesOnANewConnection(t *testing.T) {
	env := testenv.StartBroker(t)
	ctx := context.Background()
	publish := func(from, to int) {
		for i := from; i < to; i++ {
			if _, err := env.JS.Publish(ctx, events.StatusSubject("c1", fmt.Sprintf("j%d", i)), []byte(fmt.Sprint(i))); err != nil {
				t.Fatal(err)
			}
		}
	}
	publish(0, 30)
	var mu sync.Mutex
	var conns []*nats.Conn
	conn := func() (func(), jetstream.JetStream, error) {
		nc, err := nats.Connect(env.URL, testenv.ClientOptions(t, env.URL, auth.User{Role: auth.RoleAuditor, Name: "resume"})...)
		if err != nil {
			return nil, nil, err
		}
		js, err := jetstream.New(nc)
		if err != nil {
			return nil, nil, err
		}
		mu.Lock()
		conns = append(conns, nc)
		mu.Unlock()
		return nc.Close, js, nil
	}
	f := audit.Filter{Follow: true}
	var errw syncBuffer
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	got := make(chan uint64, 64)
	done := make(chan error, 1)
	go func() {
		done <- resumingReplay(&errw, f, conn)(rctx, func(ev audit.Event) error {
			if ev.Seq == 10 {
				mu.Lock()
				conns[len(conns)-1].Close() // the connection is lost for good
				mu.Unlock()
			}
			got <- ev.Seq
			return nil
		})
	}()
	var seqs []uint64
	wait := func(n int) {
		t.Helper()
		for len(seqs) < n {
			select {
			case s := <-got:
				seqs = append(seqs, s)
			case err := <-done:
				t.Fatalf("the replay ended after %v: %v", seqs, err)
			case <-time.After(10 * time.Second):
				t.Fatalf("after %v, nothing for 10s (stderr: %s)", seqs, errw.String())
			}
		}
	}
	wait(30)
	publish(30, 35)
	wait(35)
	for i, s := range seqs {
		if s != uint64(i+1) {
			t.Fatalf("delivered %v: want 1 to 35, each once, in order", seqs)
		}
	}
	mu.Lock()
	n := len(conns)
	mu.Unlock()
	if n < 2 || !regexp.MustCompile(`connection closed; reconnecting to resume PCM_STATUS after sequence (1\d|2\d|30)\n`).MatchString(errw.String()) {
		t.Fatalf("%d connections, stderr %q: want a second one, resuming after the last sequence delivered", n, errw.String())
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("the replay ended with %v, want context.Canceled", err)
	}
}
