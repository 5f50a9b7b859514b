package integration_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/pcm-project/pcm/events"
	"github.com/pcm-project/pcm/publisher"
	"github.com/pcm-project/pcm/testenv"
)

// TestPartialPublishSaysWhatWasStored: when the broker stores the offer for
// the first target and refuses the second, Publish returns a PartialError
// naming the stored, failed and unsent targets; retrying the same job id
// after the cause is gone stores each target once.
func TestPartialPublishSaysWhatWasStored(t *testing.T) {
	env := testenv.StartBroker(t)
	ctx := context.Background()
	s, err := env.JS.Stream(ctx, events.StreamJobs)
	if err != nil {
		t.Fatal(err)
	}
	orig := s.CachedInfo().Config
	capped := orig
	capped.MaxMsgs, capped.Discard = 1, jetstream.DiscardNew // room for one copy only
	if _, err := env.JS.UpdateStream(ctx, capped); err != nil {
		t.Fatal(err)
	}
	p := newPublisher(t, env.JS)
	j := job([]string{"true"}, toClient("a"), toGroup("b"), events.Target{Kind: events.TargetAll})
	j.JobID = "partial-1"
	_, err = p.Publish(ctx, j)
	var pe *publisher.PartialError
	if !errors.As(err, &pe) || !errors.Is(err, publisher.ErrPublish) {
		t.Fatalf("want a PartialError, got %v", err)
	}
	if len(pe.Stored) != 1 || pe.Stored[0] != toClient("a") || pe.Failed != toGroup("b") || len(pe.NotSent) != 1 || pe.NotSent[0].Kind != events.TargetAll {
		t.Fatalf("partial error %+v", pe)
	}
	for _, want := range []string{"stored for client:a", "failed for group:b", "not sent to all", "partial-1"} {
		if !strings.Contains(err.Error(), want) {
			t.Fatalf("error %q does not say %q", err, want)
		}
	}
	if _, err := env.JS.UpdateStream(ctx, orig); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Publish(ctx, j); err != nil {
		t.Fatalf("retry: %v", err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != 3 {
		t.Fatalf("after the retry PCM_JOBS holds %d copies, want 3 (one per target)", info.State.Msgs)
	}
}
