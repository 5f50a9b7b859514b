package testenv

import (
	"go.uber.org/zap"

	"github.com/pcm-project/pcm/broker"
)

// options collects what the Options set.
type options struct {
	provision    bool
	provisionSet bool
	popts        broker.ProvisionOptions
	logger       *zap.Logger
	auth, tls    bool
	flags        map[string]bool
	noView       bool
	leaf, relays bool
}

// Option changes how StartBroker or StartCluster sets things up.
type Option func(*options)

// WithoutProvision starts the broker without creating the pcm streams and
// buckets, for tests of provisioning itself.
func WithoutProvision() Option { return func(o *options) { o.provision = false } }

// WithProvisionOptions provisions with o instead of the defaults (a cluster
// otherwise provisions with min(n, 3) replicas).
func WithProvisionOptions(o broker.ProvisionOptions) Option {
	return func(opts *options) {
		opts.popts = o
		opts.provisionSet = true
	}
}

// WithoutView starts no client view service (internal/clientview), which
// StartBroker and StartCluster otherwise run as pcm broker does
// (broker.StartServices).
func WithoutView() Option { return func(o *options) { o.noView = true } }

// WithLogger routes the brokers' and nats-server's logs to l (for example
// zaptest.NewLogger(t)). By default they are discarded.
func WithLogger(l *zap.Logger) Option { return func(o *options) { o.logger = l } }

// WithFeatureFlags sets nats-server feature flags on the broker or every
// cluster member (for example {"js_ack_fc_v2": true}, the v2 ack subject
// format).
func WithFeatureFlags(flags map[string]bool) Option { return func(o *options) { o.flags = flags } }

// WithLeafListen gives the broker a JetStream domain ("hub") and a leaf
// node listener on a random loopback port (Broker.LeafURL), kept across
// Restart.
func WithLeafListen() Option { return func(o *options) { o.leaf = true } }

// WithRelays is WithLeafListen for relays (broker.Config.Relays): leaf
// nodes without JetStream whose clients use the broker's JetStream.
func WithRelays() Option { return func(o *options) { o.leaf, o.relays = true, true } }

// buildOptions applies opts over the defaults.
func buildOptions(opts []Option) options {
	o := options{provision: true, auth: Secure(), tls: Secure()}
	for _, f := range opts {
		f(&o)
	}
	return o
}

// services are the broker services o asks for (broker.StartServices).
func (o options) services() broker.ServicesConfig {
	cfg := broker.ServicesConfig{NoView: o.noView}
	if o.provision {
		popts := o.popts
		cfg.Provision = &popts
	}
	return cfg
}
