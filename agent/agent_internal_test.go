package agent

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/pcm-project/pcm/agent/lock"
	"github.com/pcm-project/pcm/agent/runner"
	"github.com/pcm-project/pcm/events"
)

func TestConfigValidate(t *testing.T) {
	cases := []struct {
		name string
		cfg  Config
		want error
	}{
		{"ok", Config{ClientID: "ws-1", StateDir: "/tmp/x"}, nil},
		{"bad client", Config{ClientID: "ws.1", StateDir: "/tmp/x"}, events.ErrInvalidID},
		{"no state dir", Config{ClientID: "ws-1"}, ErrInvalidConfig},
		{"bad group", Config{ClientID: "ws-1", StateDir: "/tmp/x", Groups: []string{"a b"}}, events.ErrInvalidID},
		{"lease under a second", Config{ClientID: "ws-1", StateDir: "/tmp/x", Lease: 500 * time.Millisecond}, lock.ErrInvalidConfig},
		{"lease not whole seconds", Config{ClientID: "ws-1", StateDir: "/tmp/x", Lease: 1500 * time.Millisecond}, lock.ErrInvalidConfig},
		{"negative lease", Config{ClientID: "ws-1", StateDir: "/tmp/x", Lease: -time.Second}, ErrInvalidConfig},
		{"lease of whole seconds", Config{ClientID: "ws-1", StateDir: "/tmp/x", Lease: 2 * time.Second}, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := tc.cfg
			c.setDefaults()
			err := c.Validate()
			if tc.want == nil && err != nil || tc.want != nil && !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
			if err != nil && !errors.Is(err, ErrInvalidConfig) {
				t.Fatalf("%v does not wrap %v", err, ErrInvalidConfig)
			}
			if err != nil && strings.Contains(tc.name, "lease") && !strings.Contains(err.Error(), "--lease") {
				t.Fatalf("a bad lease (%s) is refused without naming --lease: %v", tc.cfg.Lease, err)
			}
		})
	}
}

func TestOutcome(t *testing.T) {
	job := events.JobOffered{Command: events.CommandLine{SuccessExitCodes: []int64{0, 3010}, Timeout: events.Duration(time.Minute)}}
	cases := []struct {
		res  runner.Result
		err  error
		want events.State
	}{
		{runner.Result{ExitCode: 0}, nil, events.StateSucceeded},
		{runner.Result{ExitCode: 3010}, nil, events.StateSucceeded},
		{runner.Result{ExitCode: 1}, nil, events.StateFailed},
		{runner.Result{ExitCode: -1}, nil, events.StateFailed},
		{runner.Result{ExitCode: -1, TimedOut: true}, nil, events.StateTimedOut},
		{runner.Result{}, runner.ErrStart, events.StateFailed},
	}
	for _, c := range cases {
		if got, reason := outcome(job, c.res, c.err, "linux"); got != c.want || (got != events.StateSucceeded && reason == "") {
			t.Errorf("outcome(%+v, %v) = %s %q, want %s with a reason", c.res, c.err, got, reason, c.want)
		}
	}
	// A command line that may reboot: its restart exit codes (Windows
	// Installer's by default, on Windows only) are successes that ask for
	// a restart.
	reboot := events.JobOffered{Command: events.CommandLine{MayReboot: true, Timeout: events.Duration(time.Minute)}}
	for _, c := range []struct {
		job     events.JobOffered
		exit    int
		goos    string
		state   events.State
		restart bool
	}{
		{reboot, 3010, "windows", events.StateSucceeded, true},
		{reboot, 1641, "windows", events.StateSucceeded, true},
		{reboot, 3010, "linux", events.StateFailed, false},
		{reboot, 0, "windows", events.StateSucceeded, false},
		{func() events.JobOffered { j := reboot; j.Command.RestartExitCodes = []int64{194}; return j }(), 194, "linux", events.StateSucceeded, true},
		{func() events.JobOffered { j := reboot; j.Command.RestartExitCodes = []int64{194}; return j }(), 3010, "windows", events.StateFailed, false},
		{func() events.JobOffered { j := reboot; j.Command.MayReboot = false; return j }(), 3010, "windows", events.StateFailed, false},
	} {
		got, reason := outcome(c.job, runner.Result{ExitCode: c.exit}, nil, c.goos)
		if got != c.state || c.job.Command.RestartRequired(c.exit, c.goos) != c.restart || (c.restart && !strings.Contains(reason, "must restart")) {
			t.Errorf("exit %d on %s with restart codes %v (may reboot %v): %s %q, want %s, restart %v",
				c.exit, c.goos, c.job.Command.RestartExitCodes, c.job.Command.MayReboot, got, reason, c.state, c.restart)
		}
	}
}

func TestReconnectDelayIsJitteredAndCapped(t *testing.T) {
	seen := map[time.Duration]bool{}
	for i := 0; i < 50; i++ {
		d := reconnectDelay(30)
		if d < 2500*time.Millisecond || d >= 7500*time.Millisecond {
			t.Fatalf("delay %s outside [2.5s, 7.5s)", d)
		}
		seen[d] = true
	}
	if len(seen) < 10 {
		t.Fatal("delays are not jittered")
	}
	if d := reconnectDelay(0); d >= 150*time.Millisecond {
		t.Fatalf("first delay %s", d)
	}
}

func TestJobIDOfRaw(t *testing.T) {
	h := map[string][]string{"Ce-Subject": {"from-header"}}
	cases := []struct {
		header map[string][]string
		body   string
		want   string
	}{
		{nil, `{"subject":"s1"}`, "s1"},
		{nil, `{"data":{"job_id":"d1"}}`, "d1"},
		{nil, `{"subject":"a.b","data":{"job_id":"d2"}}`, "d2"},
		{h, `not json`, "from-header"},
		{nil, `not json`, ""},
		{nil, `{"subject":"*"}`, ""},
	}
	for _, c := range cases {
		if got := jobIDOfRaw(c.header, []byte(c.body)); got != c.want {
			t.Errorf("jobIDOfRaw(%v, %s) = %q, want %q", c.header, c.body, got, c.want)
		}
	}
}

// TestBusyNoticeText: the busy notice names the job the service runs and
// the job that waits, and says package only for a job that has one.
func TestBusyNoticeText(t *testing.T) {
	pkg := &events.PackageRef{Name: "editor", Version: "1.2"}
	for _, tc := range []struct {
		running, waiting events.JobOffered
		want             string
	}{
		{events.JobOffered{JobID: "J1"}, events.JobOffered{JobID: "J2"},
			"job J1 is running in the background; job J2 starts when it finishes."},
		{events.JobOffered{JobID: "J1", Name: "Install editor", Package: pkg}, events.JobOffered{JobID: "J2", Name: "Backup"},
			`package editor@1.2 (job "Install editor" (J1)) is being installed in the background; job "Backup" (J2) starts when it finishes.`},
		{events.JobOffered{}, events.JobOffered{JobID: "J2", Package: pkg},
			"a job is running in the background; package editor@1.2 (job J2) starts when it finishes."},
	} {
		if got := busyNoticeText(tc.running, tc.waiting); got != tc.want {
			t.Errorf("busy notice\n got %q\nwant %q", got, tc.want)
		}
	}
}
