// Package metrics exposes pcm in Prometheus's terms: a registry with the
// Go and process collectors (NewRegistry, Handler), counters of what the
// streams hold (Events: jobs published, cancelled, halted, statuses by
// state and reason, command durations), the offers pending on each
// client's consumer (Consumers), the rollout of each live job (Rollouts),
// an agent's counters (AgentStats) and a connection's reconnects (Conn).
//
// It only reads: the streams through package audit, the consumers through
// JetStream's consumer list. It never publishes and never logs; docs/
// metrics.md lists every metric it defines.
package metrics
