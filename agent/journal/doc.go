// Package journal is the pcm agent's local, crash-safe journal: one bbolt
// file per agent that records, for every job the agent has seen, how far it
// got (received, attempt k started, attempt k finished, done), and an outbox
// of status messages still to be published.
//
// It exists for three invariants of the design contract. A job never runs
// twice by accident: the agent writes "attempt k started" here, fsynced,
// before it starts the process, so after a crash it knows the attempt was
// made. An offer is acked only after its final status is persisted on the
// broker: the final status is written here together with the "finished"
// record in one transaction and removed only when the broker's PubAck
// arrives (MarkSent), which also moves the job to PhaseDone. Nothing is
// lost offline: a final status produced while the broker is unreachable
// stays in the outbox, in order, until it is published.
//
// Every write is one bbolt transaction, fsynced before the call returns
// (unless Options.NoSync, for benchmarks only), except MarkSent: its note
// is seen by every read at once and rides on the next write (or its own
// transaction after Options.MarkDelay, or Close); a crash before that only
// publishes the status again, with the same message id. Open takes an exclusive
// file lock, so two agents can never share a journal, and checks the whole
// file: a damaged journal stops the agent at start with ErrCorrupt, never
// mid-run, and is never silently recreated.
//
// The journal never talks to the network, never publishes anything, never
// interprets the messages it keeps (they are opaque bytes with a subject, a
// message id and headers) and imports no other package of pcm. It never
// logs: every problem is returned as an error wrapping one of the sentinels
// in errors.go.
package journal
