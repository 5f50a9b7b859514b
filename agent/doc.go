// Package agent is pcm's client side: the service face (Service), which
// consumes the client's durable consumer, decides for each offer whether and
// when it runs, runs due jobs under the client's lock, and reports a status
// for each; and the pieces the desktop face shares with it.
//
// The invariants of the design contract live here: a job never runs twice by
// accident (the journal and the last status on the broker are consulted
// before every run, and a start is journaled before the process exists); an
// offer is acked only after its final status is persisted on the broker; a
// final status produced offline waits in the fsynced journal; nothing runs
// outside its time window or on the wrong platform; and a bad event is
// refused, logged and never stops the agent. With Config.TrustedKeys, an
// offer or cancellation is verified before anything else: one not signed
// by a trusted key is refused (reported rejected) and never acted on, by
// either face.
//
// Sub-packages hold the parts with one job each: journal (bbolt), runner
// (process execution), lock (the service-versus-desktop lease), pkgcache
// (package content fetched from PCM_PACKAGES, verified by sha256, cached
// with LRU eviction).
package agent
