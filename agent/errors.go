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
	// ErrUpdateReady: Run stopped to install a verified release
	// (Service.PendingUpdate); no job runs and the client's lock is held.
	ErrUpdateReady = errors.New("agent update ready")
	// ErrAlreadyRunning: another agent of the same client id is running
	// (its heartbeat is fresh), on another host or with another state
	// directory: two would both take the client's jobs.
	ErrAlreadyRunning = errors.New("another agent of this client is running")
	// ErrMisrouted: an offer arrived on a subject that is not one of its targets.
	ErrMisrouted = errors.New("offer on a subject that is not one of its targets")
)

// Errors of the desktop face.
var (
	// ErrServiceOnly: the job is marked background, for the service only.
	ErrServiceOnly = errors.New("job is for service-only execution")
	// ErrNotRunnable: the job cannot run now (not offered yet, cancelled,
	// expired, for another platform, or not trusted).
	ErrNotRunnable = errors.New("job cannot run now")
	// ErrAlreadyDone: the job already has a final status that ends it on
	// this client (or its last attempt was interrupted).
	ErrAlreadyDone = errors.New("job already done on this client")
	// ErrNoDeferral: the user may not defer the job now: it allows no
	// deferral, none is left, its deadline has passed, it is not mandatory
	// yet, or it is running.
	ErrNoDeferral = errors.New("job cannot be deferred")
)
