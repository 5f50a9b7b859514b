package integration_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pcm-project/pcm/agent"
	"github.com/pcm-project/pcm/broker/auth"
	"github.com/pcm-project/pcm/events"
	"github.com/pcm-project/pcm/internal/clock"
	"github.com/pcm-project/pcm/maintenance"
	"github.com/pcm-project/pcm/publisher"
	"github.com/pcm-project/pcm/testenv"
)

// The time rules for people, end to end: real pcm agent processes and a
// desktop session share a test clock (PCM_TEST_CLOCK) that runs hundreds
// of times as fast as the system's, so that hours of deferrals, grace and
// windows pass in seconds; timeouts, leases and acks stay real.

// testClock is a clock reading at now, speed times as fast.
func testClock(at time.Time, speed float64) clock.Scaled { return clock.NewScaled(at, speed) }

// clockEnv gives a pcm process the clock.
func clockEnv(c clock.Scaled) []string { return []string{clock.Env + "=" + c.String()} }

// fakeTime is what c read at the real instant t.
func fakeTime(c clock.Scaled, t time.Time) time.Time {
	return c.At.Add(time.Duration(float64(t.Sub(c.Since)) * c.Speed))
}

// clockPublisher publishes with the clock's time.
func clockPublisher(t testing.TB, env *testenv.Broker, c clock.Scaled) *publisher.Publisher {
	t.Helper()
	p, err := publisher.New(env.JS, publisher.Config{Name: "test", Now: c.Now})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// agentProc is a real pcm agent of one client, started again as the test
// needs.
type agentProc struct {
	t      testing.TB
	dir    string
	env    []string
	args   []string
	client string
	p      *proc
}

func newAgentProc(t testing.TB, env *testenv.Broker, client, dir string, procEnv []string, extra ...string) *agentProc {
	args := append([]string{"agent", "--url", env.URL, "--client-id", client, "--state-dir", filepath.Join(dir, "state"),
		"--lease", "2s", "--heartbeat", "1s"}, extra...)
	if env.Sec != nil && env.Sec.IssuerFile != "" {
		// On a secure broker the agent runs with its client's agent
		// credentials, as in production, not the admin's the test's
		// processes inherit: what it publishes then reaches its desktop.
		procEnv = append(append([]string{}, procEnv...), "PCM_CREDS="+env.Sec.Creds(t, auth.User{Role: auth.RoleAgent, Name: client}))
	}
	return &agentProc{t: t, dir: dir, env: procEnv, args: args, client: client}
}

// run starts the agent, with extra environment for this life only.
func (a *agentProc) run(extraEnv ...string) {
	a.p = startPCM(a.t, a.dir, append(append([]string{}, a.env...), extraEnv...), a.args...)
}

// kill kills the agent (SIGKILL) and waits for its end.
func (a *agentProc) kill() {
	_ = a.p.cmd.Process.Signal(syscall.SIGKILL)
	a.p.waitExit(a.t, 10*time.Second)
}

// count is how many lines the desktop said that contain sub.
func (d *testDesktop) count(sub string) int {
	d.mu.Lock()
	defer d.mu.Unlock()
	n := 0
	for _, l := range d.said {
		if strings.Contains(l, sub) {
			n++
		}
	}
	return n
}

// waitSaid waits until the desktop said sub n times.
func (d *testDesktop) waitSaid(t testing.TB, sub string, n int, timeout time.Duration) {
	t.Helper()
	testenv.WaitFor(t, timeout, "the desktop saying "+sub, func() bool { return d.count(sub) >= n })
}

// session runs the desktop's session until the test ends.
func (d *testDesktop) session(t testing.TB) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Session(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
}

// TestDeferTwiceRunsAtTheThirdNotice: a mandatory automated job that
// allows two deferrals of 2h: the desktop session warns the user at its
// time, saying how to defer it; the user defers it twice with pcm desktop
// defer (the service, killed and started again between them, respects
// both); at the third notice none is left, a third deferral is refused, and
// the service runs the job once, after the countdown. The history shows
// who deferred, and how many deferrals were left.
func TestDeferTwiceRunsAtTheThirdNotice(t *testing.T) {
	env := testenv.StartBroker(t)
	const client = "defer1"
	enroll(t, env.JS, client)
	dir := t.TempDir()
	clk := testClock(time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC), 900) // 1 s real = 15 min
	grace := time.Hour
	svc := newAgentProc(t, env, client, dir, clockEnv(clk), "--grace", grace.String())
	svc.run()
	waitPulling(t, env.JS, client)
	d := newTestDesktop(t, env.URL, client, func(c *agent.DesktopConfig) { c.Clock, c.Grace = clk, grace })
	d.session(t)

	marker := filepath.Join(dir, "ran")
	j := job(appendTo(marker), toClient(client))
	due := clk.Now().Add(30 * time.Minute).UTC()
	j.OfferAfter, j.MandatoryAfter, j.ExpireAfter = clk.Now().UTC(), &due, due.Add(7*24*time.Hour)
	deadline := due.Add(48 * time.Hour)
	j.Deferrals = &events.Deferrals{Max: 2, Each: events.Duration(2 * time.Hour), Deadline: &deadline}
	id := publish(t, clockPublisher(t, env, clk), j)
	deskArgs := []string{"--url", env.URL, "--client-id", client, "--state-dir", filepath.Join(dir, "desk")}

	deferIt := func(left int) {
		t.Helper()
		out, errOut, code := runPCM(t, clockEnv(clk), append([]string{"desktop", "defer", id}, deskArgs...)...)
		if code != 0 || !strings.Contains(out, "deferred until") || !strings.Contains(out, fmt.Sprintf("(%d of 2 deferrals left)", left)) {
			t.Fatalf("pcm desktop defer: exit %d, %q %q; want %d left", code, out, errOut, left)
		}
	}
	notice := "is mandatory and starts in"
	d.waitSaid(t, notice, 1, 20*time.Second)
	if !d.saidSomething("it can be put off for 2h0m0s (2 of 2 deferrals left, deadline ") || !d.saidSomething("; put it off with: pcm desktop defer "+id) {
		t.Fatalf("the first notice does not say how to defer, and the deadline: %q", d.said)
	}
	deferIt(1)
	// pcm desktop list shows the deferrals left and the deadline.
	if out, errOut, code := runPCM(t, clockEnv(clk), append([]string{"desktop", "list"}, deskArgs...)...); code != 0 ||
		!strings.Contains(out, "1 of 2 left, deadline "+deadline.UTC().Format(time.RFC3339)) {
		t.Fatalf("pcm desktop list: exit %d, %q %q; want 1 of 2 deferrals left and the deadline", code, out, errOut)
	}
	// The service dies and comes back: the deferral holds (the broker and
	// its journal keep it).
	svc.kill()
	svc.run()
	d.waitSaid(t, notice, 2, 30*time.Second)
	if !d.saidSomething("(1 of 2 deferrals left") {
		t.Fatalf("the second notice does not say one deferral is left: %q", d.said)
	}
	deferIt(0)
	d.waitSaid(t, notice, 3, 30*time.Second)
	if !d.saidSomething("it cannot be put off: no deferral left") {
		t.Fatalf("the third notice does not say no deferral is left: %q", d.said)
	}
	if _, errOut, code := runPCM(t, clockEnv(clk), append([]string{"desktop", "defer", id}, deskArgs...)...); code == 0 ||
		!strings.Contains(errOut, "no deferral left") {
		t.Fatalf("a third deferral: exit %d, %q", code, errOut)
	}
	sts := waitFinal(t, env.JS, client, id, 30*time.Second)
	waitAcked(t, env.JS, client, 10*time.Second)
	if n := markerLines(t, marker); n != 1 {
		t.Fatalf("the job ran %d times, want once", n)
	}
	var deferrals []events.JobStatus
	var started *events.JobStatus
	for i, s := range sts {
		switch s.State {
		case events.StateDeferred:
			deferrals = append(deferrals, s)
		case events.StateStarted:
			started = &sts[i]
		}
	}
	if len(deferrals) != 2 || started == nil {
		t.Fatalf("statuses %+v: want two deferrals and one run", sts)
	}
	for i, s := range deferrals {
		if s.Runner != events.RunnerDesktop || s.User == "" || s.Deferral != i+1 || s.DeferralsMax != 2 || s.DeferralsLeft() != 1-i ||
			!strings.Contains(s.Reason, "deferred by "+s.User) {
			t.Errorf("deferral %d: %+v", i+1, s)
		}
	}
	// Two deferrals of 2h from the notices, then the countdown: the run
	// starts no earlier than 4h plus the grace after the mandatory time.
	ranAt := fakeTime(clk, *started.StartedAt)
	if earliest := due.Add(4*time.Hour + grace); ranAt.Before(earliest.Add(-15 * time.Minute)) {
		t.Fatalf("the job ran at %s (test clock), before %s: the deferrals and the countdown were not respected", ranAt, earliest)
	}
	if fin := finals(sts); len(fin) != 1 || fin[0].State != events.StateSucceeded || fin[0].Runner != events.RunnerService {
		t.Fatalf("finals %+v", fin)
	}
}

