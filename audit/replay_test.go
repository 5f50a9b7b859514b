package audit_test

import (
	"context"
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/pcm-project/pcm/audit"
	"github.com/pcm-project/pcm/events"
	"github.com/pcm-project/pcm/fleet"
	"github.com/pcm-project/pcm/publisher"
	"github.com/pcm-project/pcm/testenv"
)

// putStatus stores a status of job on client.
func putStatus(t *testing.T, js jetstream.JetStream, client, job string, state events.State) {
	t.Helper()
	exit := 0
	ev, err := events.NewJobStatus(events.JobStatus{JobID: job, ClientID: client, Host: client, State: state, Attempt: 1,
		Runner: events.RunnerService, User: "root", ExitCode: &exit, AgentVersion: "test", Platform: "linux/amd64"})
	if err != nil {
		t.Fatal(err)
	}
	msg, err := events.NewMsg(events.StatusSubject(client, job), ev, "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.PublishMsg(context.Background(), msg); err != nil {
		t.Fatal(err)
	}
}

// describe names an audit event: type, job and, for a status, client.
func describe(t *testing.T, e audit.Event) string {
	t.Helper()
	ev, err := e.Decode()
	if err != nil {
		t.Fatalf("event %s %d: %v", e.Stream, e.Seq, err)
	}
	s := audit.ShortType(ev.Type()) + ":" + ev.Subject()
	if e.Stream == events.StreamStatus {
		s += "@" + e.Subject[len("pcm.status."):len("pcm.status.")+2]
	}
	return s
}

// TestReplay replays both streams merged in stored order, with each filter,
// following new events, and creates no consumer.
func TestReplay(t *testing.T) {
	env := testenv.StartBroker(t)
	js := env.JS
	ctx := context.Background()
	p, err := publisher.New(js, publisher.Config{Name: "test"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := fleet.EnrollConsumer(ctx, js, "c1", []string{"lab"}, fleet.ConsumerOptions{}); err != nil {
		t.Fatal(err)
	}
	offer := func(target events.Target) string {
		t.Helper()
		published, err := p.Publish(ctx, events.JobOffered{
			Command: events.CommandLine{Argv: []string{"true"}, Automated: true, Timeout: events.Duration(time.Minute)},
			Targets: []events.Target{target},
		})
		if err != nil {
			t.Fatal(err)
		}
		return published.JobID
	}
	a := offer(events.Target{Kind: events.TargetGroup, Name: "lab"})
	putStatus(t, js, "c1", a, events.StateStarted)
	b := offer(events.Target{Kind: events.TargetClient, Name: "c2"})
	mid := time.Now()
	putStatus(t, js, "c2", b, events.StateSucceeded)
	c := offer(events.Target{Kind: events.TargetAll})
	if err := p.Cancel(ctx, a, "test"); err != nil {
		t.Fatal(err)
	}
	late := time.Now()
	// The cancellation is stored on the job's cancellation subject, then on
	// its target.
	all := []string{"offered:" + a, "status:" + a + "@c1", "offered:" + b, "status:" + b + "@c2", "offered:" + c, "cancelled:" + a, "cancelled:" + a}

	replay := func(f audit.Filter) []string {
		t.Helper()
		var got []string
		var last time.Time
		err := audit.Replay(ctx, js, f, func(e audit.Event) error {
			if e.Stored.Before(last) {
				t.Errorf("event stored at %s after one stored at %s", e.Stored, last)
			}
			last = e.Stored
			got = append(got, describe(t, e))
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		return got
	}
	for _, tc := range []struct {
		name string
		f    audit.Filter
		want []string
	}{
		{"everything, in stored order", audit.Filter{}, all},
		{"one job", audit.Filter{JobID: a}, []string{all[0], all[1], all[5], all[6]}},
		{"an enrolled client", audit.Filter{Client: "c1"}, []string{all[0], all[1], all[4], all[6]}},
		{"a client not enrolled", audit.Filter{Client: "c2"}, []string{all[2], all[3], all[4]}},
		{"statuses", audit.Filter{Types: []string{"status"}}, []string{all[1], all[3]}},
		{"offers and cancellations", audit.Filter{Types: []string{"offered", "cancelled"}}, []string{all[0], all[2], all[4], all[5], all[6]}},
		{"since", audit.Filter{Since: mid}, all[3:]},
		{"until", audit.Filter{Until: mid}, all[:3]},
		{"since the end", audit.Filter{Since: late}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := replay(tc.f); !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("replayed\n%q\nwant\n%q", got, tc.want)
			}
		})
	}

	t.Run("follow", func(t *testing.T) {
		fctx, cancel := context.WithCancel(ctx)
		defer cancel()
		seen := make(chan string, 16)
		done := make(chan error, 1)
		go func() {
			done <- audit.Replay(fctx, js, audit.Filter{Since: late, Follow: true}, func(e audit.Event) error {
				seen <- describe(t, e)
				return nil
			})
		}()
		next := func(want string) {
			t.Helper()
			select {
			case got := <-seen:
				if got != want {
					t.Fatalf("followed %s, want %s", got, want)
				}
			case <-time.After(time.Second):
				t.Fatalf("%s not followed within a second", want)
			}
		}
		d := offer(events.Target{Kind: events.TargetClient, Name: "c1"})
		next("offered:" + d)
		putStatus(t, js, "c1", d, events.StateStarted)
		next("status:" + d + "@c1")
		putStatus(t, js, "c1", d, events.StateSucceeded)
		next("status:" + d + "@c1")
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Fatalf("following replay ended with %v", err)
		}
	})

	t.Run("no consumer created", func(t *testing.T) {
		for stream, want := range map[string]int{events.StreamJobs: 1, events.StreamStatus: 0} {
			s, err := js.Stream(ctx, stream)
			if err != nil {
				t.Fatal(err)
			}
			if n := s.CachedInfo().State.Consumers; n != want {
				t.Errorf("%s has %d consumers, want %d (the enrolled ones)", stream, n, want)
			}
		}
	})
}

// TestReplayWithoutStreams: a broker without the pcm streams is
// ErrNotProvisioned.
func TestReplayWithoutStreams(t *testing.T) {
	env := testenv.StartBroker(t, testenv.WithoutProvision())
	err := audit.Replay(context.Background(), env.JS, audit.Filter{}, func(audit.Event) error { return nil })
	if !errors.Is(err, audit.ErrNotProvisioned) {
		t.Fatalf("got %v, want %v", err, audit.ErrNotProvisioned)
	}
}
