package audit

import "errors"

// Sentinel errors.
var (
	// ErrInvalidFilter: an audit filter is unusable (a bad job or client
	// id, an unknown event type, until before since).
	ErrInvalidFilter = errors.New("invalid filter")
	// ErrNotProvisioned: PCM_JOBS or PCM_STATUS does not exist: run pcm
	// broker provision.
	ErrNotProvisioned = errors.New("pcm streams not provisioned")
	// ErrRead: a stream or a consumer could not be read.
	ErrRead = errors.New("reading the broker failed")
)
