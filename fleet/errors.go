package fleet

import "errors"

// Sentinel errors.
var (
	// ErrEnroll: the client's consumer could not be created or updated, or
	// its id or groups are invalid.
	ErrEnroll = errors.New("enrollment failed")
	// ErrNotProvisioned: a stream or bucket pcm needs (PCM_JOBS, PCM_STATUS,
	// PCM_AGENTS, PCM_LOCKS) does not exist: run pcm broker provision.
	ErrNotProvisioned = errors.New("pcm streams not provisioned")
	// ErrNotEnrolled: the client has no account on the brokers (nor, for
	// a client, a consumer): enroll it first.
	ErrNotEnrolled = errors.New("not enrolled")
	// ErrResolver: the brokers did not store an account JWT or could not
	// say which they hold (no answer: is this an admin of the pcm account,
	// on a broker with the full resolver?).
	ErrResolver = errors.New("account resolver")
	// ErrSiteAuth: enrolling a client at a branch site of an
	// authenticated hub lacks what it needs (the site broker's URL, an
	// issuer: docs/sites.md).
	ErrSiteAuth = errors.New("site enrollment on an authenticated hub")
	// ErrOpenBroker: the broker has no authentication, so there are no
	// accounts to make or revoke.
	ErrOpenBroker = errors.New("open broker: no accounts")
)

// Errors of reading the fleet's state (enrollments.go, inventory.go).
var (
	// ErrRead: a stream, a bucket or a consumer could not be read.
	ErrRead = errors.New("reading the broker failed")
	// ErrUnknownClient: a client id to look up is invalid, or the client
	// is neither enrolled nor has an agent inventory.
	ErrUnknownClient = errors.New("unknown client")
)