// TestGraceAfterOffline: a client that was off at a job's mandatory time
// (its agent not running) first sees the job two days late: its desktop
// warns the user, and the service runs the job only when the grace after
// offline, counted from first sight, has passed, even though its agent is
// killed and started again during the grace (the journal keeps the first
// sight).
func TestGraceAfterOffline(t *testing.T) {
	env := testenv.StartBroker(t)
	const client = "offline1"
	enroll(t, env.JS, client)
	dir := t.TempDir()
	clk := testClock(time.Date(2026, 3, 9, 8, 0, 0, 0, time.UTC), 900)
	marker := filepath.Join(dir, "ran")
	j := job(appendTo(marker), toClient(client))
	due := clk.Now().Add(-48 * time.Hour).UTC() // Saturday morning; the laptop was off
	j.OfferAfter, j.MandatoryAfter, j.ExpireAfter = due.Add(-time.Hour), &due, due.Add(7*24*time.Hour)
	j.GraceAfterOffline = events.Duration(2 * time.Hour)
	id := publish(t, clockPublisher(t, env, clk), j)

	// The machine boots: the user's session and the service start.
	d := newTestDesktop(t, env.URL, client, func(c *agent.DesktopConfig) { c.Clock = clk })
	d.session(t)
	bootedAt := clk.Now()
	svc := newAgentProc(t, env, client, dir, clockEnv(clk))
	svc.run()
	d.waitSaid(t, "while this computer was off: it starts in", 1, 20*time.Second)
	waitPulling(t, env.JS, client)
	svc.kill() // during the grace
	if n := markerLines(t, marker); n != 0 {
		t.Fatal("the job ran at boot, during its grace after offline")
	}
	svc.run()
	sts := waitFinal(t, env.JS, client, id, 30*time.Second)
	var started *events.JobStatus
	for i, s := range sts {
		if s.State == events.StateStarted {
			started = &sts[i]
		}
	}
	if started == nil || markerLines(t, marker) != 1 {
		t.Fatalf("statuses %+v, runs %d: want one run", sts, markerLines(t, marker))
	}
	ranAt := fakeTime(clk, *started.StartedAt)
	if ranAt.Before(bootedAt.Add(2 * time.Hour)) {
		t.Fatalf("the job ran at %s (test clock), before the end of its grace after offline (%s)", ranAt, bootedAt.Add(2*time.Hour))
	}
	if ranAt.After(bootedAt.Add(2*time.Hour + 2*time.Hour)) {
		t.Fatalf("the job ran at %s (test clock): the grace restarted with the agent (first sight at boot, %s)", ranAt, bootedAt)
	}
	waitAcked(t, env.JS, client, 10*time.Second)
}

