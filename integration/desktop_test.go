package integration_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap/zaptest"

	"github.com/pcm-project/pcm/agent"
	"github.com/pcm-project/pcm/broker/auth"
	"github.com/pcm-project/pcm/events"
	"github.com/pcm-project/pcm/testenv"
)

// testDesktop is an in-process desktop face with its user-facing lines
// captured (its logs go to the test's log).
type testDesktop struct {
	*agent.Desktop
	mu   sync.Mutex
	said []string
}

func newTestDesktop(t testing.TB, url, client string, tweak func(*agent.DesktopConfig)) *testDesktop {
	t.Helper()
	nc, err := nats.Connect(url, append(agent.ConnectOptions("test desktop "+client), testenv.ClientOptions(t, url, auth.User{Role: auth.RoleDesktop, Name: client})...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	td := &testDesktop{}
	cfg := agent.DesktopConfig{
		Config: agent.Config{ClientID: client, StateDir: t.TempDir(), Lease: 2 * time.Second, Logger: zaptest.NewLogger(t)},
		Notify: func(line string) { td.mu.Lock(); td.said = append(td.said, line); td.mu.Unlock() },
	}
	if tweak != nil {
		tweak(&cfg)
	}
	d, err := agent.NewDesktop(nc, cfg)
	if err != nil {
		t.Fatal(err)
	}
	td.Desktop = d
	return td
}

func (d *testDesktop) saidSomething(sub string) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, l := range d.said {
		if strings.Contains(l, sub) {
			return true
		}
	}
	return false
}

func locksKV(t testing.TB, js jetstream.JetStream) jetstream.KeyValue {
	t.Helper()
	kv, err := js.KeyValue(context.Background(), events.BucketLocks)
	if err != nil {
		t.Fatal(err)
	}
	return kv
}

// TestServiceAndDesktopNeverOverlap races the service and a desktop over 300
// jobs on one client: no two runs overlap, every job runs exactly once, and
// the lock is free at the end.
func TestServiceAndDesktopNeverOverlap(t *testing.T) {
	const jobs = 300
	env := testenv.StartBroker(t)
	p := newPublisher(t, env.JS)
	enroll(t, env.JS, "race")
	dir := t.TempDir()
	intervals := filepath.Join(dir, "intervals")
	a := startAgent(t, env.URL, "race", filepath.Join(dir, "svc"))
	a.waitReady(t)
	d := newTestDesktop(t, env.URL, "race", nil)

	cmd := []string{"sh", "-c", `echo "$PCM_JOB_ID start $(date +%s%N)" >> ` + intervals + `; sleep 0.005; echo "$PCM_JOB_ID end $(date +%s%N)" >> ` + intervals}
	ids := make([]string, jobs)
	for i := range ids {
		ids[i] = publish(t, p, job(cmd, toClient("race")))
	}
	rand.Shuffle(len(ids), func(i, j int) { ids[i], ids[j] = ids[j], ids[i] })
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	desktopRan := 0
	for _, id := range ids {
		_, err := d.Run(ctx, id)
		switch {
		case err == nil:
			desktopRan++
		case errors.Is(err, agent.ErrAlreadyDone):
		default:
			t.Fatalf("desktop run of %s: %v", id, err)
		}
	}
	waitAcked(t, env.JS, "race", 60*time.Second)

	// Every job ran exactly once, start before end.
	b, err := os.ReadFile(intervals)
	if err != nil {
		t.Fatal(err)
	}
	type span struct{ start, end int64 }
	spans := map[string]*span{}
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		f := strings.Fields(line)
		ns, _ := strconv.ParseInt(f[2], 10, 64)
		s := spans[f[0]]
		if s == nil {
			s = &span{}
			spans[f[0]] = s
		}
		if f[1] == "start" {
			if s.start != 0 {
				t.Fatalf("job %s started twice", f[0])
			}
			s.start = ns
		} else {
			s.end = ns
		}
	}
	if len(spans) != jobs {
		t.Fatalf("%d jobs ran, want %d", len(spans), jobs)
	}
	list := make([]span, 0, jobs)
	for id, s := range spans {
		if s.start == 0 || s.end < s.start {
			t.Fatalf("job %s: bad interval %+v", id, *s)
		}
		list = append(list, *s)
	}
	sort.Slice(list, func(i, j int) bool { return list[i].start < list[j].start })
	for i := 1; i < len(list); i++ {
		if list[i].start < list[i-1].end {
			t.Fatalf("two runs overlap: %+v and %+v", list[i-1], list[i])
		}
	}
	// Exactly one final status per job, whoever ran it.
	byRunner := map[events.Runner]int{}
	for _, id := range ids {
		fin := finals(readStatuses(t, env.JS, "race", id))
		if len(fin) != 1 || fin[0].State != events.StateSucceeded {
			t.Fatalf("job %s: finals %+v", id, fin)
		}
		byRunner[fin[0].Runner]++
	}
	t.Logf("service ran %d jobs, desktop %d", byRunner[events.RunnerService], byRunner[events.RunnerDesktop])
	if byRunner[events.RunnerDesktop] != desktopRan {
		t.Fatalf("desktop reported %d runs, statuses say %d", desktopRan, byRunner[events.RunnerDesktop])
	}
	if _, err := locksKV(t, env.JS).Get(ctx, "race"); !errors.Is(err, jetstream.ErrKeyNotFound) {
		t.Fatalf("lock key still there at the end: %v", err)
	}
}

