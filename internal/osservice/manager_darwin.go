//go:build darwin

package osservice

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Where the launchd manager writes.
const (
	launchDaemonDir = "/Library/LaunchDaemons"
	launchAgentDir  = "/Library/LaunchAgents"
)

type launchd struct{}

func newManager() (Manager, error) { return launchd{}, nil }

func (launchd) Name() string { return "launchd" }

func label(name string) string { return Spec{Name: name}.Label() }

func daemonPath(name string) string { return filepath.Join(launchDaemonDir, label(name)+".plist") }

func (m launchd) Install(ctx context.Context, s Spec) error {
	if err := s.Validate(); err != nil {
		return err
	}
	path := daemonPath(s.Name)
	if _, err := os.Stat(path); err == nil {
		return fmt.Errorf("%w: %s exists: run pcm %s uninstall first", ErrAlreadyInstalled, path, commandOf(s))
	}
	if err := writeFile(path, LaunchdPlist(s)); err != nil {
		return fmt.Errorf("%w: writing %s: %w", ErrManager, path, err)
	}
	// A daemon loaded with RunAtLoad starts: unload it until Start.
	_, err := run(ctx, "launchctl", "enable", "system/"+label(s.Name))
	return err
}

func (m launchd) Uninstall(ctx context.Context, name string) error {
	path := daemonPath(name)
	if _, err := os.Stat(path); err != nil {
		return fmt.Errorf("%w: %s: no %s", ErrNotInstalled, name, path)
	}
	_, _ = run(ctx, "launchctl", "bootout", "system/"+label(name))
	if err := os.Remove(path); err != nil {
		return fmt.Errorf("%w: removing %s: %w", ErrManager, path, err)
	}
	return nil
}

func (m launchd) Start(ctx context.Context, name string) error {
	path := daemonPath(name)
	if _, err := os.Stat(path); err != nil {
		return fmt.Errorf("%w: %s: no %s", ErrNotInstalled, name, path)
	}
	if _, err := run(ctx, "launchctl", "print", "system/"+label(name)); err != nil {
		_, err = run(ctx, "launchctl", "bootstrap", "system", path)
		return err
	}
	_, err := run(ctx, "launchctl", "kickstart", "system/"+label(name))
	return err
}

func (m launchd) Stop(ctx context.Context, name string) error {
	if _, err := os.Stat(daemonPath(name)); err != nil {
		return fmt.Errorf("%w: %s: no %s", ErrNotInstalled, name, daemonPath(name))
	}
	_, err := run(ctx, "launchctl", "bootout", "system/"+label(name))
	return err
}

func (m launchd) Status(ctx context.Context, name string) (Status, error) {
	path := daemonPath(name)
	if _, err := os.Stat(path); err != nil {
		return Status{}, fmt.Errorf("%w: %s: no %s", ErrNotInstalled, name, path)
	}
	st := Status{Name: name, Manager: "launchd", Path: path, State: StateStopped, Enabled: true}
	out, err := run(ctx, "launchctl", "print", "system/"+label(name))
	if err != nil {
		return st, nil // not loaded: stopped
	}
	for _, line := range strings.Split(out, "\n") {
		k, v, ok := strings.Cut(strings.TrimSpace(line), " = ")
		if !ok {
			continue
		}
		switch k {
		case "state":
			if v == "running" {
				st.State = StateRunning
			}
		case "pid":
			st.PID, _ = strconv.Atoi(v)
		case "program":
			st.Command = v
		}
	}
	return st, nil
}

func agentPath(name string) string { return filepath.Join(launchAgentDir, label(name)+".plist") }

func (launchd) InstallDesktop(_ context.Context, s Spec) error {
	return installFile(s, agentPath(s.Name), LaunchAgentPlist(s))
}

func (launchd) UninstallDesktop(_ context.Context, name string) error {
	return removeFile(name, agentPath(name))
}