// TestWindowBoundJobWaitsForTheWindow: a job that requires a maintenance
// window, published outside the client's group's window (Mon-Fri
// 22:00-04:00 Europe/Berlin, the test clock at Monday 21:40 there), waits,
// and starts when the window opens.
func TestWindowBoundJobWaitsForTheWindow(t *testing.T) {
	env := testenv.StartBroker(t)
	const client = "win1"
	enroll(t, env.JS, client, "night")
	berlin, err := time.LoadLocation("Europe/Berlin")
	if err != nil {
		t.Fatal(err)
	}
	w, err := events.ParseWindow("Mon-Fri 22:00-04:00 Europe/Berlin")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := maintenance.New(env.JS).Set(ctx, events.Target{Kind: events.TargetGroup, Name: "night"}, []events.Window{w}, "ops"); err != nil {
		t.Fatal(err)
	}
	clk := testClock(time.Date(2026, 3, 2, 21, 40, 0, 0, berlin), 150) // the window opens in 8 s
	dir := t.TempDir()
	svc := newAgentProc(t, env, client, dir, clockEnv(clk))
	svc.run()
	waitPulling(t, env.JS, client)
	marker := filepath.Join(dir, "ran")
	j := job(appendTo(marker), toGroup("night"))
	now := clk.Now().UTC()
	j.OfferAfter, j.MandatoryAfter, j.ExpireAfter = now, &now, now.Add(7*24*time.Hour)
	j.InWindow = true
	j.Command.Timeout = events.Duration(time.Hour)
	id := publish(t, clockPublisher(t, env, clk), j)
	sts := waitFinal(t, env.JS, client, id, 30*time.Second)
	var started *events.JobStatus
	for i, s := range sts {
		if s.State == events.StateStarted {
			started = &sts[i]
		}
	}
	if started == nil || markerLines(t, marker) != 1 {
		t.Fatalf("statuses %+v: want one run", sts)
	}
	opens := time.Date(2026, 3, 2, 22, 0, 0, 0, berlin)
	if ranAt := fakeTime(clk, *started.StartedAt); ranAt.Before(opens) || ranAt.After(opens.Add(30*time.Minute)) {
		t.Fatalf("the job started at %s (test clock), want when the window opens (%s)", ranAt.In(berlin), opens)
	}
	waitAcked(t, env.JS, client, 10*time.Second)
}

