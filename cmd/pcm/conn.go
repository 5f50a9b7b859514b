package main

import (
	"fmt"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// connect dials the broker at url for a short-lived command: it fails fast
// with a clear error when no broker answers. extra (credentials, TLS) is
// appended; commands use globals.connect, which passes the user's.
func connect(url, name string, extra ...nats.Option) (*nats.Conn, jetstream.JetStream, error) {
	nc, err := nats.Connect(url, append([]nats.Option{nats.Name(name), nats.Timeout(dialTimeout)}, extra...)...)
	if err != nil {
		return nil, nil, fmt.Errorf("cannot reach the broker at %s: %w (is pcm broker or pcm up running? set --url or PCM_URL)%s", url, err, authHint(err))
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, nil, err
	}
	return nc, js, nil
}
