// Package desktopbus gives tests what a Linux desktop session has for
// notifications: a private D-Bus session bus (Start, a real dbus-daemon
// with a minimal configuration, stopped at cleanup) and a freedesktop
// notification server on it (StartServer) that records each notification
// it is asked to show and plays the user: Click emits ActionInvoked then
// NotificationClosed, as a server does when its notification is clicked.
//
// dbus-daemon is found as PCM_TEST_DBUS_DAEMON or on PATH. Where it is
// not, tests skip with the reason, unless PCM_TEST_BROWSER=require (CI sets
// it once it has installed Debian's packages, dbus among them), where they
// fail.
package desktopbus

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// Bus is a private session bus.
type Bus struct {
	// Address is the bus's D-Bus address (for DBUS_SESSION_BUS_ADDRESS).
	Address string
	cmd     *exec.Cmd
	once    sync.Once
}

const config = `<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>unix:dir=%s</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
</busconfig>
`

// Start starts a private session bus for t (no services to activate, so
// nothing on the machine answers on it but what the test starts), stopped
// when the test ends. It skips the test when dbus-daemon is not installed
// and PCM_TEST_BROWSER is not "require".
func Start(t testing.TB) *Bus {
	t.Helper()
	exe := os.Getenv("PCM_TEST_DBUS_DAEMON")
	if exe == "" {
		exe = "dbus-daemon"
	}
	path, err := exec.LookPath(exe)
	if err != nil {
		if os.Getenv("PCM_TEST_BROWSER") == "require" {
			t.Fatalf("PCM_TEST_BROWSER=require: no D-Bus daemon: %v (apt-get install dbus)", err)
		}
		t.Skipf("skipping the D-Bus test: no D-Bus daemon: %v (apt-get install dbus, or set PCM_TEST_DBUS_DAEMON)", err)
	}
	dir := t.TempDir()
	conf := filepath.Join(dir, "session.conf")
	if err := os.WriteFile(conf, fmt.Appendf(nil, config, dir), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(path, "--config-file="+conf, "--nofork", "--nopidfile", "--print-address=1")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", path, err)
	}
	b := &Bus{cmd: cmd}
	t.Cleanup(b.Stop)
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		b.Stop()
		t.Fatalf("%s printed no address: %v: %s", path, err, stderr.String())
	}
	b.Address = strings.TrimSpace(line)
	return b
}

// Stop ends the bus (every connection to it ends), as a session's end
// does. It may be called more than once.
func (b *Bus) Stop() {
	b.once.Do(func() {
		_ = b.cmd.Process.Kill()
		_ = b.cmd.Wait()
	})
}