// TestWindowStatusAndBadInput: pcm window set refuses windows that never
// open and unknown zones, saying what to give; pcm publish refuses
// deferrals and graces out of range; a job that requires a window the
// client does not have open says so in pcm status, with the next opening.
func TestWindowStatusAndBadInput(t *testing.T) {
	env := testenv.StartBroker(t)
	const client = "win2"
	enroll(t, env.JS, client, "lab")
	url := func(args ...string) []string { return append([]string{"--url", env.URL}, args...) }
	for _, tc := range []struct {
		args []string
		says string
	}{
		{[]string{"window", "set", "--group", "lab", "Mon-Fri 22:00-22:00 Europe/Berlin"}, "never opens: its start and its end are the same time"},
		{[]string{"window", "set", "--group", "lab", "Mon-Fri 22:00-04:00 Europe/Berln"}, `time zone "Europe/Berln" is unknown: give an IANA zone such as Europe/Berlin`},
		{[]string{"window", "set", "--group", "lab", "2020-01-01 08:00-18:00 UTC"}, "never opens again: its date has passed"},
		{[]string{"window", "set", "--group", "lab", "Someday 08:00-18:00 UTC"}, "give days as Mon, Tue, ... Sun"},
		{[]string{"window", "set", "Mon 08:00-18:00 UTC"}, "one of --client ID, --group G or --all"},
		{[]string{"publish", "--client", client, "--deferrals", "21", "--", "true"}, "deferrals.max is 21: give 1 to 20"},
		{[]string{"publish", "--client", client, "--deferrals", "2", "--defer-each", "10s", "--", "true"}, "deferrals.each is 10s: give 1m0s to 168h0m0s"},
		{[]string{"publish", "--client", client, "--defer-each", "1h", "--", "true"}, "need --deferrals N"},
		{[]string{"publish", "--client", client, "--deferrals", "2", "--optional", "--", "true"}, "give mandatory_after or leave deferrals out"},
		{[]string{"publish", "--client", client, "--grace-after-offline", "30s", "--", "true"}, "grace_after_offline is 30s: give 1m0s to 168h0m0s"},
		{[]string{"publish", "--client", client, "--restart-codes", "3010", "--", "true"}, "set may_reboot (--may-reboot)"},
	} {
		_, errOut, code := runPCM(t, nil, url(tc.args...)...)
		if code == 0 || !strings.Contains(errOut, tc.says) {
			t.Errorf("pcm %v: exit %d, %q; want a refusal saying %q", tc.args, code, errOut, tc.says)
		}
	}
	if list, err := maintenance.New(env.JS).List(context.Background()); err != nil || len(list) != 0 {
		t.Fatalf("refused windows were stored: %+v, %v", list, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	jobs, err := env.JS.Stream(ctx, events.StreamJobs)
	if err != nil {
		t.Fatal(err)
	}
	if n := jobs.CachedInfo().State.Msgs; n != 0 {
		t.Fatalf("refused jobs were published: %d messages in %s", n, events.StreamJobs)
	}

	// A window tomorrow only; the job requires one.
	tomorrow := time.Now().UTC().Add(24 * time.Hour).Format(time.DateOnly)
	if out, errOut, code := runPCM(t, nil, url("window", "set", "--group", "lab", tomorrow+" 08:00-18:00 UTC")...); code != 0 {
		t.Fatalf("pcm window set: exit %d: %s %s", code, out, errOut)
	}
	out, errOut, code := runPCM(t, nil, url("window", "list", "--client", client)...)
	if code != 0 || !strings.Contains(out, "group:lab") || !strings.Contains(out, tomorrow) {
		t.Fatalf("pcm window list --client: exit %d: %s %s", code, out, errOut)
	}
	startAgent(t, env.URL, client, t.TempDir()).waitReady(t)
	out, errOut, code = runPCM(t, nil, url("publish", "--client", client, "--in-window", "--timeout", "1h", "--", "true")...)
	if code != 0 {
		t.Fatalf("pcm publish --in-window: exit %d: %s", code, errOut)
	}
	id := strings.TrimSpace(out)
	re := regexp.MustCompile(`waiting for maintenance window \(next: ` + regexp.QuoteMeta(tomorrow))
	testenv.CheckFor(t, 15*time.Second, 200*time.Millisecond, func() error {
		out, errOut, code := runPCM(t, nil, url("status", id, "--utc")...)
		if code != 0 || !re.MatchString(out) {
			return &statusErr{out: out + errOut}
		}
		return nil
	})
	if sts := readStatuses(t, env.JS, client, id); len(sts) != 0 {
		t.Fatalf("the job did something outside its window: %+v", sts)
	}
	// pcm window rm removes them; the client has none left.
	if out, errOut, code := runPCM(t, nil, url("window", "rm", "--group", "lab")...); code != 0 {
		t.Fatalf("pcm window rm: exit %d: %s %s", code, out, errOut)
	}
	if list, err := maintenance.New(env.JS).List(context.Background()); err != nil || len(list) != 0 {
		t.Fatalf("windows after pcm window rm: %+v, %v", list, err)
	}
	if out, errOut, code := runPCM(t, nil, url("window", "list", "--client", client)...); code != 0 || strings.Contains(out, "group:lab") {
		t.Fatalf("pcm window list --client after pcm window rm: exit %d: %s %s", code, out, errOut)
	}
}

// statusErr is a pcm status output that does not say what is expected.
type statusErr struct{ out string }

func (e *statusErr) Error() string { return "pcm status says: " + e.out }

// TestRestartRequired: a job that may reboot exits 3010 (194 on Unix), one
// of its restart exit codes: it succeeds asking for a restart, the desktop session counts
// the restart down to a final warning, the service restarts the machine
// once (a dry-run recorder: it stops as a restart would stop it), and, when
// it comes back, reports the job restarted and never runs it again; also
// when the agent is killed between the job's exit and the restart.
func TestRestartRequired(t *testing.T) {
	for _, tc := range []struct {
		name  string
		fault agent.FaultPoint
	}{
		{"restart", ""},
		{"killed after the exit, before the status is sent", agent.FaultAfterFinish},
		{"killed after the status is stored, before the restart", agent.FaultAfterPublish},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env := testenv.StartBroker(t)
			client := "reboot" + strings.ReplaceAll(string(tc.fault), "-", "")
			enroll(t, env.JS, client)
			dir := t.TempDir()
			clk := testClock(time.Now(), 60) // 2m of grace last 2 s
			recorder := filepath.Join(dir, "restarts")
			svc := newAgentProc(t, env, client, dir, clockEnv(clk), "--grace", "2m", "--restart-dry-run", recorder)
			var d *testDesktop
			if tc.fault == "" {
				d = newTestDesktop(t, env.URL, client, func(c *agent.DesktopConfig) { c.Clock, c.Grace = clk, 2*time.Minute })
				d.session(t)
			}
			var faultEnv []string
			if tc.fault != "" {
				faultEnv = []string{"PCM_TEST_FAULT_POINT=" + string(tc.fault)}
			}
			svc.run(faultEnv...)
			waitPulling(t, env.JS, client)
			marker := filepath.Join(dir, "ran")
			// Exit codes are 8 bits on Unix: Windows Installer's 3010 is
			// 194 there (3010 mod 256), the restart exit code of this job.
			j := job([]string{"sh", "-c", "echo ran >> " + marker + "; exit 3010"}, toClient(client))
			now := clk.Now().UTC()
			j.OfferAfter, j.MandatoryAfter, j.ExpireAfter = now, &now, now.Add(24*time.Hour)
			j.Command.MayReboot, j.Command.RestartExitCodes = true, []int64{3010 % 256}
			id := publish(t, clockPublisher(t, env, clk), j)
			if tc.fault != "" {
				svc.p.waitExit(t, 20*time.Second) // killed itself at the fault point
				svc.run()
			}
			// The restart: the dry run records it and the agent stops.
			svc.p.waitExit(t, 30*time.Second)
			if n := markerLines(t, recorder); n != 1 {
				t.Fatalf("%d restarts recorded, want 1", n)
			}
			sts := readStatuses(t, env.JS, client, id)
			fin := finals(sts)
			if len(fin) != 1 || fin[0].State != events.StateSucceeded || !fin[0].RestartRequired || fin[0].RestartAt == nil || *fin[0].ExitCode != 3010%256 {
				t.Fatalf("finals %+v: want one success asking for a restart", fin)
			}
			if d != nil {
				d.waitSaid(t, "this computer restarts at", 1, 5*time.Second)
				d.waitSaid(t, "final warning: this computer restarts in 10s", 1, 5*time.Second)
			}
			// The machine is back.
			svc.run()
			testenv.CheckFor(t, 20*time.Second, 100*time.Millisecond, func() error {
				sts = readStatuses(t, env.JS, client, id)
				if last := sts[len(sts)-1]; last.State != events.StateRestarted || last.Attempt != 1 {
					return &statusErr{out: string(last.State)}
				}
				return nil
			})
			waitAcked(t, env.JS, client, 10*time.Second)
			// And again: nothing runs, nothing restarts.
			svc.kill()
			svc.run()
			waitPulling(t, env.JS, client)
			if n, r := markerLines(t, marker), markerLines(t, recorder); n != 1 || r != 1 {
				t.Fatalf("the job ran %d times and the machine restarted %d times, want once each", n, r)
			}
			if sts := readStatuses(t, env.JS, client, id); sts[len(sts)-1].State != events.StateRestarted || len(finals(sts)) != 1 {
				t.Fatalf("statuses after the return %+v", sts)
			}
			_ = os.Remove(recorder)
		})
	}
}

