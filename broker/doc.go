// Package broker runs the pcm message broker: an embedded nats-server with
// JetStream always on, as a single node or as a member of a cluster, and
// provisions the JetStream resources pcm relies on (the PCM_JOBS and
// PCM_STATUS streams, the PCM_AGENTS and PCM_LOCKS key-value buckets).
//
// A Broker is configured with a Config, created with New, started with Start
// (or Run, which blocks until its context is cancelled) and stopped with
// Shutdown. Provision takes only a jetstream.JetStream, so it works the same
// against the embedded server and against an external nats-server.
// StartServices runs what a pcm broker runs besides nats-server (the
// provisioning and the client view), through an admin's connection:
// ConnectAdmin's in-process one for pcm broker and pcm up, the test
// environment's own for its test brokers.
//
// With Config.Auth the broker runs in NATS operator mode and accepts only
// users of the pcm account, with the permissions in their JWTs (package
// broker/auth mints them); with Config.TLS it requires TLS from clients and
// cluster routes. Without Config.Auth it is open: keep it on loopback.
//
// The package never publishes or consumes pcm events, mints no credentials
// but the in-process admin of ConnectAdmin (through broker/auth, never
// written anywhere), and never logs except through the *zap.Logger it is
// given; nats-server's own logs are routed into that logger.
package broker
