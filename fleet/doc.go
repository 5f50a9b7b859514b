// Package fleet enrolls and revokes the principals of a pcm deployment: a
// client's durable consumer on PCM_JOBS (its groups), and, on an
// authenticated broker, each principal's NATS account (made by package
// auth's Issuer and pushed to every broker's resolver through the system
// account's claims update), its credentials, and their revocation.
//
// Everything here needs an admin of the pcm account (or an open broker);
// it never runs a job, never reads or writes the event streams, and never
// logs: it returns errors wrapping its sentinels.
package fleet