// TestRestartWaitsForWindow: a window-bound job that asks for a restart
// runs in its window (22:00-22:10 UTC on the test clock), but its restart,
// due after the countdown (15m, at 22:16), waits for the next window
// (22:30-22:40): the dry-run recorder sees one restart, inside it.
func TestRestartWaitsForWindow(t *testing.T) {
	env := testenv.StartBroker(t)
	const client = "rebootwin"
	enroll(t, env.JS, client)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var ws []events.Window
	for _, spec := range []string{"daily 22:00-22:10 UTC", "daily 22:30-22:40 UTC"} {
		w, err := events.ParseWindow(spec)
		if err != nil {
			t.Fatal(err)
		}
		ws = append(ws, w)
	}
	if _, err := maintenance.New(env.JS).Set(ctx, toClient(client), ws, "ops"); err != nil {
		t.Fatal(err)
	}
	clk := testClock(time.Date(2026, 3, 2, 22, 1, 0, 0, time.UTC), 150) // 1 s real = 2.5 min
	dir := t.TempDir()
	recorder := filepath.Join(dir, "restarts")
	svc := newAgentProc(t, env, client, dir, clockEnv(clk), "--grace", "15m", "--restart-dry-run", recorder)
	svc.run()
	waitPulling(t, env.JS, client)
	marker := filepath.Join(dir, "ran")
	j := job([]string{"sh", "-c", "echo ran >> " + marker + "; exit 194"}, toClient(client))
	now := clk.Now().UTC()
	j.OfferAfter, j.MandatoryAfter, j.ExpireAfter = now, &now, now.Add(24*time.Hour)
	j.InWindow = true
	j.Command.MayReboot, j.Command.RestartExitCodes = true, []int64{194}
	id := publish(t, clockPublisher(t, env, clk), j)
	svc.p.waitExit(t, 60*time.Second) // the dry run stops the agent
	b, err := os.ReadFile(recorder)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) != 1 || !strings.Contains(lines[0], "restart for job "+id) {
		t.Fatalf("restarts recorded: %q, want one for %s", lines, id)
	}
	at, err := time.Parse(time.RFC3339Nano, strings.Fields(lines[0])[0])
	if err != nil {
		t.Fatal(err)
	}
	next := time.Date(2026, 3, 2, 22, 30, 0, 0, time.UTC)
	if fake := fakeTime(clk, at); fake.Before(next) || !fake.Before(next.Add(10*time.Minute)) {
		t.Fatalf("the machine restarted at %s (test clock), want inside the next window (%s to %s)", fake, next, next.Add(10*time.Minute))
	}
	fin := finals(readStatuses(t, env.JS, client, id))
	if len(fin) != 1 || !fin[0].RestartRequired || markerLines(t, marker) != 1 {
		t.Fatalf("finals %+v, runs %d: want one success asking for a restart", fin, markerLines(t, marker))
	}
	if ranAt := fakeTime(clk, *fin[0].StartedAt); ranAt.After(time.Date(2026, 3, 2, 22, 9, 0, 0, time.UTC)) {
		t.Fatalf("the job started at %s (test clock), want in the first window", ranAt)
	}
}

