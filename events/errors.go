package events

import "errors"

// Sentinel errors. Every validation error wraps exactly one of them, so a
// caller can tell with errors.Is which rule an event broke; the message added
// around it names the field and how to fix it.
var (
	// ErrInvalidID: a client id, group name or job id is not a subject token
	// of 1 to 64 characters from [A-Za-z0-9_-].
	ErrInvalidID = errors.New("invalid id")
	// ErrInvalidTarget: a target has an unknown kind, or a name where none is allowed.
	ErrInvalidTarget = errors.New("invalid target")
)
