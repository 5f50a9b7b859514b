//go:build !windows

package osservice

import (
	"context"
	"time"
)

// Run runs body until ctx ends: systemd and launchd stop a service with
// SIGTERM, which the caller's context carries (signal.NotifyContext).
func Run(ctx context.Context, _ string, _ time.Duration, body func(context.Context) error) error {
	return body(ctx)
}
