package desktopweb

import "errors"

// Sentinel errors.
var (
	// ErrNotLoopback: the page may listen on a loopback address only.
	ErrNotLoopback = errors.New("the page listens on loopback only")
	// ErrInvalidConfig: the configuration is incomplete.
	ErrInvalidConfig = errors.New("invalid desktop page configuration")
	// ErrRunning: the job is already running from this page.
	ErrRunning = errors.New("the job is already running")
)
