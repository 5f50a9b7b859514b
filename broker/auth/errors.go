package auth

import "errors"

// Sentinel errors. Every error the package returns wraps one of them; the
// message around it names the file or the value and says how to fix it.
var (
	// ErrNoAuthority: the directory holds no operator/account (run
	// pcm broker --auth once to create them, or point --auth-dir at the
	// directory that holds them).
	ErrNoAuthority = errors.New("no pcm authority")
	// ErrBadAuthority: the operator, account or signing key files exist but
	// are unreadable, malformed, or do not belong together.
	ErrBadAuthority = errors.New("invalid pcm authority")
	// ErrInvalidUser: a user to issue has an unknown role, an invalid name,
	// client id or group.
	ErrInvalidUser = errors.New("invalid user")
	// ErrIssue: credentials could not be signed or written.
	ErrIssue = errors.New("cannot issue credentials")
	// ErrCreds: a credentials file is missing, unreadable or malformed.
	ErrCreds = errors.New("invalid credentials file")
	// ErrTLS: a certificate, key or CA file is missing, unreadable or
	// malformed, or a key does not match its certificate.
	ErrTLS = errors.New("invalid TLS files")
)