// TestBusyNotice: with the service running a long job, pcm desktop run
// prints the busy notice, naming the job being run and the job that waits
// (a job, not a package: it has none), waits, and runs its job within 2 s
// after the service releases; with the notice switched off it waits
// silently.
func TestBusyNotice(t *testing.T) {
	env := testenv.StartBroker(t)
	p := newPublisher(t, env.JS)
	for _, silent := range []bool{false, true} {
		t.Run(fmt.Sprintf("silent=%v", silent), func(t *testing.T) {
			client := "busy" + strconv.FormatBool(silent)
			enroll(t, env.JS, client)
			dir := t.TempDir()
			a := startAgent(t, env.URL, client, filepath.Join(dir, "svc"))
			a.waitReady(t)
			gate := filepath.Join(dir, "gate")
			long := publish(t, p, job([]string{"sh", "-c", "while [ ! -f " + gate + " ]; do sleep 0.02; done"}, toClient(client)))
			a.waitStats(t, 10*time.Second, "the service running the long job", func(s agent.Stats) bool { return s.Started > 0 })

			mine := job([]string{"echo", "desktop job"}, toClient(client))
			mine.MandatoryAfter = nil // optional: the user's pick
			mineID := publish(t, p, mine)
			args := []string{"desktop", "run", mineID, "--url", env.URL, "--client-id", client, "--state-dir", filepath.Join(dir, "desk")}
			var envv []string
			if silent {
				// Its logs (on stderr with --log-level) say that it waits.
				envv = []string{"PCM_BUSY_NOTICE=false"}
				args = append(args, "--log-level", "info")
			}
			desk := startPCM(t, dir, envv, args...)
			if !silent {
				desk.stdout.waitLine(t, regexp.MustCompile(`^job `+long+` is running in the background; job `+mineID+` starts when it finishes\.$`), 10*time.Second)
			} else {
				testenv.WaitFor(t, 10*time.Second, "the desktop waiting for the lock", func() bool {
					b, _ := os.ReadFile(desk.logf)
					return strings.Contains(string(b), "job waits: the lock is held")
				})
			}
			touch(t, gate)
			line := desk.stdout.waitLine(t, regexp.MustCompile(`^job `+mineID+` `), 15*time.Second)
			if silent && strings.Contains(line[0], "background") {
				t.Fatal("notice printed although switched off")
			}
			desk.waitExit(t, 10*time.Second)
			svcFin := finals(waitFinal(t, env.JS, client, long, 10*time.Second))[0]
			deskFin := finals(waitFinal(t, env.JS, client, mineID, 10*time.Second))[0]
			if deskFin.Runner != events.RunnerDesktop || deskFin.State != events.StateSucceeded || deskFin.User == "" {
				t.Fatalf("desktop status %+v", deskFin)
			}
			if lag := deskFin.StartedAt.Sub(*svcFin.FinishedAt); lag > 2*time.Second || lag < 0 {
				t.Fatalf("desktop started %s after the service finished", lag)
			}
		})
	}
}

