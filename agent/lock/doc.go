// Package lock is the service-versus-desktop lease lock of one client: the
// mutual exclusion of design invariant 4, kept as the key <client> of the
// JetStream KV bucket PCM_LOCKS. The rollout controller's leadership (one
// active controller per cluster) is the same lease on another bucket
// (Config.Bucket: PCM_CONTROLLER).
//
// The key is created only if absent, with a per-key TTL (the lease). Its
// holder renews it by compare-and-set on the key's revision every third of the
// lease, republishing the value with the TTL so that a renewed key still
// expires when its holder dies; it releases it with a delete conditioned on the
// revision. The revision is the fencing token: it changes at every renewal and
// [Lease.Revision] returns the current one. A holder whose renewals fail for a
// whole lease, or that finds the key changed under it, has lost the lock: its
// [Lease.Lost] channel closes and it logs so. A waiter listens to the key's
// subject and tries again when it hears a delete, when the holding's TTL
// runs out without a renewal heard, or after a reconnection, never polling;
// what it hears is a hint, the key read back from the broker decides.
//
// The bucket must allow per-key TTLs (KV LimitMarkerTTL, set by
// broker.Provision). This package never creates or changes the bucket, never
// deletes a key it does not hold, never runs or stops work (stopping new work
// when Lost closes is the caller's job), and never logs except through the
// injected zap logger. It needs no right on the bucket but its own key's
// subject and the direct get of it (package kvkey): a client of an
// authenticated broker reaches nothing more.
package lock
