package broker

import (
	"context"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/pcm-project/pcm/broker/auth"
	"github.com/pcm-project/pcm/internal/clientview"
)

// ServicesConfig says what StartServices runs.
type ServicesConfig struct {
	// Provision, when set, creates or updates pcm's streams and buckets
	// (Provision) before anything else; nil provisions nothing (a cluster
	// member, whose cluster is provisioned once it has formed).
	Provision *ProvisionOptions
	// NoView runs no client view (internal/clientview), through which
	// each desktop lists its own client's offers and statuses.
	NoView bool
	// Logger receives the client view's logs; nil discards them.
	Logger *zap.Logger
}

// Services are what pcm runs in the pcm account next to a broker, besides
// nats-server: the provisioning of its streams and buckets, and the
// client view. pcm broker and pcm up run them on the broker they embed,
// pcm controller next to a cluster pcm does not run, and the test
// environment on its test brokers.
type Services struct {
	view *clientview.Service
}

// StartServices does, through js (an admin's connection of the pcm
// account, or an open broker's), what a pcm broker does once its server
// runs: it provisions pcm's streams and buckets when cfg.Provision is set,
// then serves the client view until Stop. A provisioning that fails
// starts nothing.
func StartServices(ctx context.Context, js jetstream.JetStream, cfg ServicesConfig) (*Services, error) {
	if cfg.Provision != nil {
		if err := Provision(ctx, js, *cfg.Provision); err != nil {
			return nil, fmt.Errorf("provisioning %s: %w", js.Conn().ConnectedUrlRedacted(), err)
		}
	}
	s := &Services{}
	if !cfg.NoView {
		v, err := clientview.Serve(js, cfg.Logger)
		if err != nil {
			return nil, err
		}
		s.view = v
	}
	return s, nil
}

// Stop stops the services (the answers under way end first).
func (s *Services) Stop() {
	if s != nil && s.view != nil {
		s.view.Stop()
	}
}

// ErrNoIssuer: an authenticated broker's own services need an admin of
// the pcm account, whom only the authority's issuer file can mint, and
// none was given (a cluster member that keeps only the authority's public
// JWTs).
var ErrNoIssuer = errors.New("no issuer to mint the broker's own admin")

// ConnectAdmin opens an in-process connection to b (no network, no TLS),
// reconnecting for ever, for the broker's own services (StartServices):
// on an authenticated broker as an admin of the pcm account whose
// credentials iss mints now and never writes anywhere (ErrNoIssuer when
// iss is nil); on an open broker iss is not needed. On a site linked with
// credentials of its own (HubLink.Credentials) it uses their inbox, the
// only one whose answers cross the link back from the hub.
func (b *Broker) ConnectAdmin(iss *auth.Issuer, name string) (*nats.Conn, error) {
	var creds []nats.Option
	if b.cfg.Auth != nil {
		if iss == nil {
			return nil, ErrNoIssuer
		}
		o, err := iss.Option(auth.User{Role: auth.RoleAdmin, Name: "broker-services"})
		if err != nil {
			return nil, err
		}
		creds = append(creds, o)
	}
	return b.connectInProcess(name, creds...)
}

// ConnectAdminCreds is ConnectAdmin as the admin of the credentials file
// path rather than one an issuer mints: how a branch site's broker, which
// keeps no issuer, runs its services (an admin that may connect in process
// only, pcm creds site writes it).
func (b *Broker) ConnectAdminCreds(path, name string) (*nats.Conn, error) {
	return b.connectInProcess(name, nats.UserCredentials(path))
}

// connectInProcess opens an in-process connection to b with opts,
// reconnecting for ever; on a site linked with credentials of its own it
// uses their inbox.
func (b *Broker) connectInProcess(name string, opts ...nats.Option) (*nats.Conn, error) {
	opts = append([]nats.Option{nats.InProcessServer(b.Server()), nats.Name(name), nats.MaxReconnects(-1)}, opts...)
	if b.cfg.Hub != nil && b.cfg.Hub.Credentials != "" {
		// A site's answers from the hub reach only the inbox of its leaf
		// credentials.
		prefix, err := auth.InboxPrefixOfCreds(b.cfg.Hub.Credentials)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrSiteAuth, err)
		}
		opts = append(opts, nats.CustomInboxPrefix(prefix))
	}
	nc, err := nats.Connect(b.ClientURL(), opts...)
	if err != nil {
		return nil, fmt.Errorf("connecting %s in process: %w", name, err)
	}
	return nc, nil
}
