//go:build windows

package osservice

import (
	"context"
	"errors"
	"fmt"
	"time"

	"golang.org/x/sys/windows"
	"golang.org/x/sys/windows/registry"
	"golang.org/x/sys/windows/svc"
	"golang.org/x/sys/windows/svc/mgr"
)

type scm struct{}

func newManager() (Manager, error) { return scm{}, nil }

func (scm) Name() string { return "scm" }

// connect opens the Service Control Manager; without administrator rights
// it fails with access denied.
func connect() (*mgr.Mgr, error) {
	m, err := mgr.Connect()
	if err != nil {
		return nil, fmt.Errorf("%w: connecting to the Service Control Manager (run as an administrator): %w", ErrManager, err)
	}
	return m, nil
}

func open(m *mgr.Mgr, name string) (*mgr.Service, error) {
	s, err := m.OpenService(name)
	if errors.Is(err, windows.ERROR_SERVICE_DOES_NOT_EXIST) {
		return nil, fmt.Errorf("%w: no Windows service %s", ErrNotInstalled, name)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: opening service %s: %w", ErrManager, name, err)
	}
	return s, nil
}

// withService connects to the Service Control Manager, opens the service
// name and gives it to fn, closing both after.
func withService(name string, fn func(s *mgr.Service) error) error {
	m, err := connect()
	if err != nil {
		return err
	}
	defer m.Disconnect()
	s, err := open(m, name)
	if err != nil {
		return err
	}
	defer s.Close()
	return fn(s)
}

func (scm) Install(_ context.Context, spec Spec) error {
	if err := spec.Validate(); err != nil {
		return err
	}
	w := WindowsConfig(spec)
	m, err := connect()
	if err != nil {
		return err
	}
	defer m.Disconnect()
	if s, err := m.OpenService(w.Name); err == nil {
		s.Close()
		return fmt.Errorf("%w: Windows service %s exists: run pcm %s uninstall first", ErrAlreadyInstalled, w.Name, commandOf(spec))
	}
	s, err := m.CreateService(w.Name, spec.Exec, mgr.Config{
		DisplayName: w.DisplayName, Description: w.Description,
		StartType: mgr.StartAutomatic, ServiceType: windows.SERVICE_WIN32_OWN_PROCESS, ErrorControl: mgr.ErrorNormal,
	}, w.Args...)
	if err != nil {
		return fmt.Errorf("%w: creating service %s: %w", ErrManager, w.Name, err)
	}
	defer s.Close()
	actions := make([]mgr.RecoveryAction, len(w.Recovery))
	for i, a := range w.Recovery {
		actions[i] = mgr.RecoveryAction{Type: mgr.ServiceRestart, Delay: a.Delay}
	}
	if err := s.SetRecoveryActions(actions, uint32(w.ResetPeriod/time.Second)); err != nil {
		return fmt.Errorf("%w: service %s: setting its recovery actions: %w", ErrManager, w.Name, err)
	}
	// Wine does not implement this setting (ERROR_INVALID_LEVEL); Windows
	// has since Vista. Without it only a crash restarts the service.
	if err := s.SetRecoveryActionsOnNonCrashFailures(w.RecoverOnExitCode); err != nil && !errors.Is(err, windows.ERROR_INVALID_LEVEL) {
		return fmt.Errorf("%w: service %s: recovery on a non-zero exit: %w", ErrManager, w.Name, err)
	}
	return nil
}

func (scm) Uninstall(ctx context.Context, name string) error {
	return withService(name, func(s *mgr.Service) error {
		if err := stop(ctx, s, name); err != nil {
			return err
		}
		if err := s.Delete(); err != nil {
			return fmt.Errorf("%w: deleting service %s: %w", ErrManager, name, err)
		}
		return nil
	})
}

func (scm) Start(_ context.Context, name string) error {
	return withService(name, func(s *mgr.Service) error {
		if err := s.Start(); err != nil && !errors.Is(err, windows.ERROR_SERVICE_ALREADY_RUNNING) {
			return fmt.Errorf("%w: starting service %s: %w", ErrManager, name, err)
		}
		return nil
	})
}

func (scm) Stop(ctx context.Context, name string) error {
	return withService(name, func(s *mgr.Service) error { return stop(ctx, s, name) })
}

// stop asks the service to stop and waits until it has, or ctx ends.
func stop(ctx context.Context, s *mgr.Service, name string) error {
	st, err := s.Control(svc.Stop)
	if err != nil && !errors.Is(err, windows.ERROR_SERVICE_NOT_ACTIVE) {
		return fmt.Errorf("%w: stopping service %s: %w", ErrManager, name, err)
	}
	for err == nil && st.State != svc.Stopped {
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w: service %s still stopping: %w", ErrManager, name, ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
		if st, err = s.Query(); err != nil {
			return fmt.Errorf("%w: querying service %s: %w", ErrManager, name, err)
		}
	}
	return nil
}

func (scm) Status(_ context.Context, name string) (Status, error) {
	var st Status
	err := withService(name, func(s *mgr.Service) error {
		q, err := s.Query()
		if err != nil {
			return fmt.Errorf("%w: querying service %s: %w", ErrManager, name, err)
		}
		st = Status{Name: name, Manager: "scm", PID: int(q.ProcessId), Path: `HKLM\SYSTEM\CurrentControlSet\Services\` + name}
		switch q.State {
		case svc.Running:
			st.State = StateRunning
		case svc.Stopped:
			st.State = StateStopped
		case svc.StartPending:
			st.State = StateStarting
		case svc.StopPending:
			st.State = StateStopping
		default:
			st.State = StateUnknown
		}
		if c, err := s.Config(); err == nil {
			st.Enabled = c.StartType == mgr.StartAutomatic
			st.Command = c.BinaryPathName
		}
		return nil
	})
	return st, err
}

func (scm) InstallDesktop(_ context.Context, s Spec) error {
	if err := s.Validate(); err != nil {
		return err
	}
	k, _, err := registry.CreateKey(registry.LOCAL_MACHINE, WindowsRunKey, registry.SET_VALUE)
	if err != nil {
		return fmt.Errorf("%w: opening HKLM\\%s (run as an administrator): %w", ErrManager, WindowsRunKey, err)
	}
	defer k.Close()
	if err := k.SetStringValue(s.Name, WindowsCommandLine(s.Exec, s.Args)); err != nil {
		return fmt.Errorf("%w: writing HKLM\\%s\\%s: %w", ErrManager, WindowsRunKey, s.Name, err)
	}
	return nil
}

func (scm) UninstallDesktop(_ context.Context, name string) error {
	k, err := registry.OpenKey(registry.LOCAL_MACHINE, WindowsRunKey, registry.SET_VALUE)
	if err != nil {
		return fmt.Errorf("%w: opening HKLM\\%s: %w", ErrManager, WindowsRunKey, err)
	}
	defer k.Close()
	if err := k.DeleteValue(name); err != nil {
		if errors.Is(err, registry.ErrNotExist) {
			return fmt.Errorf("%w: no HKLM\\%s\\%s", ErrNotInstalled, WindowsRunKey, name)
		}
		return fmt.Errorf("%w: removing HKLM\\%s\\%s: %w", ErrManager, WindowsRunKey, name, err)
	}
	return nil
}
