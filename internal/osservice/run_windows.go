//go:build windows

package osservice

import (
	"context"
	"errors"
	"sync"
	"time"

	"golang.org/x/sys/windows"
	"golang.org/x/sys/windows/svc"
)

// Run runs body as the service name when the Service Control Manager
// started this process, and directly otherwise (a console, a test). Under
// the manager the service reports running at once, accepts stop and
// shutdown (not pause: a paused agent would hold jobs nobody runs), and on
// either cancels body's context and reports stop-pending, with a wait hint
// of stopTimeout, until body returns. A body that returns an error makes
// the service exit with a non-zero code, which the recovery actions
// answer with a restart.
func Run(ctx context.Context, name string, stopTimeout time.Duration, body func(context.Context) error) error {
	h := &handler{ctx: ctx, body: body, stopTimeout: stopTimeout}
	// The dispatcher tells whether the manager started this process: it
	// fails at once with ERROR_FAILED_SERVICE_CONTROLLER_CONNECT when not
	// (svc.IsWindowsService does not recognise Wine's services.exe).
	err := svc.Run(name, h)
	if errors.Is(err, windows.ERROR_FAILED_SERVICE_CONTROLLER_CONNECT) && !h.ran() {
		return body(ctx)
	}
	if err != nil {
		return err
	}
	return h.err
}

type handler struct {
	ctx         context.Context
	body        func(context.Context) error
	stopTimeout time.Duration

	mu      sync.Mutex
	started bool
	err     error
}

func (h *handler) ran() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.started
}

// Execute implements svc.Handler.
func (h *handler) Execute(_ []string, req <-chan svc.ChangeRequest, status chan<- svc.Status) (bool, uint32) {
	h.mu.Lock()
	h.started = true
	h.mu.Unlock()
	ctx, cancel := context.WithCancel(h.ctx)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- h.body(context.WithValue(ctx, underManagerKey{}, true)) }()
	const accepts = svc.AcceptStop | svc.AcceptShutdown
	status <- svc.Status{State: svc.Running, Accepts: accepts}
	stopping := false
	for {
		select {
		case err := <-done:
			h.mu.Lock()
			h.err = err
			h.mu.Unlock()
			if err != nil && !stopping {
				return true, 1 // a service-specific exit code: recovery restarts it
			}
			return false, 0
		case c := <-req:
			switch c.Cmd {
			case svc.Interrogate:
				status <- c.CurrentStatus
			case svc.Stop, svc.Shutdown:
				if !stopping {
					stopping = true
					cancel()
				}
				status <- svc.Status{State: svc.StopPending, WaitHint: uint32(h.stopTimeout / time.Millisecond)}
			}
		}
	}
}
