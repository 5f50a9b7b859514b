package releases

import "errors"

// Sentinel errors. An invalid manifest fails with events.ErrInvalidRelease.
var (
	// ErrNotFound: PCM_RELEASES holds no such version or channel.
	ErrNotFound = errors.New("release not found")
	// ErrExists: the version is already pushed; a push replaces it only
	// when forced.
	ErrExists = errors.New("release version already exists")
	// ErrNotProvisioned: the PCM_RELEASES bucket does not exist: run pcm
	// broker provision (pcm broker does at start).
	ErrNotProvisioned = errors.New("release bucket not provisioned")
	// ErrStore: the bucket could not be read or written.
	ErrStore = errors.New("release store failed")
)
