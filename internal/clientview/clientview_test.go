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
	"github.com/pcm-project/pcm/integration/testenv"
	"github.com/pcm-project/pcm/internal/clientview"
	"github.com/pcm-project/pcm/internal/streamread"
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
