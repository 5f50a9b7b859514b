//go:build windows || darwin

package notify

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
)

// command is the notifier that runs the platform's notification command
// (notifyCommand) for each notification.
type command struct {
	cfg    Config
	mu     sync.Mutex
	closed bool
}

func newNative(cfg Config) NativeNotifier { return &command{cfg: cfg} }

// Notify runs the platform's command and waits for it.
func (c *command) Notify(ctx context.Context, n Notification) error {
	c.mu.Lock()
	closed := c.closed
	c.mu.Unlock()
	if closed {
		return errClosed
	}
	name, args, env := notifyCommand(n, c.cfg.PageURL)
	if _, err := exec.LookPath(name); err != nil {
		return fmt.Errorf("%w: %s: %w", ErrUnavailable, name, err)
	}
	cmd := exec.CommandContext(ctx, name, args...)
	if env != nil {
		cmd.Env = append(os.Environ(), env...)
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s: %w: %s", name, err, strings.TrimSpace(string(out)))
	}
	return nil
}

// Close makes Notify refuse; there is nothing to let go of.
func (c *command) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closed = true
	return nil
}
