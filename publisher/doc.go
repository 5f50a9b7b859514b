// Package publisher is the operator's and CI's side of pcm: it builds,
// validates, signs (Config.Signer, a key from NewSigningKey) and publishes
// job offers, cancels jobs, enrolls clients (creates
// their durable consumers centrally), finds the offer of a job again, and
// reads back what happened: the rollout of a job per client (ReadRollout,
// WatchRollout), the merged audit history of both streams (Replay), and the
// fleet's inventory (Inventory, ShowAgent).
//
// Every check runs before anything is sent: a job that breaks a rule of the
// events package, that has already expired or that would outlive the jobs
// stream's retention is refused whole. A publish that fails part-way returns a
// *PartialError naming the targets that were stored.
//
// The package never runs commands and never logs: problems come back as
// errors wrapping the sentinels of errors.go.
package publisher
