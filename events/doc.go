// Package events is pcm's wire contract: the CloudEvents it exchanges over NATS
// JetStream, their typed data, their validation rules and JSON schemas, how they
// are encoded onto and decoded from NATS messages, and the names of the
// streams, buckets and subjects that carry them.
//
// Three event types exist: pcm.job.offered.v1 and pcm.job.cancelled.v1 (made by
// publishers, carried by the PCM_JOBS stream) and pcm.job.status.v1 (made by
// agents, carried by PCM_STATUS: the old system's status MIF, and the audit
// record). Constructors (NewJobOffered, NewJobCancelled, NewJobStatus) validate
// and return a cloudevents Event; parsers (ParseJobOffered, ...) check every
// attribute, the JSON schema and every rule, and return typed data.
//
// Publishers sign offers and cancellations (Sign, with an nkeys ed25519 key
// pair) over a canonical form of the event; the signature and the signer's
// public key travel as the pcmsig and pcmkey extension attributes, and
// Verify checks them against a list of trusted keys.
//
// docs/protocol.md states the same contract for other languages; a test
// checks that it documents every field of the schemas.
//
// Every validation failure wraps one sentinel of errors.go and names the field
// and the fix. The package never talks to a server, never logs and imports no
// other package of pcm.
package events
