package runner

import "errors"

// Sentinel errors returned by [Spec.Validate] and [Runner.Run]. Each returned
// error wraps at least one of them, so a caller can tell with errors.Is what
// went wrong; the message around it names the cause and how to fix it.
var (
	// ErrInvalidSpec: the [Spec] breaks a rule of [Spec.Validate] (empty
	// argv, NUL byte, non-positive timeout, missing Dir or LogPath...).
	// Run wraps it together with ErrStart.
	ErrInvalidSpec = errors.New("invalid run spec")
	// ErrStart: the command could not be started at all: invalid spec,
	// program not found or not executable, working directory or log file
	// that cannot be created. Nothing ran.
	ErrStart = errors.New("command could not be started")
	// ErrCancelled: the caller's context was cancelled (or hit its deadline)
	// before or while the command ran; the process tree was killed first.
	ErrCancelled = errors.New("run cancelled")
)
