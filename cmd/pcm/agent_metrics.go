package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/pcm-project/pcm/agent"
	"github.com/pcm-project/pcm/internal/httpserve"
	"github.com/pcm-project/pcm/metrics"
)

// metricsUsage is the help of --metrics on the agent.
const metricsUsage = "host:port serving /metrics (Prometheus), /healthz and /readyz (off when empty)"

// readyWhen is a readiness check: ready is closed (else notYet), nc is
// connected, and more, when set, says nothing is wrong.
func readyWhen(ready <-chan struct{}, notYet string, nc *nats.Conn, more func() error) func() error {
	return func() error {
		select {
		case <-ready:
		default:
			return errors.New(notYet)
		}
		if !nc.IsConnected() {
			return fmt.Errorf("not connected to the broker (%s)", nc.Status())
		}
		if more != nil {
			return more()
		}
		return nil
	}
}

// agentMetrics are an agent's metrics: its counters (agent.Stats), its
// journal's outbox, its lock times and its reconnections.
type agentMetrics struct {
	reg  *prometheus.Registry
	lock *metrics.LockTimes
}

// newAgentMetrics registers what needs no service yet: the lock times,
// which the service's config observes.
func newAgentMetrics() (*agentMetrics, error) {
	reg := metrics.NewRegistry()
	lt, err := metrics.NewLockTimes(reg)
	if err != nil {
		return nil, err
	}
	return &agentMetrics{reg: reg, lock: lt}, nil
}

// serve serves the agent's metrics at addr until ctx ends.
func (m *agentMetrics) serve(ctx context.Context, log *zap.Logger, addr string, nc *nats.Conn, svc *agent.Service) error {
	reg := m.reg
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
	mux := metrics.Mux(reg, readyWhen(svc.Ready(), "the agent is not bound to its consumer yet", nc, nil))
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
