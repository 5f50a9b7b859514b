package agent

import (
	"context"
	"errors"
	"fmt"

	"github.com/cloudevents/sdk-go/v2/event"
	"go.uber.org/zap"

	"github.com/pcm-project/pcm/events"
	"github.com/pcm-project/pcm/internal/offers"
)

// checkSignature verifies a job event against the trusted keys (see
// Config.TrustedKeys). With none, every event passes: the open default.
func (f *face) checkSignature(ev event.Event) error {
	if len(f.cfg.TrustedKeys) == 0 {
		return nil
	}
	_, err := events.Verify(ev, f.cfg.TrustedKeys)
	return err
}

// warnUnsigned says at start how job events are checked: loudly when they
// are not.
func (f *face) warnUnsigned() {
	if len(f.cfg.TrustedKeys) == 0 {
		f.log.Warn("NO TRUSTED KEYS: this agent runs UNSIGNED jobs: anyone who may publish on the jobs subjects runs commands here with its rights; " +
			"give --trusted-keys the public keys of your publishers (pcm keys new) on anything but a private test setup")
		return
	}
	f.log.Info("job signatures are verified", zap.Strings("trusted_keys", f.cfg.TrustedKeys))
}

// trusted is the desktop's offers.Verifier: it logs an event it will not
// list or run.
func (d *Desktop) trusted(ev event.Event) error {
	err := d.checkSignature(ev)
	if err != nil {
		d.counts.untrusted.Add(1)
		d.log.Warn("ignoring a job event whose signature is not trusted", zap.String("job", events.JobIDOf(ev)),
			zap.String("type", ev.Type()), zap.Error(err))
	}
	return err
}

// find looks jobID's offer up among the verified events of the client's
// subjects. When the only offers of jobID fail verification, the error
// says why instead of "not found".
func (d *Desktop) find(ctx context.Context, jobID string) (offers.Found, error) {
	var refused error
	verify := func(ev event.Event) error {
		err := d.trusted(ev)
		if err != nil && ev.Type() == events.TypeJobOffered && events.JobIDOf(ev) == jobID {
			refused = err
		}
		return err
	}
	found, err := offers.FindIn(jobID, func(fn func(offers.Entry) bool) error {
		return d.viewOffers(ctx, verify, fn)
	})
	if errors.Is(err, offers.ErrNotFound) && refused != nil {
		return found, fmt.Errorf("%w: job %s is not signed by a trusted key, it is never run: %w", ErrNotRunnable, jobID, refused)
	}
	return found, err
}
