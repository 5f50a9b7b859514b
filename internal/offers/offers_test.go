package offers_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/pcm-project/pcm/events"
	"github.com/pcm-project/pcm/internal/offers"
	"github.com/pcm-project/pcm/internal/streamread"
	"github.com/pcm-project/pcm/publisher"
	"github.com/pcm-project/pcm/testenv"
)

func TestScanAndFind(t *testing.T) {
	env := testenv.StartBroker(t)
	ctx := context.Background()
	p, err := publisher.New(env.JS, publisher.Config{Name: "test"})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC()
	job := events.JobOffered{
		Command:        events.CommandLine{Argv: []string{"true"}, Automated: true, Timeout: events.Duration(time.Minute)},
		Targets:        []events.Target{{Kind: events.TargetGroup, Name: "lab"}, {Kind: events.TargetClient, Name: "ws-1"}},
		MandatoryAfter: &now,
	}
	published, err := p.Publish(ctx, job)
	if err != nil {
		t.Fatal(err)
	}
	id := published.JobID
	other := job
	other.Targets = []events.Target{{Kind: events.TargetAll}}
	published, err = p.Publish(ctx, other)
	if err != nil {
		t.Fatal(err)
	}
	otherID := published.JobID
	// Garbage in the stream is skipped, not an error.
	if _, err := env.JS.PublishMsg(ctx, &nats.Msg{Subject: "pcm.jobs.all", Data: []byte("garbage")}); err != nil {
		t.Fatal(err)
	}
	if err := p.Cancel(ctx, id, "superseded"); err != nil {
		t.Fatal(err)
	}

	var seen []string
	err = offers.Scan(ctx, env.JS, streamread.Options{Filters: []string{"pcm.jobs.client.ws-1", "pcm.jobs.all"}}, func(e offers.Entry) bool {
		kind := "offer"
		if e.Cancel != nil {
			kind = "cancel"
		}
		seen = append(seen, kind+":"+e.JobID()+":"+e.Subject)
		return true
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"offer:" + id + ":pcm.jobs.client.ws-1", "offer:" + otherID + ":pcm.jobs.all", "cancel:" + id + ":pcm.jobs.client.ws-1"}
	if len(seen) != len(want) {
		t.Fatalf("scan saw %v, want %v", seen, want)
	}
	for i := range want {
		if seen[i] != want[i] {
			t.Fatalf("scan saw %v, want %v", seen, want)
		}
	}

	found, err := offers.Find(ctx, env.JS, nil, id)
	if err != nil {
		t.Fatal(err)
	}
	if len(found.Copies) != 2 || found.Cancelled == nil || found.Cancelled.Reason != "superseded" || found.Job.JobID != id {
		t.Fatalf("found %+v", found)
	}
	if !offers.StartOf(id).Before(found.Copies[0].Time) {
		t.Fatal("a ULID's scan must start before the offer was stored")
	}
	if _, err := offers.Find(ctx, env.JS, nil, "no-such-job"); !errors.Is(err, offers.ErrNotFound) {
		t.Fatalf("missing job: %v", err)
	}
}
