package rollout

import (
	"errors"

	"github.com/pcm-project/pcm/internal/offers"
)

// Sentinel errors.
var (
	// ErrInvalidJobID: the job id to follow is not a valid id.
	ErrInvalidJobID = errors.New("invalid job id")
	// ErrJobNotFound: no offer of that job id is in the jobs stream. It is
	// the error the scan of PCM_JOBS returns, so its message says it once.
	ErrJobNotFound = offers.ErrNotFound
	// ErrNotProvisioned: a stream or bucket the rollout is read from does
	// not exist: run pcm broker provision.
	ErrNotProvisioned = errors.New("pcm streams not provisioned")
	// ErrRead: a stream, a bucket or a consumer could not be read.
	ErrRead = errors.New("reading the broker failed")
)
