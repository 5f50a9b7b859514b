//go:build linux

package osservice

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Where the systemd manager writes.
const (
	systemdUnitDir   = "/etc/systemd/system"
	xdgAutostartDir  = "/etc/xdg/autostart"
	systemdRunMarker = "/run/systemd/system"
)

type systemd struct{}

func newManager() (Manager, error) {
	if _, err := os.Stat(systemdRunMarker); err != nil {
		return nil, fmt.Errorf("%w: systemd is not running on this machine (%s is missing): run pcm agent from the init system you have, or under systemd", ErrNoServiceManager, systemdRunMarker)
	}
	return systemd{}, nil
}

func (systemd) Name() string { return "systemd" }

func unitPath(name string) string { return filepath.Join(systemdUnitDir, name+".service") }

func (m systemd) Install(ctx context.Context, s Spec) error {
	if err := s.Validate(); err != nil {
		return err
	}
	path := unitPath(s.Name)
	if _, err := os.Stat(path); err == nil {
		return fmt.Errorf("%w: %s exists: run pcm %s uninstall first", ErrAlreadyInstalled, path, commandOf(s))
	}
	if err := writeFile(path, SystemdUnit(s)); err != nil {
		return fmt.Errorf("%w: writing %s: %w", ErrManager, path, err)
	}
	if _, err := run(ctx, "systemctl", "daemon-reload"); err != nil {
		return err
	}
	_, err := run(ctx, "systemctl", "enable", s.Name+".service")
	return err
}

func (m systemd) Uninstall(ctx context.Context, name string) error {
	path := unitPath(name)
	if _, err := os.Stat(path); err != nil {
		return fmt.Errorf("%w: %s: no %s", ErrNotInstalled, name, path)
	}
	_, _ = run(ctx, "systemctl", "disable", "--now", name+".service")
	if err := os.Remove(path); err != nil {
		return fmt.Errorf("%w: removing %s: %w", ErrManager, path, err)
	}
	_, err := run(ctx, "systemctl", "daemon-reload")
	return err
}

func (m systemd) Start(ctx context.Context, name string) error {
	if err := m.installed(name); err != nil {
		return err
	}
	_, err := run(ctx, "systemctl", "start", name+".service")
	return err
}

func (m systemd) Stop(ctx context.Context, name string) error {
	if err := m.installed(name); err != nil {
		return err
	}
	_, err := run(ctx, "systemctl", "stop", name+".service")
	return err
}

func (systemd) installed(name string) error {
	if _, err := os.Stat(unitPath(name)); err != nil {
		return fmt.Errorf("%w: %s: no %s", ErrNotInstalled, name, unitPath(name))
	}
	return nil
}

func (m systemd) Status(ctx context.Context, name string) (Status, error) {
	if err := m.installed(name); err != nil {
		return Status{}, err
	}
	out, err := run(ctx, "systemctl", "show", name+".service", "-p", "ActiveState,MainPID,UnitFileState,ExecStart")
	if err != nil {
		return Status{}, err
	}
	st := Status{Name: name, Manager: "systemd", Path: unitPath(name), State: StateUnknown}
	for _, line := range strings.Split(out, "\n") {
		k, v, _ := strings.Cut(strings.TrimSpace(line), "=")
		switch k {
		case "ActiveState":
			st.State = systemdState(v)
		case "MainPID":
			st.PID, _ = strconv.Atoi(v)
		case "UnitFileState":
			st.Enabled = v == "enabled"
		case "ExecStart":
			if _, rest, ok := strings.Cut(v, "argv[]="); ok {
				st.Command, _, _ = strings.Cut(rest, " ;")
			}
		}
	}
	return st, nil
}

// systemdState maps a unit's ActiveState.
func systemdState(active string) State {
	switch active {
	case "active", "reloading":
		return StateRunning
	case "inactive", "failed":
		return StateStopped
	case "activating":
		return StateStarting
	case "deactivating":
		return StateStopping
	}
	return StateUnknown
}

func desktopPath(name string) string { return filepath.Join(xdgAutostartDir, name+".desktop") }

func (systemd) InstallDesktop(_ context.Context, s Spec) error {
	return installFile(s, desktopPath(s.Name), XDGAutostart(s))
}

func (systemd) UninstallDesktop(_ context.Context, name string) error {
	return removeFile(name, desktopPath(name))
}
