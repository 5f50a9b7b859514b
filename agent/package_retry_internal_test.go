package agent

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/pcm-project/pcm/agent/pkgcache"
	"github.com/pcm-project/pcm/events"
)

// nakMsg is an offer that records the naks it gets.
type nakMsg struct {
	jetstream.Msg
	naks []time.Duration
}

func (m *nakMsg) NakWithDelay(d time.Duration) error { m.naks = append(m.naks, d); return nil }

// TestPackageRetryBound: a package store that cannot be reached sends the
// offer back, for at most Config.PackageRetryFor since the job's first
// such failure; then the job fails with the reason. A permanent refusal
// (here a job directory that cannot be prepared) fails at once.
func TestPackageRetryBound(t *testing.T) {
	s := &Service{face: face{log: zap.NewNop()}, cfg: Config{PackageRetryFor: time.Hour}}
	unreachable := fmt.Errorf("%w: tool@1: reading its info: nats: timeout", pkgcache.ErrDownload)
	ctx := context.Background()

	f := &Facts{Job: events.JobOffered{JobID: "j1"}}
	msg := &nakMsg{}
	if s.packageFailed(ctx, msg, f, unreachable) || f.PackageErr != nil || len(msg.naks) != 1 {
		t.Fatalf("first failure: decided %v, naks %v: want the offer sent back", f.PackageErr, msg.naks)
	}
	if s.packageFailed(ctx, msg, f, unreachable) || len(msg.naks) != 2 {
		t.Fatalf("within the bound: naks %v, want the offer sent back again", msg.naks)
	}
	s.pkgWait["j1"] = time.Now().Add(-time.Hour - time.Minute) // the bound has passed
	if !s.packageFailed(ctx, msg, f, unreachable) || f.PackageErr == nil || !strings.Contains(f.PackageErr.Error(), "retried for 1h1m") {
		t.Fatalf("past the bound: decided %v, naks %v: want the job failed with how long it was retried", f.PackageErr, msg.naks)
	}
	if !errors.Is(f.PackageErr, pkgcache.ErrDownload) || len(msg.naks) != 2 {
		t.Fatalf("past the bound: %v, naks %v", f.PackageErr, msg.naks)
	}

	g := &Facts{Job: events.JobOffered{JobID: "j2"}}
	unpack := fmt.Errorf("%w: emptying /state/jobs/j2/work: unlinkat hold.txt: invalid function", pkgcache.ErrUnpack)
	if !s.packageFailed(ctx, msg, g, unpack) || !errors.Is(g.PackageErr, pkgcache.ErrUnpack) || len(msg.naks) != 2 {
		t.Fatalf("an unpreparable job directory: decided %v, naks %v: want the job failed at once", g.PackageErr, msg.naks)
	}
}
