package notify

import (
	"context"
	"io"

	"go.uber.org/zap"

	"github.com/pcm-project/pcm/agent/desktopweb"
)

// Config configures the platform's notifier (Native).
type Config struct {
	// PageURL is the address of the session's Self Service page, with its
	// secret (desktopweb.Server.URL): a click on a notification opens it.
	// "": a click does what the platform does by default.
	PageURL string
	// Open opens a URL in the user's browser, where the platform leaves a
	// click to the application (D-Bus, on Linux and the BSDs); nil:
	// desktopweb.Open, as pcm desktop open does.
	Open func(ctx context.Context, url string) error
	// Bus is the address of the D-Bus session bus (Linux, the BSDs); "":
	// the session's (DBUS_SESSION_BUS_ADDRESS, else $XDG_RUNTIME_DIR/bus).
	Bus string
	// Logger logs what no caller hears of: a click that could not open
	// the page, the session bus going away. nil: no logs.
	Logger *zap.Logger
}

func (c *Config) setDefaults() {
	if c.Open == nil {
		c.Open = desktopweb.Open
	}
	if c.Logger == nil {
		c.Logger = zap.NewNop()
	}
}

// NativeNotifier is the platform's notifier. Close lets go of what it
// holds (the D-Bus connection); Notify then returns ErrUnavailable.
type NativeNotifier interface {
	Notifier
	io.Closer
}

// Native returns the platform's notifier: a notification on the
// freedesktop notification service over the D-Bus session bus (Linux, the
// BSDs), terminal-notifier or else osascript (macOS), a toast through
// Windows PowerShell (Windows). A click on one opens cfg.PageURL, except
// with osascript, which cannot.
func Native(cfg Config) NativeNotifier {
	cfg.setDefaults()
	return newNative(cfg)
}
