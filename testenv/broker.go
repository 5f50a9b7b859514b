package testenv

import (
	"context"
	"net"
	"net/url"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/pcm-project/pcm/broker"
	"github.com/pcm-project/pcm/broker/auth"
)

// startTimeout bounds the start and the provisioning of a test broker.
const startTimeout = 30 * time.Second

// Broker is a running embedded pcm broker for a test, provisioned, cleaned
// up by t.Cleanup.
type Broker struct {
	// URL is the client URL, stable across Restart (same port).
	URL string
	// LeafURL is the leaf node URL (WithLeafListen), stable across Restart;
	// empty otherwise.
	LeafURL string
	// Dir is the store directory (a t.TempDir()).
	Dir string
	// NC is a connection owned by the helper; it reconnects across Restart.
	NC *nats.Conn
	// JS is JetStream on NC.
	JS jetstream.JetStream
	// Sec is the authentication and TLS material (WithAuth, WithTLS, or the
	// secure test mode); nil for an open broker. NC, JS and Connect use
	// its admin credentials.
	Sec *Security

	cfg  broker.Config
	opts options

	mu sync.Mutex
	b  *broker.Broker // nil while stopped
}

// StartBroker starts a broker on a random loopback port and a temporary
// store directory, provisions it (unless WithoutProvision) and returns once
// it is ready. The broker and its connections are closed at cleanup.
func StartBroker(t testing.TB, opts ...Option) *Broker {
	t.Helper()
	o := buildOptions(opts)
	tb := &Broker{
		Dir:  t.TempDir(),
		opts: o,
		Sec:  newSecurity(t, o),
	}
	tb.cfg = broker.Config{
		StoreDir:   tb.Dir,
		Listen:     "127.0.0.1:-1",
		ServerName: "pcm-test",
		Logger:     o.logger,
	}
	if o.leaf {
		tb.cfg.Domain, tb.cfg.LeafListen, tb.cfg.Relays = "hub", "127.0.0.1:-1", o.relays
	}
	tb.Sec.apply(&tb.cfg)
	tb.cfg.FeatureFlags = o.flags
	b := startOne(t, tb.cfg)
	tb.b = b
	t.Cleanup(tb.Stop)

	// Pin the ports so that Restart comes back where clients look.
	port := portOf(t, b.ClientURL())
	tb.cfg.Listen = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	tb.URL = b.ClientURL()
	if o.leaf {
		tb.LeafURL = b.LeafURL()
		tb.cfg.LeafListen = net.JoinHostPort("127.0.0.1", strconv.Itoa(portOf(t, tb.LeafURL)))
	}
	register(t, tb.Sec, tb.URL)

	tb.NC, tb.JS = connect(t, "testenv", []string{tb.URL}, tb.Sec.adminOptions(t)...)
	t.Cleanup(tb.NC.Close)

	// What pcm broker runs next to its server, on the helper's admin
	// connection (which reconnects across Restart).
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	svc, err := broker.StartServices(ctx, tb.JS, o.services())
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	t.Cleanup(svc.Stop)
	return tb
}

// startOne creates and starts a broker, failing the test on error.
func startOne(t testing.TB, cfg broker.Config) *broker.Broker {
	t.Helper()
	b, err := broker.New(cfg)
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	if err := b.Start(ctx); err != nil {
		t.Fatalf("testenv: %v", err)
	}
	return b
}

// portOf extracts the port of a scheme://host:port URL.
func portOf(t testing.TB, raw string) int {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatalf("testenv: URL %q: %v", raw, err)
	}
	port, err := strconv.Atoi(u.Port())
	if err != nil {
		t.Fatalf("testenv: URL %q has no port: %v", raw, err)
	}
	return port
}

// Connect opens a new connection to the broker (reconnecting across
// Restart), closed at cleanup.
func (b *Broker) Connect(t testing.TB) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	nc, js := connect(t, t.Name(), []string{b.URL}, b.Sec.adminOptions(t)...)
	t.Cleanup(nc.Close)
	return nc, js
}

// ConnectAs opens a new connection as u (with fresh credentials of u when
// the broker has auth, and the CA with TLS), closed at cleanup.
func (b *Broker) ConnectAs(t testing.TB, u auth.User) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	nc, js := connect(t, t.Name()+" as "+u.UserName(), []string{b.URL}, ClientOptions(t, b.URL, u)...)
	t.Cleanup(nc.Close)
	return nc, js
}

// Stop shuts the broker down gracefully and keeps its store directory.
// Connections stay open and reconnect after Restart. Stopping a stopped
// broker does nothing.
func (b *Broker) Stop() {
	b.mu.Lock()
	srv := b.b
	b.b = nil
	b.mu.Unlock()
	if srv != nil {
		srv.Shutdown()
	}
}

// Restart stops the broker if it is running and starts it again on the same
// port and store directory, then waits until the helper connection NC has
// reconnected.
func (b *Broker) Restart(t testing.TB) {
	t.Helper()
	b.Stop()
	srv := startOne(t, b.cfg)
	b.mu.Lock()
	b.b = srv
	b.mu.Unlock()
	if srv.ClientURL() != b.URL {
		t.Fatalf("testenv: restarted broker listens on %s, want %s", srv.ClientURL(), b.URL)
	}
	WaitFor(t, 10*time.Second, "the helper connection to reconnect after Restart", b.NC.IsConnected)
	// Connected is not yet answering: with accounts (auth on), JetStream may
	// take a moment to serve the account again, and a request sent before
	// that is dropped rather than refused.
	WaitFor(t, 10*time.Second, "JetStream to answer after Restart", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_, err := b.JS.AccountInfo(ctx)
		return err == nil
	})
}

// Server is the running broker, nil while stopped.
func (b *Broker) Server() *broker.Broker {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b
}
