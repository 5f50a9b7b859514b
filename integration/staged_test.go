package integration_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/pcm-project/pcm/agent"
	"github.com/pcm-project/pcm/controller"
	"github.com/pcm-project/pcm/events"
	"github.com/pcm-project/pcm/rollout"
	"github.com/pcm-project/pcm/testenv"
)

// runningController is an in-process rollout controller.
type runningController struct {
	c      *controller.Controller
	cancel context.CancelFunc
	done   chan error
	once   sync.Once
}

// startController runs a rollout controller signing with k on js; it is
// stopped at cleanup.
func startController(t testing.TB, js jetstream.JetStream, name string, k signingKey) *runningController {
	t.Helper()
	c, err := controller.New(js, controller.Config{Name: name, Signer: k.kp, Lease: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	rc := &runningController{c: c, cancel: cancel, done: make(chan error, 1)}
	go func() { rc.done <- c.Run(ctx) }()
	t.Cleanup(func() { rc.stop(t) })
	return rc
}

// stop stops the controller (as a kill would: it leads no more) and waits
// for Run to return.
func (rc *runningController) stop(t testing.TB) {
	rc.once.Do(func() {
		rc.cancel()
		if err := <-rc.done; err != nil {
			t.Errorf("the controller's Run: %v", err)
		}
	})
}

// waitLeading waits until the controller leads.
func (rc *runningController) waitLeading(t testing.TB) {
	t.Helper()
	testenv.CheckFor(t, 15*time.Second, 10*time.Millisecond, func() error {
		if s := rc.c.Stats(); !s.Leading {
			return fmt.Errorf("the controller does not lead: %+v", s)
		}
		return nil
	})
}

// controllerKeys makes an agent obey the halts signed by keys.
func controllerKeys(keys ...signingKey) agentOpts {
	return func(c *agent.Config) {
		for _, k := range keys {
			c.ControllerKeys = append(c.ControllerKeys, k.pub)
		}
	}
}

// seedFile writes k's seed to a file of dir for --signing-key.
func seedFile(t testing.TB, dir string, k signingKey) string {
	t.Helper()
	seed, err := k.kp.Seed()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "seed-"+k.pub[:8]+".nk")
	if err := os.WriteFile(path, seed, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestStagedRolloutHaltsItself is the end to end of a staged rollout that
// stops itself: 50 agents, rings 10/50/100 with a short soak, a command
// that fails on 20% of the clients (some of ring 1's among them). The
// rollout controller is stopped mid-ring 1 and another one takes over: it
// halts the job once ring 1 has finished, signed by its key. pcm publish
// --wait exits 1 on the halt; the clients of rings 2 and 3 never run the
// job while it is halted, even after their rings' times, and pcm status
// says halted; pcm resume lets them run it, and nothing runs twice.
func TestStagedRolloutHaltsItself(t *testing.T) {
	const clients = 50
	const soak = 8 * time.Second
	env := testenv.StartBroker(t)
	dir := t.TempDir()
	pubKey, ctlKey := newSigningKey(t), newSigningKey(t)

	// The job id fixes every client's ring: take one whose ring 1 has a
	// few clients, as 10% of 50 should.
	plan := events.RolloutPlan{Rings: []events.Ring{{Percent: 10}, {Percent: 50}, {Percent: 100}}}
	var job string
	rings := map[int][]string{}
	ringOf := map[string]int{}
	for i := 0; ; i++ {
		job = fmt.Sprintf("staged-%d", i)
		clear(rings)
		for c := range clients {
			client := fmt.Sprintf("c%02d", c)
			ring := plan.RingOf(job, client, nil)
			rings[ring] = append(rings[ring], client)
			ringOf[client] = ring
		}
		if n := len(rings[1]); n >= 4 && n <= 7 {
			break
		}
	}
	ring1 := rings[1]
	later := append(append([]string{}, rings[2]...), rings[3]...)
	// 20% fail: every other client of ring 1 (over the 20% threshold
	// there), the rest in the later rings. One client of ring 1 is slow:
	// it runs until released.
	var failing []string
	for i, c := range ring1 {
		if i%2 == 0 {
			failing = append(failing, c)
		}
	}
	for _, c := range later {
		if len(failing) == clients/5 {
			break
		}
		failing = append(failing, c)
	}
	for _, c := range failing {
		touch(t, filepath.Join(dir, "fail-"+c))
	}
	slow := ring1[1]
	touch(t, filepath.Join(dir, "slow-"+slow))
	script := fmt.Sprintf(`d=%s; echo run >> "$d/ran-$PCM_CLIENT_ID"
if [ -e "$d/slow-$PCM_CLIENT_ID" ]; then while [ ! -e "$d/release" ]; do sleep 0.05; done; fi
if [ -e "$d/fail-$PCM_CLIENT_ID" ]; then exit 3; fi`, dir)

	agents := map[string]*runningAgent{}
	for c := range clients {
		client := fmt.Sprintf("c%02d", c)
		enroll(t, env.JS, client)
		agents[client] = startAgent(t, env.URL, client, filepath.Join(dir, "state-"+client), trusting(pubKey), controllerKeys(ctlKey))
	}
	for _, a := range agents {
		a.waitReady(t)
	}
	first := startController(t, env.JS, "ctl", ctlKey)
	first.waitLeading(t)

	seed := seedFile(t, dir, pubKey)
	pub := startPCM(t, dir, nil, "publish", "--url", env.URL, "--all", "--job-id", job, "--rings", "10,50,100", "--soak", soak.String(),
		"--halt-at", "20%", "--halt-min", strconv.Itoa(len(ring1)), "--signing-key", seed, "--wait", "--wait-timeout", "2m",
		"--", "sh", "-c", script)
	pub.stdout.waitLine(t, regexp.MustCompile("^"+job+"$"), 15*time.Second)
	published := time.Now()

	// Ring 1 runs at once, the slow client still running: the controller
	// is stopped (a crash halts nothing, starts nothing) and another one
	// takes over, reading where the rollout stands from the streams.
	for _, c := range ring1 {
		if c != slow {
			waitFinal(t, env.JS, c, job, 15*time.Second)
		}
	}
	if s := first.c.Stats(); s.Halts != 0 {
		t.Fatalf("the first controller halted before ring 1 finished: %+v", s)
	}
	first.stop(t)
	second := startController(t, env.JS, "ctl", ctlKey)
	second.waitLeading(t)
	touch(t, filepath.Join(dir, "release"))
	waitFinal(t, env.JS, slow, job, 15*time.Second)
	testenv.CheckFor(t, 15*time.Second, 10*time.Millisecond, func() error {
		if s := second.c.Stats(); s.Halts != 1 {
			return fmt.Errorf("the controller that took over has halted %d rollouts", s.Halts)
		}
		return nil
	})
	if took := time.Since(published); took >= soak {
		t.Fatalf("the halt came %s after the publish, after ring 2 opened (soak %s): the test machine is too slow for this soak", took, soak)
	}

	// pcm publish --wait sees the halt: exit 1, saying so.
	pub.waitExit(t, 15*time.Second)
	if code := pub.cmd.ProcessState.ExitCode(); code != 1 {
		t.Fatalf("pcm publish --wait exited %d on the halt, want 1", code)
	}
	if b, _ := os.ReadFile(pub.logf); !strings.Contains(string(b), "halted by controller ctl") || !strings.Contains(string(b), "pcm resume "+job) {
		t.Fatalf("pcm publish --wait's stderr does not say the job was halted:\n%s", b)
	}

	// Past the opening of ring 3, each client of rings 2 and 3 has decided
	// again and holds the job, halted; none ran it.
	testenv.CheckFor(t, 2*soak+30*time.Second, 50*time.Millisecond, func() error {
		if time.Since(published) < 2*soak {
			return fmt.Errorf("ring 3 has not opened yet")
		}
		for _, c := range later {
			if s := agents[c].svc.Stats(); s.HaltedHolds == 0 {
				return fmt.Errorf("client %s (ring %d) has not held the job as halted: %+v", c, ringOf[c], s)
			}
		}
		return nil
	})
	for _, c := range later {
		if n := markerLines(t, filepath.Join(dir, "ran-"+c)); n != 0 {
			t.Fatalf("client %s of ring %d ran the halted job %d times", c, ringOf[c], n)
		}
	}
	out, errOut, code := runPCM(t, nil, "status", "--url", env.URL, job, "-o", "json")
	if code != 0 {
		t.Fatalf("pcm status exited %d: %s", code, errOut)
	}
	r := parseRollout(t, out)
	if r.Halted == nil || r.HaltedBy != "controller ctl" || r.Halted.Finished != len(ring1) || len(r.Rings) != 3 {
		t.Fatalf("pcm status of the halted job: halted %+v by %q, rings %+v", r.Halted, r.HaltedBy, r.Rings)
	}
	for _, rs := range r.Rings {
		if rs.State != rollout.RingHalted || rs.Clients != len(rings[rs.Ring]) {
			t.Fatalf("ring %+v, want halted with %d clients", rs, len(rings[rs.Ring]))
		}
	}
	for _, c := range later {
		if cr := clientOf(t, r, c); cr.State != rollout.ClientHalted || cr.Ring != ringOf[c] || !strings.HasPrefix(cr.Detail, "halted") {
			t.Fatalf("client %s in pcm status: %+v, want halted in ring %d", c, cr, ringOf[c])
		}
	}
	out, _, code = runPCM(t, []string{"NO_COLOR=1"}, "status", "--url", env.URL, job, "--utc")
	if code != 0 || !strings.Contains(out, "HALTED by controller ctl") || !regexp.MustCompile(`(?m)^ring 2 \(50%\) halted: `).MatchString(out) ||
		!regexp.MustCompile(`(?m)^`+later[0]+`\s+halted\s.*\s`+strconv.Itoa(ringOf[later[0]])+`\s+halted`).MatchString(out) {
		t.Fatalf("pcm status table of the halted job (exit %d):\n%s", code, out)
	}

	// Fixed: pcm resume lets rings 2 and 3 run it; nothing runs twice.
	for _, c := range failing {
		if err := os.Remove(filepath.Join(dir, "fail-"+c)); err != nil {
			t.Fatal(err)
		}
	}
	out, errOut, code = runPCM(t, nil, "resume", "--url", env.URL, job, "--reason", "fixed", "--signing-key", seed)
	if code != 0 || strings.TrimSpace(out) != "resumed "+job {
		t.Fatalf("pcm resume: exit %d, stdout %q, stderr %s", code, out, errOut)
	}
	for _, c := range later {
		sts := waitFinal(t, env.JS, c, job, 30*time.Second)
		if f := finals(sts); len(f) != 1 || f[0].State != events.StateSucceeded {
			t.Fatalf("client %s after the resume: %+v", c, sts)
		}
	}
	for c := range agents {
		if n := markerLines(t, filepath.Join(dir, "ran-"+c)); n != 1 {
			t.Fatalf("client %s ran the job %d times, want once", c, n)
		}
	}
	r = waitRollout(t, env.JS, job, "every client done", 10*time.Second, func(r rollout.Rollout) bool { return r.Done == clients })
	if r.Halted != nil || r.Failed != countIn(failing, ring1) {
		t.Fatalf("after the resume: halted %+v, %d failed (want those of ring 1: %d)", r.Halted, r.Failed, countIn(failing, ring1))
	}
	if s := second.c.Stats(); s.Halts != 1 {
		t.Fatalf("the controller halted again after the resume: %+v", s)
	}
}

// countIn counts the elements of xs that are in set.
func countIn(xs, set []string) int {
	n := 0
	for _, x := range xs {
		for _, s := range set {
			if x == s {
				n++
				break
			}
		}
	}
	return n
}

// TestBrokerRunsController: pcm broker runs the rollout controller, which
// signs its halts with --controller-key: a staged rollout whose failures
// pass its threshold is halted with no other process running; pcm halt and
// pcm resume store once per state, and pcm status --watch of a rollout
// halted before its clients are done exits 1 as pcm publish --wait does.
func TestBrokerRunsController(t *testing.T) {
	dir := t.TempDir()
	key := newSigningKey(t)
	b := startPCM(t, dir, nil, "broker", "--data", filepath.Join(dir, "data"), "--listen", "127.0.0.1:-1", "--controller-key", seedFile(t, dir, key))
	if got := b.stdout.waitLine(t, regexp.MustCompile(`^rollout controller: halts signed by (\S+)$`), 10*time.Second)[1]; got != key.pub {
		t.Fatalf("the broker's controller signs with %s, want %s", got, key.pub)
	}
	url := b.stdout.waitLine(t, brokerReadyLine, 10*time.Second)[1]
	js := dial(t, url)
	haltAt := 0.0
	j := job([]string{"true"}, toClient("x1"))
	j.Rollout = &events.RolloutPlan{Rings: []events.Ring{{Percent: 100}}, HaltAt: &haltAt}
	id := publish(t, newPublisher(t, js), j)
	st := events.JobStatus{JobID: id, ClientID: "x1", State: events.StateFailed, Attempt: 1, MaxAttempts: 1, Runner: events.RunnerService}
	ev, err := events.NewJobStatus(st)
	if err != nil {
		t.Fatal(err)
	}
	msg, err := events.NewMsg(events.StatusSubject("x1", id), ev, ev.ID())
	if err != nil {
		t.Fatal(err)
	}
	publishRaw(t, js, msg)
	testenv.CheckFor(t, 15*time.Second, 20*time.Millisecond, func() error {
		s, err := js.Stream(t.Context(), events.StreamJobs)
		if err != nil {
			return err
		}
		m, err := s.GetLastMsgForSubject(t.Context(), events.HaltSubject(id))
		if err != nil {
			return fmt.Errorf("no halt stored: %w", err)
		}
		h, err := events.ReadHalt(m.Header, m.Data, id, []string{newSigningKey(t).pub}, []string{key.pub})
		if h == nil || err != nil || h.Failed != 1 || h.Finished != 1 {
			return fmt.Errorf("the stored halt, read trusting the controller's key: %+v, %v", h, err)
		}
		return nil
	})

	// An operator's pcm halt and pcm resume: each stores once per state.
	for _, step := range []struct{ cmd, want string }{
		{"halt", id + " is halted already"},
		{"resume", "resumed " + id},
		{"resume", id + " is not halted"},
		{"halt", "halted " + id},
	} {
		out, errOut, code := runPCM(t, nil, step.cmd, "--url", url, id, "--reason", "by hand", "--publisher", "ops")
		if code != 0 || strings.TrimSpace(out) != step.want || !strings.Contains(errOut, "no --signing-key") {
			t.Fatalf("pcm %s: exit %d, stdout %q, stderr %q; want %q and a warning that it is unsigned", step.cmd, code, out, errOut, step.want)
		}
	}
	r, err := rollout.Read(t.Context(), js, id)
	if err != nil {
		t.Fatal(err)
	}
	if r.Halted == nil || r.HaltedBy != "ops" || r.Halted.Reason != "by hand" {
		t.Fatalf("after pcm halt: halted %+v by %q", r.Halted, r.HaltedBy)
	}

	// pcm status --watch of a rollout halted before its clients are done
	// ends as pcm publish --wait does: exit 1, saying so.
	j2 := job([]string{"true"}, toClient("x2"))
	j2.Rollout = &events.RolloutPlan{Rings: []events.Ring{{Percent: 100}}}
	id2 := publish(t, newPublisher(t, js), j2)
	if out, errOut, code := runPCM(t, nil, "halt", "--url", url, id2, "--reason", "by hand", "--publisher", "ops"); code != 0 {
		t.Fatalf("pcm halt: exit %d, %s%s", code, out, errOut)
	}
	out, errOut, code := runPCM(t, nil, "status", "--url", url, id2, "--watch")
	if want := "pcm: job " + id2 + " halted by ops: by hand, with 0 of 1 client done (0 failed); pcm resume " + id2 + " lets its rings go on"; code != 1 || lastLine(errOut) != want {
		t.Fatalf("pcm status --watch of a halted rollout: exit %d, stdout %q, last line %q; want exit 1 and %q", code, out, lastLine(errOut), want)
	}
}

// TestControllerKilled: a pcm controller killed (SIGKILL: its lease is not
// released) mid-rollout is replaced by another within the lease; the new
// one counts the statuses stored before it started and halts the rollout
// once.
func TestControllerKilled(t *testing.T) {
	dir := t.TempDir()
	key := newSigningKey(t)
	b := startPCM(t, dir, nil, "broker", "--data", filepath.Join(dir, "data"), "--listen", "127.0.0.1:-1", "--no-controller")
	url := b.stdout.waitLine(t, brokerReadyLine, 10*time.Second)[1]
	js := dial(t, url)
	seed := seedFile(t, dir, key)
	controllerLine := regexp.MustCompile(`^rollout controller: halts signed by (\S+)$`)
	first := startPCM(t, dir, nil, "controller", "--url", url, "--controller-key", seed, "--controller-lease", "2s")
	first.stdout.waitLine(t, controllerLine, 10*time.Second)
	haltAt := 0.0
	j := job([]string{"true"}, toClient("k1"), toClient("k2"))
	j.Rollout = &events.RolloutPlan{Rings: []events.Ring{{Percent: 100}}, HaltAt: &haltAt, HaltMin: 2}
	id := publish(t, newPublisher(t, js), j)
	fail := func(client string) {
		st := events.JobStatus{JobID: id, ClientID: client, State: events.StateFailed, Attempt: 1, MaxAttempts: 1, Runner: events.RunnerService}
		ev, err := events.NewJobStatus(st)
		if err != nil {
			t.Fatal(err)
		}
		msg, err := events.NewMsg(events.StatusSubject(client, id), ev, ev.ID())
		if err != nil {
			t.Fatal(err)
		}
		publishRaw(t, js, msg)
	}
	fail("k1") // 1 of 1 failed, below halt_min 2
	if err := first.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	first.waitExit(t, 10*time.Second)
	second := startPCM(t, dir, nil, "controller", "--url", url, "--controller-key", seed, "--controller-lease", "2s")
	second.stdout.waitLine(t, controllerLine, 10*time.Second)
	fail("k2")
	testenv.CheckFor(t, 20*time.Second, 20*time.Millisecond, func() error {
		s, err := js.Stream(t.Context(), events.StreamJobs)
		if err != nil {
			return err
		}
		info, err := s.Info(t.Context(), jetstream.WithSubjectFilter(events.HaltSubject(id)))
		if err != nil {
			return err
		}
		if n := info.State.Subjects[events.HaltSubject(id)]; n != 1 {
			return fmt.Errorf("%d halts stored, want 1", n)
		}
		m, err := s.GetLastMsgForSubject(t.Context(), events.HaltSubject(id))
		if err != nil {
			return err
		}
		h, err := events.ReadHalt(m.Header, m.Data, id, []string{newSigningKey(t).pub}, []string{key.pub})
		if h == nil || err != nil || h.Failed != 2 || h.Finished != 2 {
			return fmt.Errorf("the stored halt: %+v, %v; want 2 of 2 failed (the status stored before the takeover counted)", h, err)
		}
		return nil
	})
}
