package agent

import "errors"

// Sentinel errors.
var (
	// ErrInvalidConfig: a Config field is missing or wrong.
	ErrInvalidConfig = errors.New("invalid agent configuration")
	// ErrNotEnrolled: the client has no consumer on PCM_JOBS: enroll it
	// (pcm enroll CLIENT, or pcm agent --enroll on an open broker).
	ErrNotEnrolled = errors.New("client not enrolled")
	// ErrJournal: the local journal cannot be opened or read; nothing runs.
	ErrJournal = errors.New("agent journal unusable")
	// ErrMisrouted: an offer arrived on a subject that is not one of its targets.
	ErrMisrouted = errors.New("offer on a subject that is not one of its targets")
)