// TestNoSessionNoDeferral: with no desktop session open on the client,
// nobody may defer a job or be warned: the service runs a job that allows
// deferrals at its mandatory time, without the user's countdown (an hour
// here). The service first waits to hear from a session for a while after
// it starts (three beats of the desktop session: 30 s, here 0.75 s, the
// shortest), so the job is due 2 minutes (2 s) after the agent starts.
func TestNoSessionNoDeferral(t *testing.T) {
	env := testenv.StartBroker(t)
	const client = "nosession"
	enroll(t, env.JS, client)
	dir := t.TempDir()
	clk := testClock(time.Now(), 60) // 1 s real = 1 min
	grace := time.Hour
	svc := newAgentProc(t, env, client, dir, clockEnv(clk), "--grace", grace.String())
	startedAt := clk.Now()
	svc.run()
	waitPulling(t, env.JS, client)
	marker := filepath.Join(dir, "ran")
	j := job(appendTo(marker), toClient(client))
	due := startedAt.Add(2 * time.Minute).UTC()
	j.OfferAfter, j.MandatoryAfter, j.ExpireAfter = clk.Now().UTC(), &due, due.Add(24*time.Hour)
	j.Deferrals = &events.Deferrals{Max: 3, Each: events.Duration(4 * time.Hour)}
	id := publish(t, clockPublisher(t, env, clk), j)
	sts := waitFinal(t, env.JS, client, id, 30*time.Second)
	var started *events.JobStatus
	for i, s := range sts {
		if s.State == events.StateStarted {
			started = &sts[i]
		}
	}
	if started == nil || markerLines(t, marker) != 1 {
		t.Fatalf("statuses %+v: want one run", sts)
	}
	if ranAt := fakeTime(clk, *started.StartedAt); ranAt.Before(due) || ranAt.After(due.Add(grace/2)) {
		t.Fatalf("the job started at %s (test clock), want at its mandatory time %s, with no countdown (%s) since no session is open", ranAt, due, grace)
	}
	waitAcked(t, env.JS, client, 10*time.Second)
}

