package main

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"os"
	"strconv"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// runRelay serves a relay until ctx ends: a nats-server without JetStream
// listening for clients on listen (host:port, port 0 for any) and joined to
// the broker's leaf node listener at hub, so that the connections of a
// fleet larger than one process's open-file limit are spread over relays
// while the broker keeps every consumer, stream and lock. It prints
// "ready URL" once the leaf connection is up and carries the broker's
// interest in JetStream's API (and again never: a lost link
// is re-dialled every second, as a site's is).
func runRelay(ctx context.Context, hub, listen string) error {
	u, err := url.Parse(hub)
	if err != nil {
		return fmt.Errorf("relay: hub URL %q: %w", hub, err)
	}
	host, port, err := splitHostPort(listen)
	if err != nil {
		return fmt.Errorf("relay: -listen %q: %w", listen, err)
	}
	opts := &server.Options{
		// Unique: a hub replaces a leaf connection from a server of the
		// same name.
		ServerName: fmt.Sprintf("bench-relay-%d", os.Getpid()),
		Host:       host,
		Port:       port,
		NoLog:      true,
		NoSigs:     true,
		MaxConn:    1 << 20,
		// Clients reach the broker's JetStream by its plain API
		// ($JS.API.>), as they would connected to it: without this a
		// leaf node denies that API toward a hub of another domain.
		JsAccDefaultDomain: map[string]string{server.DEFAULT_GLOBAL_ACCOUNT: ""},
		LeafNode: server.LeafNodeOpts{
			Remotes:           []*server.RemoteLeafOpts{{URLs: []*url.URL{u}}},
			ReconnectInterval: time.Second,
		},
	}
	s, err := server.NewServer(opts)
	if err != nil {
		return fmt.Errorf("relay: %w", err)
	}
	go s.Start()
	defer s.Shutdown()
	if !s.ReadyForConnections(30 * time.Second) {
		return fmt.Errorf("relay: not listening after 30 s")
	}
	// Joined, and the broker's interest in JetStream's API has arrived:
	// a request sent before would get no responders.
	for s.NumLeafNodes() == 0 || !s.GlobalAccount().SubscriptionInterest("$JS.API.INFO") {
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(10 * time.Millisecond):
		}
	}
	fmt.Printf("ready %s\n", s.ClientURL())
	<-ctx.Done()
	return nil
}

// splitHostPort splits host:port with a numeric port (-1: any).
func splitHostPort(hp string) (string, int, error) {
	host, p, err := net.SplitHostPort(hp)
	if err != nil {
		return "", 0, err
	}
	port, err := strconv.Atoi(p)
	if err != nil {
		return "", 0, fmt.Errorf("port %q is not a number", p)
	}
	return host, port, nil
}
