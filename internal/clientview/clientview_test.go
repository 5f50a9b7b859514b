package clientview_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/pcm-project/pcm/events"
	"github.com/pcm-project/pcm/fleet"
	"github.com/pcm-project/pcm/internal/clientview"
	"github.com/pcm-project/pcm/internal/streamread"
	"github.com/pcm-project/pcm/testenv"
)

// TestView: a client's view holds the events of its own subjects only, in
// stream order, over several pages, with the stream's sequences whatever
// headers the stored messages carry; without a view service the client
// learns so at once.
func TestView(t *testing.T) {
	env := testenv.StartBroker(t, testenv.WithoutView())
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := fleet.EnrollConsumer(ctx, env.JS, "c1", []string{"g1"}, fleet.ConsumerOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := fleet.EnrollConsumer(ctx, env.JS, "c2", []string{"g2"}, fleet.ConsumerOptions{}); err != nil {
		t.Fatal(err)
	}
	var mine []uint64
	pub := func(subject, body string, forged bool) uint64 {
		m := nats.NewMsg(subject)
		m.Data = []byte(body)
		if forged {
			m.Header.Set(clientview.HdrSeq, "99999999")
			m.Header.Set(clientview.HdrSubject, "pcm.jobs.client.c1")
		}
		pa, err := env.JS.PublishMsg(ctx, m)
		if err != nil {
			t.Fatal(err)
		}
		return pa.Sequence
	}
	for i := 0; i < 1200; i++ {
		switch i % 6 {
		case 0:
			mine = append(mine, pub("pcm.jobs.client.c1", fmt.Sprint(i), i == 600))
		case 1:
			mine = append(mine, pub("pcm.jobs.group.g1", fmt.Sprint(i), false))
		case 2:
			mine = append(mine, pub(events.SubjectJobsAll, fmt.Sprint(i), false))
		case 3:
			pub("pcm.jobs.client.c2", fmt.Sprint(i), true)
		case 4:
			pub("pcm.jobs.group.g2", fmt.Sprint(i), false)
		case 5:
			pub(events.StatusSubject("c1", fmt.Sprintf("J%d", i)), fmt.Sprint(i), false)
			pub(events.StatusSubject("c2", fmt.Sprintf("J%d", i)), fmt.Sprint(i), false)
		}
	}
	nc, _ := env.Connect(t)
	if err := clientview.Scan(ctx, nc, "c1", clientview.Offers, func(streamread.Msg) error { return nil }); !errors.Is(err, clientview.ErrNoView) {
		t.Fatalf("without a view service: %v, want ErrNoView", err)
	}
	svc, err := clientview.Serve(env.JS, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer svc.Stop()

	var got []uint64
	err = clientview.Scan(ctx, nc, "c1", clientview.Offers, func(m streamread.Msg) error {
		got = append(got, m.Seq)
		if m.Stream != events.StreamJobs || m.Time.IsZero() {
			t.Errorf("message %d: stream %q, time %s", m.Seq, m.Stream, m.Time)
		}
		if t, ok := events.TargetOfSubject(m.Subject); !ok || (t.Name != "c1" && t.Name != "g1" && t.Kind != events.TargetAll) {
			return fmt.Errorf("message %d on %s is not c1's", m.Seq, m.Subject)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(got) != fmt.Sprint(mine) {
		t.Fatalf("view of c1's offers: %d messages, want %d (%v...)", len(got), len(mine), got[:min(len(got), 10)])
	}
	statuses := 0
	err = clientview.Scan(ctx, nc, "c1", clientview.Statuses, func(m streamread.Msg) error {
		if m.Subject[:len("pcm.status.c1.")] != "pcm.status.c1." {
			return fmt.Errorf("status %d on %s is not c1's", m.Seq, m.Subject)
		}
		statuses++
		return nil
	})
	if err != nil || statuses != 200 {
		t.Fatalf("view of c1's statuses: %d, %v; want 200", statuses, err)
	}
	for _, tc := range []struct{ client, what string }{{"nobody", clientview.Offers}, {"c1", "secrets"}} {
		if err := clientview.Scan(ctx, nc, tc.client, tc.what, func(streamread.Msg) error { return nil }); !errors.Is(err, clientview.ErrRefused) {
			t.Errorf("view of %s's %s: %v, want ErrRefused", tc.client, tc.what, err)
		}
	}
}

// TestFollow: a follower sends the history, then nil, then each new
// message of the client's subjects once, in order, and nothing of another
// client's.
func TestFollow(t *testing.T) {
	env := testenv.StartBroker(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := fleet.EnrollConsumer(ctx, env.JS, "c1", []string{"g1"}, fleet.ConsumerOptions{}); err != nil {
		t.Fatal(err)
	}
	pub := func(subject string) uint64 {
		pa, err := env.JS.Publish(ctx, subject, []byte(subject))
		if err != nil {
			t.Fatal(err)
		}
		return pa.Sequence
	}
	var want []uint64
	for i := 0; i < 120; i++ {
		want = append(want, pub("pcm.jobs.client.c1"))
		pub("pcm.jobs.client.c2")
	}
	nc, _ := env.Connect(t)
	f, err := clientview.Follow(ctx, nc, "c1", clientview.Offers, events.ConsumerFilters("c1", []string{"g1"}), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Stop()
	var got []uint64
	caught := false
	next := func() {
		select {
		case m, ok := <-f.Updates():
			if !ok {
				t.Fatalf("updates closed: %v", f.Err())
			}
			if m == nil {
				caught = true
				return
			}
			got = append(got, m.Seq)
		case <-time.After(10 * time.Second):
			t.Fatalf("no update after %d messages", len(got))
		}
	}
	for !caught {
		next()
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("history: %d messages, want %d", len(got), len(want))
	}
	for i := 0; i < 30; i++ {
		want = append(want, pub([]string{"pcm.jobs.group.g1", "pcm.jobs.all", "pcm.jobs.client.c1"}[i%3]))
		pub("pcm.jobs.group.g2")
	}
	start := time.Now()
	for len(got) < len(want) {
		next()
	}
	t.Logf("30 new messages delivered within %s", time.Since(start).Round(time.Millisecond))
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("followed %v, want %v", got, want)
	}
}
