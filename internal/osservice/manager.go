package osservice

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/pcm-project/pcm/internal/atomicfile"
)

// Manager registers and controls services with the platform's service
// manager. Its methods need the rights to do so (root, an administrator).
type Manager interface {
	// Name is the service manager: systemd, launchd or scm.
	Name() string
	// Install registers s to start at boot, without starting it; it fails
	// with ErrAlreadyInstalled when a service of that name exists.
	Install(ctx context.Context, s Spec) error
	// Uninstall stops the service if it runs and removes its registration.
	Uninstall(ctx context.Context, name string) error
	// Start starts the service and Stop stops it, waiting until the
	// manager reports it stopped.
	Start(ctx context.Context, name string) error
	Stop(ctx context.Context, name string) error
	// Status is the service as the manager sees it.
	Status(ctx context.Context, name string) (Status, error)
	// InstallDesktop registers s to start in each user's session at logon;
	// UninstallDesktop removes that.
	InstallDesktop(ctx context.Context, s Spec) error
	UninstallDesktop(ctx context.Context, name string) error
}

// New returns the service manager of this machine, or an error wrapping
// ErrNoServiceManager that says why there is none.
func New() (Manager, error) { return newManager() }

// writeFile writes content to path (its directory created), mode 0644,
// through a temporary file renamed into place.
// installFile writes a desktop autostart entry (an XDG .desktop file, a
// LaunchAgent plist) for s at path.
func installFile(s Spec, path, content string) error {
	if err := s.Validate(); err != nil {
		return err
	}
	if err := writeFile(path, content); err != nil {
		return fmt.Errorf("%w: writing %s: %w", ErrManager, path, err)
	}
	return nil
}

// removeFile removes the desktop autostart entry of name at path.
func removeFile(name, path string) error {
	if err := os.Remove(path); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("%w: %s: no %s", ErrNotInstalled, name, path)
		}
		return fmt.Errorf("%w: %w", ErrManager, err)
	}
	return nil
}

func writeFile(path, content string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return atomicfile.Write(path, []byte(content), 0o644)
}

// run runs a service manager's command and returns its output; a failure
// wraps ErrManager and shows what the command printed.
func run(ctx context.Context, name string, args ...string) (string, error) {
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	if err != nil {
		msg := strings.TrimSpace(string(out))
		var ee *exec.ExitError
		if !errors.As(err, &ee) {
			msg = err.Error()
		}
		return string(out), fmt.Errorf("%w: %s %s: %s", ErrManager, name, strings.Join(args, " "), msg)
	}
	return string(out), nil
}