// TestSessionHeardInItsAccount: on an authenticated broker, a service
// with its agent credentials hears its desktop's session (desktop
// credentials, the same client's account): a job the user may defer,
// mandatory 2 minutes after the service started (test clock, 60 times
// as fast), waits for the countdown (10m) instead of running at its
// time, as it would with no session (TestNoSessionNoDeferral).
func TestSessionHeardInItsAccount(t *testing.T) {
	testenv.SameInBothModes(t)
	env := testenv.StartBroker(t, testenv.WithAuth())
	const client = "session1"
	enroll(t, env.JS, client)
	clk := testClock(time.Now(), 60) // 1 s real = 1 min
	grace := 10 * time.Minute
	d := newTestDesktop(t, env.URL, client, func(c *agent.DesktopConfig) { c.Clock, c.Grace = clk, grace })
	d.session(t)
	startedAt := clk.Now()
	startAgent(t, env.URL, client, t.TempDir(), func(c *agent.Config) { c.Clock, c.Grace = clk, grace }).waitReady(t)
	marker := filepath.Join(t.TempDir(), "ran")
	j := job(appendTo(marker), toClient(client))
	due := startedAt.Add(2 * time.Minute).UTC()
	j.OfferAfter, j.MandatoryAfter, j.ExpireAfter = clk.Now().UTC(), &due, due.Add(24*time.Hour)
	j.Deferrals = &events.Deferrals{Max: 3, Each: events.Duration(4 * time.Hour)}
	id := publish(t, clockPublisher(t, env, clk), j)
	sts := waitFinal(t, env.JS, client, id, time.Minute)
	var started *events.JobStatus
	for i, s := range sts {
		if s.State == events.StateStarted {
			started = &sts[i]
		}
	}
	if started == nil || markerLines(t, marker) != 1 {
		t.Fatalf("statuses %+v: want one run", sts)
	}
	if ranAt := fakeTime(clk, *started.StartedAt); ranAt.Before(due.Add(grace - 2*time.Minute)) {
		t.Fatalf("the job started at %s (test clock), before the end of its countdown (%s): the service did not hear the session", ranAt, due.Add(grace))
	}
}
