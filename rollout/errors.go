package rollout

import "errors"

// Sentinel errors.
var (
	// ErrInvalidJobID: the job id to follow is not a valid id.
	ErrInvalidJobID = errors.New("invalid job id")
	// ErrJobNotFound: no offer of that job id is in the jobs stream.
	ErrJobNotFound = errors.New("job not found")
	// ErrNotProvisioned: a stream or bucket the rollout is read from does
	// not exist: run pcm broker provision.
	ErrNotProvisioned = errors.New("pcm streams not provisioned")
	// ErrRead: a stream, a bucket or a consumer could not be read.
	ErrRead = errors.New("reading the broker failed")
)
