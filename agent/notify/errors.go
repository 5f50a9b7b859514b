package notify

import (
	"errors"
	"fmt"
)

// ErrUnavailable: the platform cannot show notifications here: its
// notification command is missing, or (Linux, the BSDs) there is no D-Bus
// session bus, no notification server on it, or the bus went away. The
// error says which.
var ErrUnavailable = errors.New("native notifications unavailable")

// errClosed is what a notifier answers once closed.
var errClosed = fmt.Errorf("%w: the notifier is closed", ErrUnavailable)
