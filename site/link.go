package site

import (
	"context"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/pcm-project/pcm/events"
	"github.com/pcm-project/pcm/internal/backoff"
)

// linkTimeout bounds one attempt to link the site.
const linkTimeout = 10 * time.Second

// LinkedStreams are the hub's streams that source the site's stream of the
// same name: PCM_STATUS (every status of the site's agents, with its
// Nats-Msg-Id, so that the hub stores each once, in the site's order) and
// the stream of PCM_AGENTS (the site's clients' inventory and heartbeats,
// for the hub's views).
func LinkedStreams() []string {
	return []string{events.StreamStatus, "KV_" + events.BucketAgents}
}

// Link makes the hub's streams (LinkedStreams) source the site's, through
// hub, a JetStream of the hub's domain (jetstream.NewWithDomain over the
// site broker's own connection): idempotent. JetStream then copies what the
// site stores to the hub, resuming after the last message copied whenever
// the link returns.
func Link(ctx context.Context, hub jetstream.JetStream, site string) error {
	ctx, cancel := backoff.WithDefaultTimeout(ctx, linkTimeout)
	defer cancel()
	api := events.DomainAPI(site)
	for _, name := range LinkedStreams() {
		s, err := hub.Stream(ctx, name)
		if err != nil {
			return fmt.Errorf("%w: the hub's stream %s: %w", ErrLink, name, err)
		}
		cfg := s.CachedInfo().Config
		if sourcesFrom(cfg, name, api) {
			continue
		}
		cfg.Sources = append(cfg.Sources, &jetstream.StreamSource{Name: name, External: &jetstream.ExternalStream{APIPrefix: api}})
		if _, err := hub.UpdateStream(ctx, cfg); err != nil {
			return fmt.Errorf("%w: making the hub's %s source the site's: %w", ErrLink, name, err)
		}
	}
	return nil
}

// sourcesFrom reports whether cfg already sources stream name from api.
func sourcesFrom(cfg jetstream.StreamConfig, name, api string) bool {
	for _, src := range cfg.Sources {
		if src != nil && src.Name == name && src.External != nil && src.External.APIPrefix == api {
			return true
		}
	}
	return false
}

// Relink makes the hub's streams (LinkedStreams) start sourcing the site
// afresh: it removes the site's source and adds it again. nats-server
// retries a source that failed with a backoff that grows by 10 s per
// failure, up to 2 minutes; after a cut, the site calls Relink as soon as
// the hub answers again, so that its statuses arrive now. A source added
// again resumes after the last message it copied (nats-server finds it in
// the stream), and Nats-Msg-Id deduplicates the rest.
func Relink(ctx context.Context, hub jetstream.JetStream, site string) error {
	ctx, cancel := backoff.WithDefaultTimeout(ctx, linkTimeout)
	defer cancel()
	for _, name := range LinkedStreams() {
		if err := resource(ctx, hub, name, name, events.DomainAPI(site)); err != nil {
			return fmt.Errorf("%w: the hub's %s: %w", ErrLink, name, err)
		}
	}
	return Link(ctx, hub, site)
}

// RelinkJobs makes the site's PCM_JOBS_HUB (through local, the site's
// JetStream) start sourcing the hub's PCM_JOBS afresh, for the same
// reason as Relink.
func RelinkJobs(ctx context.Context, local jetstream.JetStream, hubDomain string) error {
	ctx, cancel := backoff.WithDefaultTimeout(ctx, linkTimeout)
	defer cancel()
	if err := resource(ctx, local, events.StreamJobsHub, events.StreamJobs, events.DomainAPI(hubDomain)); err != nil {
		return fmt.Errorf("%w: the site's %s: %w", ErrLink, events.StreamJobsHub, err)
	}
	return nil
}

// resource removes stream's source of name through api and adds it back,
// as it was; nothing when stream has no such source.
func resource(ctx context.Context, js jetstream.JetStream, stream, name, api string) error {
	s, err := js.Stream(ctx, stream)
	if err != nil {
		return err
	}
	cfg := s.CachedInfo().Config
	var src *jetstream.StreamSource
	kept := cfg.Sources[:0:0]
	for _, c := range cfg.Sources {
		if c != nil && c.Name == name && c.External != nil && c.External.APIPrefix == api {
			src = c
			continue
		}
		kept = append(kept, c)
	}
	if src == nil {
		return nil
	}
	cfg.Sources = kept
	if _, err := js.UpdateStream(ctx, cfg); err != nil {
		return fmt.Errorf("removing its source: %w", err)
	}
	cfg.Sources = append(kept, src)
	if _, err := js.UpdateStream(ctx, cfg); err != nil {
		return fmt.Errorf("adding its source back: %w", err)
	}
	return nil
}

// hubProbe is how often the site asks whether the hub answers.
const hubProbe = time.Second

// keepLinked links the site as soon as the hub answers, relinks both ways
// (Relink, RelinkJobs) each time the hub answers after not answering (a
// cut, or the site's start), and checks the link every cfg.Relink, until
// ctx ends.
func keepLinked(ctx context.Context, local, hub jetstream.JetStream, cfg Config) {
	var linkedAt time.Time
	up := false
	for ctx.Err() == nil {
		pctx, cancel := context.WithTimeout(ctx, hubProbe)
		_, err := hub.AccountInfo(pctx)
		cancel()
		switch {
		case err != nil:
			if up {
				cfg.Logger.Info("the hub does not answer: the site works on its own until the link returns", zap.Error(err))
			}
			up = false
		case !up:
			// The hub answers: at the start, or after a cut.
			err := Relink(ctx, hub, cfg.Name)
			if err == nil {
				err = RelinkJobs(ctx, local, cfg.HubDomain)
			}
			if err != nil {
				cfg.Logger.Info("linking to the hub", zap.Error(err))
				break
			}
			up, linkedAt = true, time.Now()
			cfg.Logger.Info("linked to the hub: each sources the other afresh", zap.String("hub_domain", cfg.HubDomain))
		case time.Since(linkedAt) >= cfg.Relink:
			if err := Link(ctx, hub, cfg.Name); err != nil {
				cfg.Logger.Info("checking the link to the hub", zap.Error(err))
				break
			}
			linkedAt = time.Now()
		}
		if backoff.Sleep(ctx, hubProbe) != nil {
			return
		}
	}
}
