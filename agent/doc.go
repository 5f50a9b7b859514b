// Package agent is pcm's client side: the service face (Service), which
// consumes the client's durable consumer, runs due jobs under the client's
// lock and reports a status for each, and the desktop face (Desktop), which
// lists and runs jobs in the user's session.
//
// Whether an offer runs, waits, is settled without running or is refused
// is one pure function, Decide, of what is known of it (the offer, the
// journal, the last status and the cancellation on the broker, the
// platform, the time, the face); both faces ask it before anything they do
// with an offer and again under the lock. Attempts run through one engine
// for both faces, whose statuses go to the service's journal or, for the
// desktop, straight to the broker.
//
// The invariants of the design contract live here: a job never runs twice by
// accident (the journal and the last status on the broker are consulted
// before every run, and a start is journaled before the process exists); an
// offer is acked only after its final status is persisted on the broker,
// and only by the flush of the journal's outbox; a final status produced
// offline waits in the fsynced journal; a job cancelled before it started
// never starts (its cancellation subject is read before every run); nothing
// runs outside its time window or on the wrong platform; and a bad event is
// refused, logged and never stops the agent. With Config.TrustedKeys, an
// offer or cancellation is verified before anything else: one not signed
// by a trusted key is refused (reported rejected) and never acted on, by
// either face.
//
// Sub-packages hold the parts with one job each: journal (bbolt), runner
// (process execution), lock (the service-versus-desktop lease), pkgcache
// (package content fetched from PCM_PACKAGES, verified by sha256, cached
// with LRU eviction).
//
// The agent never publishes or cancels jobs, never enrolls its client
// (package fleet, or fleet.EnrollSelf on an open broker), never reads
// another client's offers, statuses, lock or inventory, and creates no
// consumer: it consumes the one its client was enrolled with. What it did
// is counted (Stats) as well as logged.
package agent
