package testenv

import (
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// connect dials urls with options that make a broker restart transparent:
// unlimited reconnects, a short wait, no jitter; extra (credentials, TLS)
// is appended.
func connect(t testing.TB, name string, urls []string, extra ...nats.Option) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	nc, err := nats.Connect(strings.Join(urls, ","), append([]nats.Option{
		nats.Name(name),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(20 * time.Millisecond),
		nats.ReconnectJitter(0, 0),
		nats.Timeout(5 * time.Second),
	}, extra...)...)
	if err != nil {
		t.Fatalf("testenv: connecting to %s: %v", strings.Join(urls, ","), err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		t.Fatalf("testenv: jetstream on %s: %v", strings.Join(urls, ","), err)
	}
	return nc, js
}
