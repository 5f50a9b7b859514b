package packages

import "errors"

// Sentinel errors. A package name, version or NAME@VERSION spec that
// breaks the naming rule fails with events.ErrInvalidPackage (the rule is
// the wire contract's, events.ValidPackagePart).
var (
	// ErrInvalidContent: the path to push is unusable: missing, neither a
	// regular file nor a directory, or a directory holding what a package
	// may not (archive.ErrRefused: a symlink leaving it, a socket, ...).
	ErrInvalidContent = errors.New("invalid package content")
	// ErrNotFound: PCM_PACKAGES holds no complete package of that name
	// and version (never pushed, removed, or its push was interrupted).
	ErrNotFound = errors.New("package not found")
	// ErrExists: that name and version is already pushed; a push replaces
	// it only when forced.
	ErrExists = errors.New("package version already exists")
	// ErrMismatch: a job pins a sha256 (or size) that is not the one
	// PCM_PACKAGES holds for its package.
	ErrMismatch = errors.New("package does not match the job's pinned digest")
	// ErrPush: the package content could not be read, packed, stored or
	// removed.
	ErrPush = errors.New("package push failed")
	// ErrNotProvisioned: the PCM_PACKAGES object store does not exist: run
	// pcm broker provision.
	ErrNotProvisioned = errors.New("package store not provisioned")
	// ErrRead: the object store could not be read.
	ErrRead = errors.New("reading the package store failed")
)
