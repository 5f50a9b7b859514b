// Package publisher is how jobs enter pcm: it builds, validates, signs
// (Config.Signer, a key from NewSigningKey) and publishes job offers, and
// cancels jobs. A job naming a package gets it pinned (package packages).
//
// Every check runs before anything is sent: a job that breaks a rule of the
// events package, that has already expired or that would outlive the jobs
// stream's retention is refused whole. A publish that fails part-way returns a
// *PartialError naming the targets that were stored.
//
// It never reads history back (package rollout says where a job stands,
// package audit replays what happened), never enrolls clients (package
// fleet), never runs commands and never logs: problems come back as errors
// wrapping the sentinels of errors.go.
package publisher
