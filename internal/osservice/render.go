package osservice

import (
	"encoding/xml"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// SystemdUnit is the systemd unit of s (/etc/systemd/system/NAME.service).
// The service restarts whenever it exits (a crash, or an exit to run an
// updated binary) after RestartDelay, and only its main process gets the
// stop signal (KillMode=mixed): the agent kills a running job's process
// tree itself and journals the interruption within StopTimeout, after
// which whatever is left is killed.
func SystemdUnit(s Spec) string {
	s = s.withDefaults()
	var b strings.Builder
	fmt.Fprintf(&b, "# Written by pcm (%s install); pcm %s uninstall removes it.\n", commandOf(s), commandOf(s))
	b.WriteString("[Unit]\n")
	fmt.Fprintf(&b, "Description=%s\n", oneLine(s.Description))
	b.WriteString("Wants=network-online.target\nAfter=network-online.target\n")
	// No start-rate limit: the restart delay paces restarts, and a crash
	// loop is the agent's to detect and roll back, not a reason to stop.
	b.WriteString("StartLimitIntervalSec=0\n\n")
	b.WriteString("[Service]\nType=simple\n")
	fmt.Fprintf(&b, "ExecStart=%s\n", systemdCommand(s.Exec, s.Args))
	b.WriteString("Restart=always\n")
	fmt.Fprintf(&b, "RestartSec=%s\n", seconds(s.RestartDelay))
	b.WriteString("KillMode=mixed\nKillSignal=SIGTERM\n")
	fmt.Fprintf(&b, "TimeoutStopSec=%s\n", seconds(s.StopTimeout))
	if s.FileLimit > 0 {
		fmt.Fprintf(&b, "LimitNOFILE=%d\n", s.FileLimit)
	}
	b.WriteString("\n[Install]\nWantedBy=multi-user.target\n")
	return b.String()
}

// commandOf is the pcm command that manages s: "agent" for pcm-agent.
func commandOf(s Spec) string { return strings.TrimPrefix(s.Name, "pcm-") }

func seconds(d time.Duration) string { return strconv.Itoa(int((d+time.Second-1)/time.Second)) + "s" }

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

// systemdCommand quotes a command line for ExecStart: each word in double
// quotes when it holds a space, a quote or a backslash; % and $ doubled so
// that systemd expands neither.
func systemdCommand(exec string, args []string) string {
	words := make([]string, 0, 1+len(args))
	for _, w := range append([]string{exec}, args...) {
		w = strings.NewReplacer("%", "%%", "$", "$$").Replace(w)
		if w == "" || strings.ContainsAny(w, " \t\"'\\;") {
			w = `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(w) + `"`
		}
		words = append(words, w)
	}
	return strings.Join(words, " ")
}

// LaunchdPlist is the launchd property list of s, a daemon
// (/Library/LaunchDaemons/LABEL.plist): started at boot, restarted
// whenever it exits (ThrottleInterval apart), given StopTimeout to stop.
func LaunchdPlist(s Spec) string {
	s = s.withDefaults()
	p := plist{}
	p.key("Label").str(s.Label())
	p.key("ProgramArguments").array(append([]string{s.Exec}, s.Args...))
	p.key("RunAtLoad").boolean(true)
	p.key("KeepAlive").boolean(true)
	p.key("ThrottleInterval").integer(int(s.RestartDelay / time.Second))
	p.key("ExitTimeOut").integer(int(s.StopTimeout / time.Second))
	p.key("ProcessType").str("Standard")
	if s.FileLimit > 0 {
		for _, k := range []string{"SoftResourceLimits", "HardResourceLimits"} {
			p.key(k).raw("<dict><key>NumberOfFiles</key><integer>" + strconv.Itoa(s.FileLimit) + "</integer></dict>")
		}
	}
	if s.LogFile != "" {
		p.key("StandardErrorPath").str(s.LogFile)
		p.key("StandardOutPath").str(s.LogFile)
	}
	return p.String()
}

// LaunchAgentPlist is the per-user LaunchAgent of s
// (/Library/LaunchAgents/LABEL.plist): started in each user's graphical
// session at login, restarted when it exits.
func LaunchAgentPlist(s Spec) string {
	s = s.withDefaults()
	p := plist{}
	p.key("Label").str(s.Label())
	p.key("ProgramArguments").array(append([]string{s.Exec}, s.Args...))
	p.key("LimitLoadToSessionType").str("Aqua")
	p.key("RunAtLoad").boolean(true)
	p.key("KeepAlive").boolean(true)
	p.key("ThrottleInterval").integer(int(s.RestartDelay / time.Second))
	p.key("ProcessType").str("Interactive")
	return p.String()
}

// plist builds the dict of a property list.
type plist struct{ b strings.Builder }

func (p *plist) key(k string) *plist { p.b.WriteString("\t<key>" + xmlText(k) + "</key>\n"); return p }
func (p *plist) str(v string)        { p.b.WriteString("\t<string>" + xmlText(v) + "</string>\n") }
func (p *plist) integer(v int)       { p.b.WriteString("\t<integer>" + strconv.Itoa(v) + "</integer>\n") }
func (p *plist) raw(v string)        { p.b.WriteString("\t" + v + "\n") }
func (p *plist) boolean(v bool) {
	if v {
		p.b.WriteString("\t<true/>\n")
	} else {
		p.b.WriteString("\t<false/>\n")
	}
}
func (p *plist) array(vs []string) {
	p.b.WriteString("\t<array>\n")
	for _, v := range vs {
		p.b.WriteString("\t\t<string>" + xmlText(v) + "</string>\n")
	}
	p.b.WriteString("\t</array>\n")
}

func (p *plist) String() string {
	return `<?xml version="1.0" encoding="UTF-8"?>` + "\n" +
		`<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">` + "\n" +
		"<plist version=\"1.0\">\n<dict>\n" + p.b.String() + "</dict>\n</plist>\n"
}

func xmlText(s string) string {
	var b strings.Builder
	_ = xml.EscapeText(&b, []byte(s))
	return b.String()
}

// RecoveryAction is what the Windows Service Control Manager does when the
// service fails: restart it after Delay.
type RecoveryAction struct {
	Delay time.Duration
}

// WindowsService is the registration of s with the Windows Service
// Control Manager.
type WindowsService struct {
	Name, DisplayName, Description string
	// CommandLine is the service's binary path with its arguments, quoted
	// the way Windows programs split a command line.
	CommandLine string
	// Args are the arguments, as the manager passes them to CreateService.
	Args []string
	// AutoStart: the service starts at boot (SERVICE_AUTO_START).
	AutoStart bool
	// Recovery restarts the service after each of its first three
	// failures; ResetPeriod clears the failure count after that long
	// without one.
	Recovery    []RecoveryAction
	ResetPeriod time.Duration
	// RecoverOnExitCode: an exit with a non-zero code counts as a failure,
	// not only a crash (an update's exit and a crash loop both restart).
	RecoverOnExitCode bool
	// PreShutdownTimeout is StopTimeout: how long the service may take to
	// stop when the machine shuts down.
	PreShutdownTimeout time.Duration
}

// WindowsConfig is how s is registered on Windows.
func WindowsConfig(s Spec) WindowsService {
	s = s.withDefaults()
	return WindowsService{
		Name: s.Name, DisplayName: s.DisplayName, Description: oneLine(s.Description),
		CommandLine: WindowsCommandLine(s.Exec, s.Args), Args: s.Args,
		AutoStart:          true,
		Recovery:           []RecoveryAction{{s.RestartDelay}, {s.RestartDelay}, {s.RestartDelay}},
		ResetPeriod:        24 * time.Hour,
		RecoverOnExitCode:  true,
		PreShutdownTimeout: s.StopTimeout,
	}
}

// WindowsCommandLine joins exec and args into a Windows command line, each
// quoted as CommandLineToArgvW splits it back.
func WindowsCommandLine(exec string, args []string) string {
	words := []string{escapeWindowsArg(exec)}
	for _, a := range args {
		words = append(words, escapeWindowsArg(a))
	}
	return strings.Join(words, " ")
}

// escapeWindowsArg quotes s per the rules of CommandLineToArgvW (as
// syscall.EscapeArg does on Windows).
func escapeWindowsArg(s string) string {
	if s == "" {
		return `""`
	}
	if !strings.ContainsAny(s, " \t\"") {
		return s
	}
	var b strings.Builder
	b.WriteByte('"')
	slashes := 0
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '\\':
			slashes++
		case '"':
			b.WriteString(strings.Repeat(`\`, slashes+1))
			slashes = 0
		default:
			slashes = 0
		}
		b.WriteByte(s[i])
	}
	b.WriteString(strings.Repeat(`\`, slashes))
	b.WriteByte('"')
	return b.String()
}

// XDGAutostart is the freedesktop autostart entry of s
// (/etc/xdg/autostart/NAME.desktop): the desktop environment starts it in
// each user's session.
func XDGAutostart(s Spec) string {
	s = s.withDefaults()
	words := []string{}
	for _, w := range append([]string{s.Exec}, s.Args...) {
		w = strings.ReplaceAll(w, "%", "%%")
		if w == "" || strings.ContainsAny(w, " \t\n\"'\\><~|&;$*?#()`") {
			w = `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`, "`", "\\`", "$", `\$`).Replace(w) + `"`
		}
		words = append(words, w)
	}
	return "[Desktop Entry]\nType=Application\n" +
		"Name=" + oneLine(s.DisplayName) + "\n" +
		"Comment=" + oneLine(s.Description) + "\n" +
		"Exec=" + strings.Join(words, " ") + "\n" +
		"Terminal=false\nNoDisplay=true\nX-GNOME-Autostart-enabled=true\n"
}

// WindowsRunKey is the registry key whose values Windows starts in each
// user's session at logon; DesktopAutostart on Windows writes the desktop
// face's command line there under the service's name.
const WindowsRunKey = `SOFTWARE\Microsoft\Windows\CurrentVersion\Run`
