package site

import (
	"context"

	"github.com/nats-io/nats.go/jetstream"
)

// Run runs what the site does besides serving its agents, until ctx ends.
// local is the site's JetStream, on a connection of the site broker that
// reaches the hub's domain across its leaf connection.
//
// An open site (cfg.Authenticated false) links its streams to the hub's
// (Link, kept up: the hub's PCM_STATUS and PCM_AGENTS source the site's)
// and relays the job events its PCM_JOBS_HUB sources (NewRelay). An
// authenticated site, whose link carries only its own account at the hub,
// reads the hub with direct gets (NewDirectRelay) and forwards its
// statuses and inventory through its account (NewForwarder): it changes no
// stream of the hub's and makes no consumer there.
func Run(ctx context.Context, local jetstream.JetStream, cfg Config) (*Relay, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	hub, err := jetstream.NewWithDomain(local.Conn(), cfg.HubDomain)
	if err != nil {
		return nil, err
	}
	if cfg.Authenticated {
		r := NewDirectRelay(local, hub, cfg.Logger.Named("relay"))
		fw := NewForwarder(local, hub, cfg.Name, cfg.Logger.Named("forward"))
		fw.DropAfter = cfg.DropAfter
		go func() { _ = r.Run(ctx) }()
		go func() { _ = fw.Run(ctx) }()
		return r, nil
	}
	c := NewRelay(local, hub, cfg.Logger.Named("relay"))
	go keepLinked(ctx, local, hub, cfg)
	go func() { _ = c.Run(ctx) }()
	return c, nil
}
