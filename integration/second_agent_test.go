package integration_test

import (
	"errors"
	"fmt"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/pcm-project/pcm/agent"
	"github.com/pcm-project/pcm/broker/auth"
	"github.com/pcm-project/pcm/testenv"
)

// processEnv is the environment a pcm process needs to reach the test
// broker at url as u: nothing on an open broker; u's credentials and the CA
// on a secure one (PCM_TEST_SECURE=1).
func processEnv(t testing.TB, url string, u auth.User) []string {
	t.Helper()
	s := testenv.SecurityOf(url)
	if s == nil {
		return nil
	}
	var env []string
	if u.Role == auth.RoleAdmin && s.AdminCreds != "" {
		env = append(env, "PCM_CREDS="+s.AdminCreds)
	} else {
		env = append(env, "PCM_CREDS="+s.Creds(t, u))
	}
	if s.Certs != nil {
		env = append(env, "PCM_TLS_CA="+s.Certs.CAFile)
	}
	return env
}

// lastLine is the last non-empty line of s.
func lastLine(s string) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return lines[len(lines)-1]
}

// TestSecondAgentOfAClientRefusesToStart: an agent whose client id already
// has a live agent (another state directory: another installation) refuses
// to start, saying which agent runs and when it may start instead, as the
// binary's last line and exit code 1; the same agent restarting (same host
// and state directory) starts, and so does another once the first stopped
// cleanly.
func TestSecondAgentOfAClientRefusesToStart(t *testing.T) {
	env := testenv.StartBroker(t)
	first, dir := enrolledAgent(t, env, "twin")
	host, _ := os.Hostname()

	second := startAgent(t, env.URL, "twin", t.TempDir())
	select {
	case err := <-second.done:
		second.done <- err
		if !errors.Is(err, agent.ErrAlreadyRunning) {
			t.Fatalf("the second agent returned %v, want %v", err, agent.ErrAlreadyRunning)
		}
		want := fmt.Sprintf("client twin already has an agent on host %s (pid %d, state dir %s)", host, os.Getpid(), dir)
		if !strings.Contains(err.Error(), want) {
			t.Fatalf("the second agent said %q, want it to name the first: %q", err, want)
		}
	case <-second.svc.Ready():
		t.Fatal("a second agent of client twin started beside the first")
	case <-time.After(15 * time.Second):
		t.Fatal("the second agent neither started nor refused within 15s")
	}

	// The binary says it in one line and exits 1, at once.
	start := time.Now()
	out, errOut, code := runPCM(t, processEnv(t, env.URL, auth.User{Role: auth.RoleAgent, Name: "twin"}),
		"agent", "--url", env.URL, "--client-id", "twin", "--state-dir", t.TempDir())
	line := regexp.MustCompile(`^pcm: another agent of this client is running: client twin already has an agent on host ` +
		regexp.QuoteMeta(host) + ` \(pid \d+, state dir ` + regexp.QuoteMeta(dir) + `\), started \S+, last seen \S+: ` +
		`stop it, or give this one another --client-id; if it is gone, its heartbeat goes stale at \S+ and this agent can start then$`)
	if code != 1 || !line.MatchString(lastLine(errOut)) || out != "" {
		t.Fatalf("pcm agent beside a running agent: exit %d, stdout %q, last line %q; want exit 1 and a line matching %s\nstderr:\n%s",
			code, out, lastLine(errOut), line, errOut)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("pcm agent took %s to refuse", d)
	}

	// The same agent restarting starts.
	first.stop()
	again := startAgent(t, env.URL, "twin", dir)
	again.waitReady(t)
	// Another installation starts at once when the agent before it stopped
	// cleanly (its heartbeat has not gone stale yet).
	again.stop()
	startAgent(t, env.URL, "twin", t.TempDir()).waitReady(t)
}
