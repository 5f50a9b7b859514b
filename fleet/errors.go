package fleet

import "errors"

// Sentinel errors.
var (
	// ErrEnroll: the client's consumer could not be created or updated, or
	// its id or groups are invalid.
	ErrEnroll = errors.New("enrollment failed")
	// ErrNotProvisioned: PCM_JOBS does not exist: run pcm broker provision.
	ErrNotProvisioned = errors.New("pcm streams not provisioned")
	// ErrNotEnrolled: the client has no account on the brokers (nor, for
	// a client, a consumer): enroll it first.
	ErrNotEnrolled = errors.New("not enrolled")
	// ErrResolver: the brokers did not store an account JWT or could not
	// say which they hold (no answer: is this an admin of the pcm account,
	// on a broker with the full resolver?).
	ErrResolver = errors.New("account resolver")
	// ErrOpenBroker: the broker has no authentication, so there are no
	// accounts to make or revoke.
	ErrOpenBroker = errors.New("open broker: no accounts")
)
