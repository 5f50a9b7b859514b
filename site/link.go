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

// keepLinked links the site as soon as the hub answers, then checks the
// link every cfg.Relink, until ctx ends.
func keepLinked(ctx context.Context, hub jetstream.JetStream, cfg Config) {
	b := backoff.Backoff{Max: 5 * time.Second}
	linked := false
	for ctx.Err() == nil {
		err := Link(ctx, hub, cfg.Name)
		wait := cfg.Relink
		switch {
		case err != nil:
			if linked {
				cfg.Logger.Info("the hub does not answer: the site works on its own until the link returns", zap.Error(err))
			} else {
				cfg.Logger.Debug("the hub does not answer yet", zap.Error(err))
			}
			linked = false
			wait = b.Next()
		case !linked:
			cfg.Logger.Info("linked to the hub: it sources the site's statuses and inventory", zap.String("hub_domain", cfg.HubDomain))
			linked = true
			b.Reset()
		}
		if backoff.Sleep(ctx, wait) != nil {
			return
		}
	}
}
