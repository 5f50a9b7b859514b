package osservice

import "errors"

// Sentinel errors; every error of the package wraps one of them, with a
// message that names the service or the file and says what to do.
var (
	// ErrInvalidSpec: a Spec field is missing or malformed.
	ErrInvalidSpec = errors.New("invalid service specification")
	// ErrNoServiceManager: this machine has no service manager pcm can use
	// (Linux without systemd running, an unsupported platform).
	ErrNoServiceManager = errors.New("no supported service manager")
	// ErrNotInstalled: the service is not registered.
	ErrNotInstalled = errors.New("service not installed")
	// ErrAlreadyInstalled: a service of that name is already registered.
	ErrAlreadyInstalled = errors.New("service already installed")
	// ErrManager: the service manager refused or failed an operation.
	ErrManager = errors.New("service manager failed")
)