// lockTrace returns the last message ever written to client's lock key, or
// nil. Every write leaves one: a put stays until it is deleted or expires,
// a release leaves a delete marker, an expiry a marker for a minute.
func lockTrace(t testing.TB, js jetstream.JetStream, client string) *jetstream.RawStreamMsg {
	t.Helper()
	s, err := js.Stream(context.Background(), "KV_"+events.BucketLocks)
	if err != nil {
		t.Fatal(err)
	}
	m, err := s.GetLastMsgForSubject(context.Background(), "$KV."+events.BucketLocks+"."+client)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// TestServiceHoldsLockOnlyWhileRunning: while the service is idle, holds
// only optional and future jobs, and loses and regains the broker, its lock
// key is never written; a due job takes and releases it.
func TestServiceHoldsLockOnlyWhileRunning(t *testing.T) {
	env := testenv.StartBroker(t)
	p := newPublisher(t, env.JS)
	enroll(t, env.JS, "idle")
	a := startAgent(t, env.URL, "idle", t.TempDir())
	a.waitReady(t)

	optional := job([]string{"true"}, toClient("idle"))
	optional.MandatoryAfter = nil
	publish(t, p, optional)
	future := job([]string{"true"}, toClient("idle"))
	later := time.Now().Add(time.Hour).UTC()
	future.MandatoryAfter = &later
	publish(t, p, future)
	a.waitStats(t, 5*time.Second, "both jobs held", func(s agent.Stats) bool { return s.Held >= 2 })
	if m := lockTrace(t, env.JS, "idle"); m != nil {
		t.Fatalf("the lock was written while the service only held optional and future jobs: %s", m.Header)
	}
	retries := a.svc.Stats().FetchRetries
	env.Stop()
	a.waitStats(t, 10*time.Second, "the service retrying while the broker is away", func(s agent.Stats) bool { return s.FetchRetries > retries })
	env.Restart(t)
	testenv.WaitFor(t, 10*time.Second, "the agent reconnected", func() bool { return a.nc.IsConnected() })
	waitPulling(t, env.JS, "idle") // back to waiting for offers
	if s := a.svc.Stats(); s.Started != 0 {
		t.Fatalf("the service started %d attempts around the outage", s.Started)
	}
	if m := lockTrace(t, env.JS, "idle"); m != nil {
		t.Fatalf("the lock was written around a broker outage: %s", m.Header)
	}
	id := publish(t, p, job([]string{"true"}, toClient("idle")))
	waitFinal(t, env.JS, "idle", id, 10*time.Second)
	testenv.WaitFor(t, 5*time.Second, "the lock released after the due job", func() bool {
		m := lockTrace(t, env.JS, "idle")
		return m != nil && m.Header.Get("KV-Operation") == "DEL"
	})
}

// TestDesktopNeverRunsBackgroundJobs: the desktop neither lists nor runs a
// background job; a job the desktop runs is acked by the service and never
// run by it.
func TestDesktopNeverRunsBackgroundJobs(t *testing.T) {
	env := testenv.StartBroker(t)
	p := newPublisher(t, env.JS)
	enroll(t, env.JS, "desk")
	dir := t.TempDir()
	bgMarker, optMarker := filepath.Join(dir, "bg"), filepath.Join(dir, "opt")
	bg := job(appendTo(bgMarker), toClient("desk"))
	bg.Command.Background = true
	later := time.Now().Add(time.Hour).UTC()
	bg.MandatoryAfter = &later
	bgID := publish(t, p, bg)
	opt := job(appendTo(optMarker), toClient("desk"))
	opt.MandatoryAfter = nil
	optID := publish(t, p, opt)

	a := startAgent(t, env.URL, "desk", filepath.Join(dir, "svc"))
	a.waitReady(t)
	// The service holds both offers (the background one for its time, the
	// optional one for the user) before the desktop runs one: otherwise it
	// would find the desktop's status first and settle the offer as done.
	a.waitStats(t, 10*time.Second, "the service holding both offers", func(s agent.Stats) bool { return s.Held >= 2 })
	d := newTestDesktop(t, env.URL, "desk", nil)
	ctx := context.Background()
	list, err := d.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 1 || list[0].JobID != optID {
		t.Fatalf("desktop lists %+v, want only %s", list, optID)
	}
	if n := d.Stats().ServiceOnly; n != 1 {
		t.Fatalf("the desktop skipped %d service-only jobs, want the background one", n)
	}
	if _, err := d.Run(ctx, bgID); !errors.Is(err, agent.ErrServiceOnly) {
		t.Fatalf("running a background job from the desktop: %v", err)
	}
	st, err := d.Run(ctx, optID)
	if err != nil || st.State != events.StateSucceeded || st.Runner != events.RunnerDesktop {
		t.Fatalf("desktop run: %+v, %v", st, err)
	}
	a.waitStats(t, 10*time.Second, "the service acking the job the desktop ran", func(s agent.Stats) bool { return s.DesktopRuns == 1 })
	if n, _ := ackPending(t, env.JS, "desk"); n != 1 { // the background job, due in an hour
		t.Fatalf("ack pending %d, want 1 (the future background job)", n)
	}
	if markerLines(t, optMarker) != 1 || markerLines(t, bgMarker) != 0 {
		t.Fatal("the optional job did not run exactly once, or the background job ran")
	}
	if fin := finals(readStatuses(t, env.JS, "desk", optID)); len(fin) != 1 {
		t.Fatalf("finals %+v", fin)
	}
}

// TestDesktopSessionRunsMandatoryAfterGrace: an interactive mandatory job
// is announced, counted down and run by the desktop session, not the
// service.
func TestDesktopSessionRunsMandatoryAfterGrace(t *testing.T) {
	env := testenv.StartBroker(t)
	p := newPublisher(t, env.JS)
	enroll(t, env.JS, "sess")
	a := startAgent(t, env.URL, "sess", t.TempDir())
	a.waitReady(t)
	d := newTestDesktop(t, env.URL, "sess", func(c *agent.DesktopConfig) { c.Grace = 300 * time.Millisecond })
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Session(ctx) }()
	defer func() { cancel(); <-done }()

	j := job([]string{"echo", "interactive"}, toClient("sess"))
	j.Command.Automated = false
	at := time.Now().Add(500 * time.Millisecond).UTC()
	j.MandatoryAfter = &at
	id := publish(t, p, j)
	fin := finals(waitFinal(t, env.JS, "sess", id, 10*time.Second))[0]
	if fin.Runner != events.RunnerDesktop || fin.State != events.StateSucceeded {
		t.Fatalf("final %+v", fin)
	}
	if fin.StartedAt.Before(at.Add(300 * time.Millisecond)) {
		t.Fatalf("started at %s, before the mandatory time plus the grace period", fin.StartedAt)
	}
	if !d.saidSomething("is mandatory and starts in") {
		t.Fatalf("the user was not warned: %v", d.said)
	}
	waitAcked(t, env.JS, "sess", 10*time.Second)
}
