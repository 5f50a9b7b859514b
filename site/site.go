package site

import (
	"context"

	"github.com/nats-io/nats.go/jetstream"
)

// Run links the site to its hub (Link, kept up) and runs the relay of
// its job events (Relay) until ctx ends. local is the site's JetStream, on a connection of
// the site broker that reaches the hub's domain across its leaf
// connection.
func Run(ctx context.Context, local jetstream.JetStream, cfg Config) (*Relay, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	hub, err := jetstream.NewWithDomain(local.Conn(), cfg.HubDomain)
	if err != nil {
		return nil, err
	}
	c := NewRelay(local, hub, cfg.Logger.Named("relay"))
	go keepLinked(ctx, local, hub, cfg)
	go func() { _ = c.Run(ctx) }()
	return c, nil
}
