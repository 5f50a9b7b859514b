package streamread_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/pcm-project/pcm/broker/auth"
	"github.com/pcm-project/pcm/internal/streamread"
	"github.com/pcm-project/pcm/testenv"
)

func TestLast(t *testing.T) {
	env := testenv.StartBroker(t, testenv.WithoutProvision())
	newStream(t, env.JS, false)
	ctx := context.Background()
	put(t, env.JS, "sr.a.1", "first")
	seq := put(t, env.JS, "sr.a.1", "second")
	put(t, env.JS, "sr.b.1", "other")

	m, found, err := streamread.Last(ctx, env.JS, testStream, "sr.a.1")
	if err != nil || !found {
		t.Fatalf("Last(sr.a.1) = found %v, %v", found, err)
	}
	if m.Seq != seq || string(m.Data) != "second" || m.Subject != "sr.a.1" || m.Stream != testStream ||
		m.Header.Get("X-Test") != "kept" || m.Header.Get("Nats-Sequence") != "" || m.Time.IsZero() {
		t.Fatalf("Last(sr.a.1) = %+v", m)
	}
	if _, found, err := streamread.Last(ctx, env.JS, testStream, "sr.a.2"); err != nil || found {
		t.Fatalf("Last of a subject with nothing stored = found %v, %v; want not found, no error", found, err)
	}
	inBody, found, err := streamread.LastInBody(ctx, env.JS, testStream, "sr.a.1")
	if err != nil || !found || inBody.Seq != m.Seq || string(inBody.Data) != "second" || inBody.Subject != "sr.a.1" || inBody.Header.Get("X-Test") != "kept" {
		t.Fatalf("LastInBody(sr.a.1) = %+v, found %v, %v; want what Last read", inBody, found, err)
	}
	if _, found, err := streamread.LastInBody(ctx, env.JS, testStream, "sr.a.2"); err != nil || found {
		t.Fatalf("LastInBody of a subject with nothing stored = found %v, %v; want not found, no error", found, err)
	}
	for _, bad := range []string{"sr.a.*", "sr.>", "", "sr..a"} {
		if _, _, err := streamread.Last(ctx, env.JS, testStream, bad); !errors.Is(err, streamread.ErrInvalidOptions) {
			t.Errorf("Last(%q) = %v, want %v", bad, err, streamread.ErrInvalidOptions)
		}
		if _, _, err := streamread.LastInBody(ctx, env.JS, testStream, bad); !errors.Is(err, streamread.ErrInvalidOptions) {
			t.Errorf("LastInBody(%q) = %v, want %v", bad, err, streamread.ErrInvalidOptions)
		}
	}
	_, _, err = streamread.Last(ctx, env.JS, "NO_SUCH_STREAM", "sr.a.1")
	if !errors.Is(err, streamread.ErrNoStream) || !errors.Is(err, jetstream.ErrStreamNotFound) {
		t.Fatalf("Last on a missing stream = %v, want %v", err, streamread.ErrNoStream)
	}
}

// TestLastAsAgent: an agent restricted to a job's cancellation subject
// reads it with a direct get by subject; the broker's own API prefix comes
// from the JetStream handle.
func TestLastAsAgent(t *testing.T) {
	env := testenv.StartBroker(t, testenv.WithAuth())
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := env.JS.Publish(ctx, "pcm.jobs.cancel.j1", []byte("cancelled")); err != nil {
		t.Fatal(err)
	}
	_, js := env.ConnectAs(t, auth.User{Role: auth.RoleAgent, Name: "c1"})
	m, found, err := streamread.Last(ctx, js, "PCM_JOBS", "pcm.jobs.cancel.j1")
	if err != nil || !found || string(m.Data) != "cancelled" {
		t.Fatalf("agent's Last = %q, found %v, %v", m.Data, found, err)
	}
	if _, found, err := streamread.Last(ctx, js, "PCM_JOBS", "pcm.jobs.cancel.j2"); err != nil || found {
		t.Fatalf("agent's Last of a job never cancelled = found %v, %v", found, err)
	}
	// A subject its account does not import leads nowhere: nobody answers
	// (a desktop, whose user permissions are narrower, is refused: no
	// answer in time).
	for _, u := range []auth.User{{Role: auth.RoleAgent, Name: "c1"}, {Role: auth.RoleDesktop, Name: "c1"}} {
		_, js := env.ConnectAs(t, u)
		short, cancel2 := context.WithTimeout(ctx, 500*time.Millisecond)
		_, found, err := streamread.Last(short, js, "PCM_JOBS", "pcm.jobs.client.c2")
		cancel2()
		if found || !(errors.Is(err, streamread.ErrNoStream) || errors.Is(err, streamread.ErrNoAnswer)) {
			t.Fatalf("%s's Last of another client's subject = found %v, %v; want %v or %v", u.UserName(), found, err, streamread.ErrNoStream, streamread.ErrNoAnswer)
		}
	}
}
