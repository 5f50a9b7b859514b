//go:build linux

package integration_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pcm-project/pcm/broker/auth"
	"github.com/pcm-project/pcm/events"
	"github.com/pcm-project/pcm/testenv"
)

// systemdReason says why pcm agent install cannot be tried under systemd
// here, or "" when it can.
func systemdReason() string {
	switch {
	case !fileExists("/run/systemd/system"):
		return "systemd is not this machine's init (no /run/systemd/system): pcm agent install is tested under systemd where it runs; the unit it writes is checked by internal/osservice's tests everywhere"
	case os.Geteuid() != 0:
		return "registering a systemd service needs root"
	}
	if _, err := exec.LookPath("systemctl"); err != nil {
		return "systemctl not found"
	}
	if exec.Command("systemctl", "cat", "pcm-agent").Run() == nil {
		return "a pcm-agent service is already installed on this machine: the test does not touch it"
	}
	return ""
}

// TestAgentInstallSystemd registers the agent with systemd for real (pcm
// agent install with a configuration file), sees it run jobs as the
// unit's main process, stops and uninstalls it.
func TestAgentInstallSystemd(t *testing.T) {
	if reason := systemdReason(); reason != "" {
		t.Skip(reason)
	}
	env := testenv.StartBroker(t)
	dir := t.TempDir()
	const client = "sd1"
	enroll(t, env.JS, client)
	config := filepath.Join(dir, "agent.yaml")
	args := []string{"agent", "install", "--no-desktop", "--config", config, "--url", env.URL, "--client-id", client,
		"--state-dir", filepath.Join(dir, "state"), "--heartbeat", "1s", "--log-file", filepath.Join(dir, "agent.log")}
	if s := testenv.SecurityOf(env.URL); s != nil {
		args = append(args, "--creds", s.Creds(t, auth.User{Role: auth.RoleAgent, Name: client}), "--allow-unsigned")
		if s.Certs != nil {
			args = append(args, "--tls-ca", s.Certs.CAFile)
		}
	}
	t.Cleanup(func() {
		if t.Failed() {
			b, _ := os.ReadFile(filepath.Join(dir, "agent.log"))
			t.Logf("agent log:\n%s", tail(string(b), 4000))
			out, _ := exec.Command("systemctl", "status", "--no-pager", "pcm-agent").CombinedOutput()
			t.Logf("systemctl status pcm-agent:\n%s", out)
		}
		_, _, _ = runPCM(t, nil, "agent", "uninstall")
	})
	if stdout, stderr, code := runPCM(t, nil, args...); code != 0 {
		t.Fatalf("pcm agent install: exit %d\n%s%s", code, stdout, stderr)
	}
	if !fileExists(config) {
		t.Fatalf("install wrote no %s", config)
	}
	mainPID := func() int {
		out, _ := exec.Command("systemctl", "show", "-p", "MainPID", "--value", "pcm-agent").Output()
		pid, _ := strconv.Atoi(strings.TrimSpace(string(out)))
		return pid
	}
	waitInventory(t, env.JS, client, time.Minute, func(i events.AgentInfo) error {
		if pid := mainPID(); pid == 0 || i.PID != pid {
			return fmt.Errorf("inventory pid %d, the unit's main pid %d", i.PID, pid)
		}
		return nil
	})
	if stdout, _, _ := runPCM(t, nil, "agent", "status"); !strings.Contains(stdout, "running") || !strings.Contains(stdout, "systemd") {
		t.Fatalf("pcm agent status:\n%s", stdout)
	}
	p := newPublisher(t, env.JS)
	id := publish(t, p, job([]string{"true"}, toClient(client)))
	if fin := finals(waitFinal(t, env.JS, client, id, time.Minute)); fin[0].State != events.StateSucceeded {
		t.Fatalf("job under systemd: %+v", fin)
	}
	if _, _, code := runPCM(t, nil, "agent", "stop"); code != 0 {
		t.Fatal("pcm agent stop failed")
	}
	if out, _ := exec.Command("systemctl", "is-active", "pcm-agent").Output(); strings.TrimSpace(string(out)) == "active" {
		t.Fatalf("pcm-agent is still active after pcm agent stop")
	}
	if _, _, code := runPCM(t, nil, "agent", "uninstall"); code != 0 {
		t.Fatal("pcm agent uninstall failed")
	}
	if exec.Command("systemctl", "cat", "pcm-agent").Run() == nil {
		t.Fatal("the unit is still registered after pcm agent uninstall")
	}
}
