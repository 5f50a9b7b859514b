// Package auth is pcm's decentralized authentication and authorization:
// an operator and one pcm account (with JetStream) whose signing key mints
// one NATS user per agent, desktop, publisher, auditor and admin, each with
// the least subject permissions its role needs (see Permissions and
// docs/security.md). The broker trusts the operator and preloads the account
// JWT into an in-memory resolver, so users minted later connect without any
// server reload: a credentials file (user JWT + nkey seed) is all they need.
//
// Authority creates and loads the operator, account and signing key in a
// directory; Issuer mints user credentials with the signing key; Trust is
// what a broker needs to verify them (JWTs only, no seed); ClientConfig turns
// a credentials file and TLS files into nats.Options, including the user's
// private inbox prefix.
//
// The package never talks to a broker, never logs, and never writes a secret
// (seed or credentials) with permissions wider than 0600.
package auth
