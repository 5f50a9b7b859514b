//go:build !nobroker

package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/cobra"
	"go.uber.org/zap"

	"github.com/pcm-project/pcm/broker"
	"github.com/pcm-project/pcm/broker/auth"
	"github.com/pcm-project/pcm/internal/httpserve"
	"github.com/pcm-project/pcm/metrics"
	"github.com/pcm-project/pcm/publisher"
)

// brokerHTTPFlags are pcm broker's HTTP endpoints: metrics and health, and
// an embedded console.
type brokerHTTPFlags struct {
	metrics, console string
	actions          bool
	cf               consoleFlags
}

// registerBrokerHTTP adds the flags of the broker's HTTP endpoints to cmd.
func registerBrokerHTTP(cmd *cobra.Command) *brokerHTTPFlags {
	f := &brokerHTTPFlags{}
	fs := cmd.Flags()
	fs.StringVar(&f.metrics, "metrics", "", metricsUsage)
	fs.StringVar(&f.console, "console", "", "host:port serving the web console (as pcm console does) in the broker, with its admin connection (off when empty)")
	fs.BoolVar(&f.actions, "console-actions", false, "let the embedded console's operators cancel, halt and resume jobs")
	f.cf.register(fs, "console-")
	return f
}

// startBrokerHTTP starts the endpoints asked for, on an in-process admin
// connection to b; stop ends them.
func (f *brokerHTTPFlags) start(ctx context.Context, cmd *cobra.Command, g *globals, b *broker.Broker, a *auth.Authority) (stop func(), err error) {
	if f == nil || (f.metrics == "" && f.console == "") {
		return func() {}, nil
	}
	var iss *auth.Issuer
	if a != nil {
		if iss, err = a.Issuer(); err != nil {
			return nil, fmt.Errorf("--metrics and --console read the broker as its admin: %w", err)
		}
	}
	nc, err := b.ConnectAdmin(iss, "pcm broker http")
	if err != nil {
		return nil, err
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{}, 3)
	n := 0
	fail := func(what string, err error) {
		if err != nil && ctx.Err() == nil {
			g.log.Error(what+" stopped", zap.Error(err))
		}
		done <- struct{}{}
	}
	if f.metrics != "" {
		if !httpserve.Loopback(f.metrics) {
			g.log.Warn("--metrics listens beyond loopback: /metrics and the health endpoints need no login", zap.String("addr", f.metrics))
		}
		reg := metrics.NewRegistry()
		ev, err := metrics.NewEvents(reg)
		if err == nil {
			err = errors.Join(reg.Register(metrics.NewConsumers(js)), metrics.Conn(reg, nc, "broker"))
		}
		if err != nil {
			cancel()
			nc.Close()
			return nil, err
		}
		mux := metrics.Mux(reg, readyWhen(b.Ready(), "the broker does not accept connections yet", nc, func() error {
			if !b.Server().JetStreamEnabled() {
				return errors.New("JetStream is not enabled")
			}
			return nil
		}))
		n += 2
		go func() { fail("following the streams for /metrics", ev.Follow(ctx, js)) }()
		go func() {
			fail("the metrics endpoint", httpserve.Serve(ctx, httpserve.Config{Addr: f.metrics, OnListen: func(a string) {
				fmt.Fprintf(cmd.OutOrStdout(), "pcm broker metrics: http://%s/metrics\n", a)
			}}, mux))
		}()
	}
	if f.console != "" {
		if err := f.cf.check(f.console); err != nil {
			cancel()
			nc.Close()
			return nil, err
		}
		var pub *publisher.Publisher
		if f.actions {
			if pub, err = publisher.New(js, publisher.Config{Name: "console"}); err != nil {
				cancel()
				nc.Close()
				return nil, err
			}
		}
		n++
		go func() {
			fail("the console", f.cf.serve(ctx, cmd.OutOrStdout(), f.console, js, pub, g.log.Named("console")))
		}()
	}
	return func() {
		cancel()
		for range n {
			<-done
		}
		nc.Close()
	}, nil
}
