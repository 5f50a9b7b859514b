package main

import (
	"context"
	"errors"
	"net/http"

	"github.com/nats-io/nats.go"
	"go.uber.org/zap"

	"github.com/pcm-project/pcm/agent"
	"github.com/pcm-project/pcm/internal/httpserve"
	"github.com/pcm-project/pcm/metrics"
)

// metricsUsage is the help of --metrics on the agent.
const metricsUsage = "host:port serving /metrics (Prometheus), /healthz and /readyz (off when empty)"

// serveAgentMetrics serves the agent's metrics at addr until ctx ends: its
// counters (agent.Stats), its journal's outbox and its reconnections.
func serveAgentMetrics(ctx context.Context, log *zap.Logger, addr string, nc *nats.Conn, svc *agent.Service) error {
	reg := metrics.NewRegistry()
	err := errors.Join(
		metrics.AgentStats(reg, func() any { return svc.Stats() }),
		metrics.GaugeFunc(reg, "agent_journal_outbox", "Statuses and acks in the agent's journal waiting for the broker.", func() float64 {
			n, _ := svc.Outbox()
			return float64(n)
		}),
		metrics.Conn(reg, nc, "agent"),
	)
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", metrics.Handler(reg))
	httpserve.Health(mux, func() error {
		select {
		case <-svc.Ready():
		default:
			return errors.New("the agent is not bound to its consumer yet")
		}
		if !nc.IsConnected() {
			return errors.New("not connected to the broker")
		}
		return nil
	})
	go func() {
		err := httpserve.Serve(ctx, httpserve.Config{Addr: addr, OnListen: func(a string) {
			log.Info("agent metrics", zap.String("url", "http://"+a+"/metrics"))
		}}, mux)
		if err != nil {
			log.Error("the metrics endpoint stopped", zap.Error(err))
		}
	}()
	return nil
}
