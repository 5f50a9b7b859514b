// Package auth is pcm's authority and its trust model: NATS operator mode
// in which the account is the boundary.
//
// The streams and buckets live in the pcm account, which no client,
// publisher or auditor belongs to; only admins are its users. Every
// principal — each enrolled client (its agent and its desktop users), each
// publisher, each auditor — has an account of its own that reaches the pcm
// account only through imports of the pcm account's exports: exactly the
// subjects its users need (Imports), under the same names. A request's
// answer travels back through the import's reply mapping into the
// requester's own account, so it can never land on a subject of another
// principal or of the pcm account, whatever reply subject the request
// named. Within an account, each user's permissions (Grants) separate the
// agent from the desktop.
//
// Authority creates and loads the operator, the system account, the pcm
// account and the issuer's signing keys in a directory; Issuer makes the
// principals' account JWTs (PrincipalAccount) and users (Issue); Trust is
// what a broker needs (JWTs only, no seed); ClientConfig turns a
// credentials file and TLS files into nats.Options, including the user's
// private inbox prefix.
//
// The package never talks to a broker (fleet pushes the accounts), never
// logs, and never writes a secret (seed, issuer file or credentials) with
// permissions wider than 0600.
package auth
