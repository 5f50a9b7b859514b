package console

import "errors"

var (
	// ErrInvalidConfig: a Config that Validate refuses.
	ErrInvalidConfig = errors.New("invalid console config")
	// ErrUnsafeListen: listening beyond loopback without authentication.
	ErrUnsafeListen = errors.New("console refuses to listen beyond loopback without authentication")
	// ErrUsersFile: a users file that cannot be read or parsed.
	ErrUsersFile = errors.New("console users file")
	// ErrReadOnly: an action asked of a console without publisher
	// credentials, or by a viewer.
	ErrReadOnly = errors.New("not allowed")
)
