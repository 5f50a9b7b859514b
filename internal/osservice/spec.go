package osservice

import (
	"context"
	"fmt"
	"path/filepath"
	"regexp"
	"time"
)

// Defaults of a Spec.
const (
	// DefaultStopTimeout is how long a service has to stop before it is
	// killed: long enough for the agent to kill a running job's process
	// tree and journal its interruption.
	DefaultStopTimeout = 60 * time.Second
	// DefaultRestartDelay is how long the service manager waits before
	// restarting a service that exited.
	DefaultRestartDelay = 5 * time.Second
)

// Spec is one service: what runs, and how the service manager treats it.
type Spec struct {
	// Name is the service's name: pcm-agent, pcm-broker. It names the
	// systemd unit (pcm-agent.service), the launchd label (io.pcm.NAME
	// through Label) and the Windows service.
	Name string
	// DisplayName is the name shown in service lists; default Name.
	DisplayName string
	// Description says what the service does.
	Description string
	// Exec is the absolute path of the binary.
	Exec string
	// Args are the binary's arguments (agent --config /etc/pcm/agent.yaml).
	Args []string
	// StopTimeout is how long the service may take to stop before it is
	// killed; default DefaultStopTimeout.
	StopTimeout time.Duration
	// RestartDelay is the wait before a restart after the service exits
	// (on failure, or to run an updated binary); default
	// DefaultRestartDelay.
	RestartDelay time.Duration
	// FileLimit raises the open-file limit (systemd LimitNOFILE, launchd
	// NumberOfFiles); 0 keeps the system's default.
	FileLimit int
	// LogFile is where a service without a standard error (Windows, launchd)
	// writes its logs; empty for systemd, whose journal takes stderr.
	LogFile string
}

var validName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$`)

// Validate checks the spec.
func (s Spec) Validate() error {
	if !validName.MatchString(s.Name) {
		return fmt.Errorf("%w: service name %q: use 1 to 64 of A-Z a-z 0-9 _ . - (such as pcm-agent)", ErrInvalidSpec, s.Name)
	}
	if !filepath.IsAbs(s.Exec) && !isWindowsAbs(s.Exec) {
		return fmt.Errorf("%w: service %s: binary %q is not an absolute path: the service manager starts it from anywhere", ErrInvalidSpec, s.Name, s.Exec)
	}
	if s.StopTimeout < 0 || s.RestartDelay < 0 || s.FileLimit < 0 {
		return fmt.Errorf("%w: service %s: stop timeout, restart delay and file limit must not be negative", ErrInvalidSpec, s.Name)
	}
	return nil
}

// isWindowsAbs reports whether p is an absolute Windows path (C:\..., or
// \\server\share\...), whatever platform renders it.
func isWindowsAbs(p string) bool {
	return len(p) >= 3 && (p[0]|0x20) >= 'a' && (p[0]|0x20) <= 'z' && p[1] == ':' && (p[2] == '\\' || p[2] == '/') ||
		len(p) >= 2 && p[0] == '\\' && p[1] == '\\'
}

func (s Spec) withDefaults() Spec {
	if s.DisplayName == "" {
		s.DisplayName = s.Name
	}
	if s.StopTimeout == 0 {
		s.StopTimeout = DefaultStopTimeout
	}
	if s.RestartDelay == 0 {
		s.RestartDelay = DefaultRestartDelay
	}
	return s
}

// Label is the service's launchd label: io.pcm. and its name.
func (s Spec) Label() string { return "io.pcm." + s.Name }

// State is what the service manager says of a service.
type State string

// The states Status reports.
const (
	StateRunning  State = "running"
	StateStopped  State = "stopped"
	StateStarting State = "starting"
	StateStopping State = "stopping"
	StateUnknown  State = "unknown"
)

// Status is a registered service as the service manager sees it.
type Status struct {
	// Name of the service.
	Name string `json:"name"`
	// Manager is systemd, launchd or scm.
	Manager string `json:"manager"`
	// State is running, stopped, starting, stopping or unknown.
	State State `json:"state"`
	// PID of the running process (0 when none).
	PID int `json:"pid,omitempty"`
	// Enabled tells whether the service starts at boot.
	Enabled bool `json:"enabled"`
	// Path is where the registration lives (the unit or plist file, or
	// the service's registry key).
	Path string `json:"path,omitempty"`
	// Command is the command line the manager starts.
	Command string `json:"command,omitempty"`
}

// underManagerKey marks the context Run gives a body that the Service
// Control Manager started.
type underManagerKey struct{}

// UnderManager reports whether ctx is that of a body Run runs as a Windows
// service: such a process cannot replace itself (no exec on Windows); it
// exits with an error and the service's recovery actions start it again.
func UnderManager(ctx context.Context) bool {
	v, _ := ctx.Value(underManagerKey{}).(bool)
	return v
}
