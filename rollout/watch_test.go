package rollout_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/pcm-project/pcm/events"
	"github.com/pcm-project/pcm/publisher"
	"github.com/pcm-project/pcm/rollout"
	"github.com/pcm-project/pcm/testenv"
)

// TestReadWithoutClients: a job that no client is expected to run has a
// rollout too (an empty one, which pcm publish --wait refuses to wait
// for), and an unknown job is ErrJobNotFound.
func TestReadWithoutClients(t *testing.T) {
	env := testenv.StartBroker(t)
	p, err := publisher.New(env.JS, publisher.Config{Name: "test"})
	if err != nil {
		t.Fatal(err)
	}
	job, err := p.Publish(context.Background(), events.JobOffered{
		Command: events.CommandLine{Argv: []string{"true"}, Automated: true},
		Targets: []events.Target{{Kind: events.TargetGroup, Name: "nobody"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	r, err := rollout.Read(ctx, env.JS, job.JobID)
	if err != nil || r.JobID != job.JobID || len(r.Clients) != 0 || r.Verdict(0) != rollout.VerdictRunning {
		t.Fatalf("Read = %+v, %v; want the job with no client, running", r, err)
	}
	if _, err := rollout.Read(ctx, env.JS, "01M8NOSUCHJOB0000000000000"); !errors.Is(err, rollout.ErrJobNotFound) {
		t.Fatalf("Read of an unknown job = %v, want %v", err, rollout.ErrJobNotFound)
	}
}
