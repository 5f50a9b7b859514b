package integration_test

import (
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/pcm-project/pcm/events"
	"github.com/pcm-project/pcm/testenv"
)

// TestFacesRefuseBadConfiguration: a bad lease or grace makes pcm agent and
// pcm desktop exit non-zero at once, naming the flag, without reaching for
// the broker (nothing listens at the URL given).
func TestFacesRefuseBadConfiguration(t *testing.T) {
	nowhere := "nats://127.0.0.1:1"
	dir := t.TempDir()
	for _, tc := range []struct {
		args []string
		flag string
	}{
		{[]string{"agent", "--lease", "1500ms"}, "--lease"},
		{[]string{"agent", "--lease", "500ms"}, "--lease"},
		{[]string{"agent", "--lease", "-5s"}, "--lease"},
		{[]string{"agent", "--enroll", "--lease", "1500ms"}, "--lease"},
		{[]string{"desktop", "--lease", "2500ms"}, "--lease"},
		{[]string{"desktop", "list", "--lease", "1500ms"}, "--lease"},
		{[]string{"desktop", "--grace", "-10s"}, "--grace"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			start := time.Now()
			args := append(tc.args, "--url", nowhere, "--client-id", "cfg1", "--state-dir", filepath.Join(dir, "state"))
			_, errOut, code := runPCM(t, nil, args...)
			if code == 0 || !strings.Contains(errOut, tc.flag) {
				t.Fatalf("pcm %v: exit %d, stderr %q; want a non-zero exit naming %s", tc.args, code, errOut, tc.flag)
			}
			if took := time.Since(start); took > 5*time.Second {
				t.Fatalf("pcm %v took %s to refuse its configuration", tc.args, took)
			}
		})
	}
}

// TestDesktopTellsTheTruth: the built pcm desktop, with a real service face
// (pcm agent) on the same client, counts a mandatory job that needs the
// user down from --grace, runs it when the countdown ends, and says nothing
// of a job the service ran.
func TestDesktopTellsTheTruth(t *testing.T) {
	env := testenv.StartBroker(t)
	dir := t.TempDir()
	enroll(t, env.JS, "truth1")
	common := []string{"--url", env.URL, "--client-id", "truth1", "--lease", "2s"}
	startPCM(t, dir, nil, append([]string{"agent", "--state-dir", filepath.Join(dir, "svc")}, common...)...)
	waitPulling(t, env.JS, "truth1")
	desk := startPCM(t, dir, nil, append([]string{"desktop", "--grace", "10s", "--state-dir", filepath.Join(dir, "desk")}, common...)...)
	said := &saidLines{lr: desk.stdout}

	// A default job (mandatory now, automated): the service runs it at once.
	out, errOut, code := runPCM(t, nil, "publish", "--url", env.URL, "--client", "truth1", "--", "true")
	if code != 0 {
		t.Fatalf("pcm publish: exit %d: %s", code, errOut)
	}
	svcJob := strings.TrimSpace(out)
	if fin := finals(waitFinal(t, env.JS, "truth1", svcJob, 10*time.Second)); fin[0].Runner != events.RunnerService || fin[0].State != events.StateSucceeded {
		t.Fatalf("the service's job: %+v", fin)
	}

	// A job that needs the user, mandatory now: the desktop counts it down.
	out, errOut, code = runPCM(t, nil, "publish", "--url", env.URL, "--client", "truth1", "--interactive", "--", "true")
	if code != 0 {
		t.Fatalf("pcm publish --interactive: exit %d: %s", code, errOut)
	}
	deskJob := strings.TrimSpace(out)
	said.waitLine(t, regexp.MustCompile(`^job `+deskJob+` offered; run it with: pcm desktop run `+deskJob+`$`), 10*time.Second)
	said.waitLine(t, regexp.MustCompile(`^job `+deskJob+` is mandatory and starts in 10s: save your work$`), 10*time.Second)
	warned := time.Now()
	said.waitLine(t, regexp.MustCompile(`^job `+deskJob+` succeeded$`), 20*time.Second)
	fin := finals(waitFinal(t, env.JS, "truth1", deskJob, 5*time.Second))[0]
	if fin.Runner != events.RunnerDesktop || fin.StartedAt.Sub(warned) < 9*time.Second {
		t.Fatalf("the desktop's job %+v started %s after the warning, want the 10s of --grace", fin, fin.StartedAt.Sub(warned))
	}
	for _, l := range said.all {
		if strings.Contains(l, svcJob) {
			t.Fatalf("the desktop told the user about the job the service ran: %q", l)
		}
	}
}

// saidLines keeps every stdout line of a process read so far.
type saidLines struct {
	lr  *lineReader
	all []string
}

// waitLine waits for a line matching re, keeping every line read.
func (s *saidLines) waitLine(t testing.TB, re *regexp.Regexp, timeout time.Duration) {
	t.Helper()
	deadline := time.After(timeout)
	for {
		select {
		case l, ok := <-s.lr.lines:
			if !ok {
				t.Fatalf("stdout closed before a line matching %s; lines: %q", re, s.all)
			}
			s.all = append(s.all, l)
			if re.MatchString(l) {
				return
			}
		case <-deadline:
			t.Fatalf("no stdout line matching %s within %s; lines: %q", re, timeout, s.all)
		}
	}
}
