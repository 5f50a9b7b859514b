package integration_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/oklog/ulid/v2"

	"github.com/pcm-project/pcm/agent"
	"github.com/pcm-project/pcm/broker/auth"
	"github.com/pcm-project/pcm/events"
	"github.com/pcm-project/pcm/maintenance"
	"github.com/pcm-project/pcm/testenv"
)

// chaosEnv is the variable that turns the chaos test on and sets how many
// faults it injects: PCM_CHAOS_FAULTS=100 (CI) or 1000 (the full run).
const chaosEnv = "PCM_CHAOS_FAULTS"

// chaosFigures are what the checker prints.
type chaosFigures struct {
	faults               map[string]int
	pairs, runs          int
	maxRuns              int
	overRuns             int
	finalsPerAttempt     map[int]int // how many (job, client, attempt) have n finals
	unfinished           int
	unacked              int
	overlaps             int
	desktopRuns, svcRuns int
	audited              int // events a full audit printed, exactly those stored
	// cancellations made, those made before the job's mandatory time (no
	// client could have started it), the (job, client) pairs of those, and
	// how many of those pairs started the job anyway (must be 0).
	cancels, cancelsBefore int
	cancelledPairs         int
	startedAfterCancel     int
	// the time rules for people: deferrals the desktops recorded, and the
	// service runs that started while one held (must be 0); jobs bound to
	// the open maintenance window, and to none that fits (their runs: must
	// be 0).
	deferrable, deferrals, ranWhileDeferred int
	inWindow, outOfWindow, ranOutOfWindow   int
	// attempts one face settled as interrupted for the other (it found
	// them started and never finished under the lock), and the desktops'
	// finals not stored because their attempt had one already (the
	// service settled it while the desktop's lease had lapsed).
	settledForOther, desktopSuperseded int
}

// TestChaos runs real pcm agent processes under faults: SIGKILL at random
// moments and at the named dangerous points, broker restarts, stalls past
// the ack wait (redeliveries), and duplicate offers; a desktop face races
// the services for the lock; cancellations come at random moments. At the
// end a checker verifies: every run at most max_attempts times per (job,
// client) (exactly once unless the agent died before it could know), one
// final status per (job, client, attempt), no offer left unacked, no
// overlap of service and desktop runs, no client started a job cancelled
// before it could start there, and a full pcm audit prints exactly the
// events the streams hold.
//
// PCM_CHAOS_FAULTS=100 go test -run TestChaos ./integration/ (CI);
// PCM_CHAOS_FAULTS=1000 for the full run (see docs/testing.md).
func TestChaos(t *testing.T) {
	target, _ := strconv.Atoi(os.Getenv(chaosEnv))
	if target <= 0 {
		t.Skipf("set %s=100 (or 1000) to run the chaos test", chaosEnv)
	}
	clients := 4
	if target >= 500 {
		clients = 6
	}
	env := testenv.StartBroker(t)
	p := newPublisher(t, env.JS)
	dir := t.TempDir()
	markers := filepath.Join(dir, "markers")
	if err := os.MkdirAll(markers, 0o755); err != nil {
		t.Fatal(err)
	}
	// Each run appends "<job> start <ns>" and "<job> end <ns> <runner>" to
	// its client's file; the runner face is known from PCM_RUNNER below.
	record := `echo "$PCM_JOB_ID start $(date +%s%N)" >> ` + markers + `/$PCM_CLIENT_ID; sleep 0.0$((RANDOM % 4)); echo "$PCM_JOB_ID end $(date +%s%N)" >> ` + markers + `/$PCM_CLIENT_ID`

	ids := make([]string, clients)
	agents := make([]*chaosAgent, clients)
	desktops := make([]*agent.Desktop, clients)
	for i := range ids {
		ids[i] = fmt.Sprintf("chaos%d", i)
		enroll(t, env.JS, ids[i], "fleet")
		agents[i] = &chaosAgent{t: t, dir: dir, url: env.URL, client: ids[i]}
		if sec := testenv.SecurityOf(env.URL); sec != nil && sec.AdminCreds != "" {
			// On an authenticated broker the agents run with their own
			// credentials, as in production (not the admin's, which the
			// processes inherit): in their client's account, where they
			// hear their desktop's session.
			agents[i].creds = sec.Creds(t, auth.User{Role: auth.RoleAgent, Name: ids[i]})
		}
		agents[i].start("")
		nc, err := nats.Connect(env.URL, append(agent.ConnectOptions("chaos desktop"), testenv.ClientOptions(t, env.URL, auth.User{Role: auth.RoleDesktop, Name: ids[i]})...)...)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(nc.Close)
		d, err := agent.NewDesktop(nc, agent.DesktopConfig{Config: agent.Config{ClientID: ids[i], StateDir: filepath.Join(dir, "desk-"+ids[i]), Lease: 2 * time.Second}})
		if err != nil {
			t.Fatal(err)
		}
		desktops[i] = d
	}
	// Each desktop's user is logged in: its session is open (the service
	// holds a job for a deferral only while one is).
	sessions, stopSessions := context.WithCancel(context.Background())
	var sessionsWG sync.WaitGroup
	for _, d := range desktops {
		sessionsWG.Go(func() { _ = d.Session(sessions) })
	}
	defer sessionsWG.Wait()
	defer stopSessions()
	// A maintenance window of the fleet, open for the next three hours.
	wstart := time.Now().UTC().Truncate(time.Minute)
	w, err := events.ParseWindow(wstart.Format("2006-01-02 15:04-") + wstart.Add(3*time.Hour).Format("15:04") + " UTC")
	if err != nil {
		t.Fatal(err)
	}
	wctx, wcancel := context.WithTimeout(context.Background(), 10*time.Second)
	if _, err := maintenance.New(env.JS).Set(wctx, toGroup("fleet"), []events.Window{w}, "chaos"); err != nil {
		t.Fatal(err)
	}
	wcancel()

	// Jobs: most succeed (max_attempts 1), one in five fails (max_attempts
	// 3). One in four is mandatory 1 to 3 s after it is published, kept
	// from the desktops' picks, and a candidate for cancellation: until its
	// mandatory time no client may start it. One in eight allows the user
	// one deferral of a minute, is mandatory 1 to 3 s after it is
	// published, kept from the desktops' picks and deferred by them now
	// and then during the service's countdown. One in eight requires the
	// fleet's open maintenance window; one in twelve requires a window its
	// timeout fits in, which none does before it expires, 4 s later.
	var jobsMu sync.Mutex
	jobs := map[string]int{}              // job id -> max attempts
	mandatoryAt := map[string]time.Time{} // cancellable job -> its mandatory time
	cancelledAt := map[string]time.Time{} // cancelled job -> when its cancellation was stored (at the latest)
	deferrable := map[string]time.Time{}  // deferrable job -> its mandatory time
	deferredOn := map[string]bool{}       // "<job> <client>" -> a desktop deferred it there
	inWindow, outOfWindow := map[string]bool{}, map[string]bool{}
	publishJob := func(ctx context.Context) {
		j := job([]string{"bash", "-c", record}, toGroup("fleet"))
		j.MaxAttempts = 1
		kind := rand.IntN(24)
		switch {
		case kind < 6: // cancellable
			at := time.Now().Add(time.Second + rand.N(2*time.Second)).UTC()
			j.MandatoryAfter = &at
		case kind < 9: // deferrable
			at := time.Now().Add(time.Second + rand.N(2*time.Second)).UTC()
			j.MandatoryAfter = &at
			j.Deferrals = &events.Deferrals{Max: 1, Each: events.Duration(chaosDeferral)}
		case kind < 12: // in the open window
			j.InWindow = true
		case kind < 14: // no window fits before it expires
			j.InWindow = true
			j.Command.Timeout = events.Duration(6 * time.Hour)
			j.ExpireAfter = time.Now().Add(4 * time.Second).UTC()
		case rand.IntN(5) == 0:
			j.Command.Argv = []string{"bash", "-c", record + "; exit 1"}
			j.MaxAttempts = 3
		}
		id, err := publishRetrying(ctx, p, j)
		if err != nil {
			return
		}
		jobsMu.Lock()
		jobs[id] = j.MaxAttempts
		switch {
		case kind < 6:
			mandatoryAt[id] = *j.MandatoryAfter
		case kind < 9:
			deferrable[id] = *j.MandatoryAfter
		case kind < 12:
			inWindow[id] = true
		case kind < 14:
			outOfWindow[id] = true
		}
		jobsMu.Unlock()
	}
	// deferOne has desktop i defer a deferrable job that is due, as its
	// user would during the countdown.
	deferOne := func(ctx context.Context, i int) {
		pick := pickWhere(&jobsMu, deferrable, func(id string) bool {
			return time.Now().After(deferrable[id]) && !deferredOn[id+" "+ids[i]]
		})
		if pick == "" {
			return
		}
		dctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		defer cancel()
		if _, err := desktops[i].Defer(dctx, pick); err == nil {
			jobsMu.Lock()
			deferredOn[pick+" "+ids[i]] = true
			jobsMu.Unlock()
		}
	}
	cancelJob := func(ctx context.Context) {
		pick := pickWhere(&jobsMu, mandatoryAt, func(id string) bool { _, done := cancelledAt[id]; return !done })
		if pick == "" {
			return
		}
		for ctx.Err() == nil {
			cctx, cancel := context.WithTimeout(ctx, 3*time.Second)
			err := p.Cancel(cctx, pick, "chaos")
			cancel()
			if err == nil {
				jobsMu.Lock()
				cancelledAt[pick] = time.Now()
				jobsMu.Unlock()
				return
			}
			sleep(ctx, 100*time.Millisecond)
		}
	}

	faults := map[string]int{}
	var faultsMu sync.Mutex
	count := func(kind string) {
		faultsMu.Lock()
		faults[kind]++
		faultsMu.Unlock()
	}
	total := func() int {
		faultsMu.Lock()
		defer faultsMu.Unlock()
		n := 0
		for _, v := range faults {
			n += v
		}
		return n
	}

	ctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	// Publisher: a job every 150 ms while faults go on.
	wg.Go(func() {
		for ctx.Err() == nil {
			publishJob(ctx)
			sleep(ctx, 150*time.Millisecond)
		}
	})
	// Cancellations at random moments, of jobs not due yet or already due.
	wg.Go(func() {
		for ctx.Err() == nil {
			sleep(ctx, time.Duration(200+rand.IntN(500))*time.Millisecond)
			cancelJob(ctx)
		}
	})
	// Desktops: each picks live jobs of its client and runs one now and then.
	for i := range desktops {
		wg.Go(func() {
			for ctx.Err() == nil {
				pick := pickWhere(&jobsMu, jobs, func(id string) bool {
					_, cancellable := mandatoryAt[id]
					_, deferrable := deferrable[id]
					return !cancellable && !deferrable
				})
				if pick != "" {
					rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
					_, _ = desktops[i].Run(rctx, pick)
					cancel()
				}
				sleep(ctx, time.Duration(100+rand.IntN(200))*time.Millisecond)
			}
		})
	}
	// Deferrals: each desktop's user defers a due deferrable job now and
	// then.
	for i := range desktops {
		wg.Go(func() {
			for ctx.Err() == nil {
				deferOne(ctx, i)
				sleep(ctx, time.Duration(150+rand.IntN(250))*time.Millisecond)
			}
		})
	}
	// Fault injector.
	points := []agent.FaultPoint{agent.FaultAfterStart, agent.FaultAfterFinish, agent.FaultAfterPublish}
	for total() < target {
		a := agents[rand.IntN(len(agents))]
		switch r := rand.IntN(100); {
		case r < 45: // SIGKILL at a random moment, restart
			a.kill()
			count("sigkill")
			a.start("")
		case r < 70: // arm a dangerous point; the agent dies there on its next run
			pt := points[rand.IntN(len(points))]
			a.kill()
			a.start(pt)
			if a.waitDeath(3 * time.Second) {
				count("killed at " + string(pt))
			}
			a.start("")
		case r < 80: // stall past the ack wait: the broker redelivers
			a.stall(testAckWait + 500*time.Millisecond)
			count("stall past ack wait")
		case r < 92: // a duplicate of a published offer, new Nats-Msg-Id
			if duplicateOffer(t, env, jobs, &jobsMu) {
				count("duplicate offer")
			}
		default: // broker restart
			env.Restart(t)
			count("broker restart")
		}
		sleep(ctx, time.Duration(20+rand.IntN(60))*time.Millisecond)
	}
	stop()
	wg.Wait()

	// Settle: every agent up without faults until everything is final and acked.
	for _, a := range agents {
		a.kill()
		a.start("")
	}
	jobsMu.Lock()
	defer jobsMu.Unlock()
	fig := chaosFigures{faults: faults, finalsPerAttempt: map[int]int{}, cancels: len(cancelledAt),
		deferrable: len(deferrable), inWindow: len(inWindow), outOfWindow: len(outOfWindow)}
	// A job cancelled before its mandatory time could not have started
	// anywhere (the services wait for that time, the desktops never pick
	// it): it must never start.
	cancelledBefore := map[string]bool{}
	for id, at := range cancelledAt {
		if at.Before(mandatoryAt[id]) {
			cancelledBefore[id] = true
		}
	}
	fig.cancelsBefore = len(cancelledBefore)
	testenv.WaitFor(t, 3*time.Minute, "every offer acked on every client", func() bool {
		for _, c := range ids {
			if a, p, err := consumerBacklog(env.JS, c); err != nil || a != 0 || p != 0 {
				return false
			}
		}
		return true
	})
	for _, c := range ids {
		runs, spans := readRuns(t, filepath.Join(markers, c))
		fig.overlaps += overlaps(spans)
		for id, maxAttempts := range jobs {
			fig.pairs++
			sts := readStatuses(t, env.JS, c, id)
			perAttempt := map[int]int{}
			interrupted := false
			var last events.JobStatus
			for _, s := range finals(sts) {
				perAttempt[s.Attempt]++
				last = s
				if strings.Contains(s.Reason, "restarted during the run") || strings.Contains(s.Reason, "stopped during the run") {
					interrupted = true
				}
				if strings.Contains(s.Reason, "face stopped during the run") {
					fig.settledForOther++
				}
				if s.Runner == events.RunnerDesktop {
					fig.desktopRuns++
				} else if s.ExitCode != nil {
					fig.svcRuns++
				}
			}
			for attempt, n := range perAttempt {
				fig.finalsPerAttempt[n]++
				if n != 1 {
					t.Errorf("job %s on %s: %d final statuses of attempt %d: %+v", id, c, n, attempt, sts)
				}
			}
			if !last.EndsJob(maxAttempts) {
				fig.unfinished++
				t.Errorf("job %s on %s not finished: %+v", id, c, sts)
			}
			n := runs[id]
			fig.runs += n
			fig.maxRuns = max(fig.maxRuns, n)
			if cancelledBefore[id] {
				fig.cancelledPairs++
				if n > 0 || last.State != events.StateCancelled {
					fig.startedAfterCancel++
					t.Errorf("job %s, cancelled before its mandatory time, ran %d times on %s: %+v", id, n, c, sts)
				}
			}
			if _, ok := deferrable[id]; ok && ranWhileDeferred(sts) {
				fig.ranWhileDeferred++
				t.Errorf("job %s ran on %s by the service while the user's deferral held: %+v", id, c, sts)
			}
			for _, s := range sts {
				if s.State == events.StateDeferred {
					fig.deferrals++
				}
			}
			if outOfWindow[id] && (n > 0 || last.State != events.StateExpired) {
				fig.ranOutOfWindow++
				t.Errorf("job %s, with no window its timeout fits in, ran %d times on %s: %+v", id, n, c, sts)
			}
			if n > maxAttempts || (maxAttempts == 1 && n == 0 && !interrupted && last.State == events.StateSucceeded) {
				fig.overRuns++
				t.Errorf("job %s ran %d times on %s (max_attempts %d): %+v", id, n, c, maxAttempts, sts)
			}
		}
		if a, p := ackPending(t, env.JS, c); a != 0 || p != 0 {
			fig.unacked += a + int(p)
		}
	}
	for _, d := range desktops {
		fig.desktopSuperseded += int(d.Stats().Superseded)
	}
	// The history is whole: a full audit returns exactly what the streams
	// hold, checked once every offer is acked and every status stored.
	fig.audited = checkAuditWhole(t, env.URL, env.JS)
	report := fig.String()
	t.Log(report)
	fmt.Println(report)
	if fig.overRuns != 0 || fig.unfinished != 0 || fig.unacked != 0 || fig.overlaps != 0 || len(fig.finalsPerAttempt) != 1 || fig.finalsPerAttempt[1] == 0 ||
		fig.startedAfterCancel != 0 || fig.cancelsBefore == 0 || fig.ranWhileDeferred != 0 || fig.ranOutOfWindow != 0 || fig.deferrals == 0 || fig.inWindow == 0 {
		t.Fatalf("chaos checker failed:\n%s", report)
	}
}

func (f chaosFigures) String() string {
	var b strings.Builder
	kinds := make([]string, 0, len(f.faults))
	n := 0
	for k, v := range f.faults {
		kinds = append(kinds, fmt.Sprintf("%s=%d", k, v))
		n += v
	}
	sort.Strings(kinds)
	fmt.Fprintf(&b, "chaos checker\n  faults injected:                  %d (%s)\n", n, strings.Join(kinds, ", "))
	fmt.Fprintf(&b, "  (job, client) pairs:              %d\n", f.pairs)
	fmt.Fprintf(&b, "  runs:                             %d (most runs of one pair: %d; pairs over max_attempts: %d)\n", f.runs, f.maxRuns, f.overRuns)
	fmt.Fprintf(&b, "  finals per (job, client, attempt): %v (count of attempts having n finals; must be only 1)\n", f.finalsPerAttempt)
	fmt.Fprintf(&b, "  pairs without a final status:     %d\n", f.unfinished)
	fmt.Fprintf(&b, "  offers left unacked:              %d\n", f.unacked)
	fmt.Fprintf(&b, "  lock overlaps:                    %d (runs by service %d, by desktop %d)\n", f.overlaps, f.svcRuns, f.desktopRuns)
	fmt.Fprintf(&b, "  full audit:                       %d events, exactly those stored (pcm audit --verify: whole)\n", f.audited)
	fmt.Fprintf(&b, "  cancellations:                    %d (%d before the job's mandatory time)\n", f.cancels, f.cancelsBefore)
	fmt.Fprintf(&b, "  cancelled before start never started: %d of %d (job, client) pairs started anyway (must be 0)\n", f.startedAfterCancel, f.cancelledPairs)
	fmt.Fprintf(&b, "  deferrals:                        %d recorded on %d deferrable jobs; service runs during one: %d (must be 0)\n", f.deferrals, f.deferrable, f.ranWhileDeferred)
	fmt.Fprintf(&b, "  maintenance windows:              %d jobs in the open window, %d with none that fits; runs of those: %d (must be 0)\n", f.inWindow, f.outOfWindow, f.ranOutOfWindow)
	fmt.Fprintf(&b, "  attempts settled for the other face: %d (found started and never finished under the lock); desktop finals superseded: %d\n", f.settledForOther, f.desktopSuperseded)
	return b.String()
}

// chaosDeferral is how long a deferral of the chaos test's jobs lasts.
const chaosDeferral = time.Minute

// ranWhileDeferred reports whether the service started a job while a
// deferral recorded before held it (a start within deferralSlack of the
// deferral may have been decided before it: the user deferred a job
// already starting).
func ranWhileDeferred(sts []events.JobStatus) bool {
	const deferralSlack = 5 * time.Second
	for _, d := range sts {
		if d.State != events.StateDeferred || d.DeferredUntil == nil {
			continue
		}
		deferredAt := d.DeferredUntil.Add(-chaosDeferral)
		for _, s := range sts {
			if s.State == events.StateStarted && s.Runner == events.RunnerService && s.StartedAt != nil &&
				s.StartedAt.After(deferredAt.Add(deferralSlack)) && s.StartedAt.Before(*d.DeferredUntil) {
				return true
			}
		}
	}
	return false
}

// chaosGrace is the countdown the chaos agents give a deferrable job once
// it is due.
const chaosGrace = 2 * time.Second

// chaosAgent is one real pcm agent process that the test kills and
// restarts.
type chaosAgent struct {
	t                testing.TB
	dir, url, client string
	creds            string // its own credentials on an authenticated broker
	mu               sync.Mutex
	p                *proc
}

func (a *chaosAgent) start(point agent.FaultPoint) {
	var env []string
	if point != "" {
		env = []string{"PCM_TEST_FAULT_POINT=" + string(point)}
	}
	if a.creds != "" {
		env = append(env, "PCM_CREDS="+a.creds)
	}
	p := startPCM(a.t, a.dir, env, "agent", "--url", a.url, "--client-id", a.client,
		"--state-dir", filepath.Join(a.dir, "state-"+a.client), "--lease", "2s", "--heartbeat", "5s", "--log-level", "warn",
		"--grace", chaosGrace.String())
	a.mu.Lock()
	a.p = p
	a.mu.Unlock()
}

func (a *chaosAgent) kill() {
	a.mu.Lock()
	p := a.p
	a.mu.Unlock()
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	err := <-p.exited
	p.exited <- err
}

// waitDeath reports whether the process died by itself within d.
func (a *chaosAgent) waitDeath(d time.Duration) bool {
	a.mu.Lock()
	p := a.p
	a.mu.Unlock()
	select {
	case err := <-p.exited:
		p.exited <- err
		return true
	case <-time.After(d):
		a.kill()
		return false
	}
}

// stall stops the process (SIGSTOP) for d, then lets it go on.
func (a *chaosAgent) stall(d time.Duration) {
	a.mu.Lock()
	p := a.p
	a.mu.Unlock()
	_ = p.cmd.Process.Signal(syscall.SIGSTOP)
	time.Sleep(d)
	_ = p.cmd.Process.Signal(syscall.SIGCONT)
}

// duplicateOffer republishes a stored offer with a new Nats-Msg-Id, as a
// CI step that retried with another message id would.
func duplicateOffer(t testing.TB, env *testenv.Broker, jobs map[string]int, mu *sync.Mutex) bool {
	mu.Lock()
	var id string
	for k := range jobs {
		id = k
		break
	}
	mu.Unlock()
	if id == "" {
		return false
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s, err := env.JS.Stream(ctx, events.StreamJobs)
	if err != nil {
		return false
	}
	msg, err := s.GetLastMsgForSubject(ctx, events.JobSubject(toGroup("fleet")))
	if err != nil {
		return false
	}
	dup := nats.NewMsg(msg.Subject)
	dup.Data = msg.Data
	dup.Header = msg.Header
	dup.Header.Set(events.HeaderMsgID, "dup-"+strconv.FormatInt(time.Now().UnixNano(), 10))
	_, err = env.JS.PublishMsg(ctx, dup)
	return err == nil
}

// pickWhere returns a key of m that keep accepts (the first in map order,
// so any), or "" when there is none; mu guards m and what keep reads.
func pickWhere[V any](mu *sync.Mutex, m map[string]V, keep func(string) bool) string {
	mu.Lock()
	defer mu.Unlock()
	for id := range m {
		if keep(id) {
			return id
		}
	}
	return ""
}

// publishRetrying publishes j, retrying with the same job id while the
// broker restarts (the stored targets are de-duplicated).
func publishRetrying(ctx context.Context, p interface {
	Publish(context.Context, events.JobOffered) (events.JobOffered, error)
}, j events.JobOffered) (string, error) {
	j.JobID = newJobID()
	for {
		pctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		published, err := p.Publish(pctx, j)
		cancel()
		if err == nil || ctx.Err() != nil {
			return published.JobID, err
		}
		sleep(ctx, 100*time.Millisecond)
	}
}

// span is one run's interval.
type span struct{ start, end int64 }

// readRuns parses a client's marker file: runs per job and their intervals.
func readRuns(t testing.TB, path string) (map[string]int, []span) {
	t.Helper()
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return map[string]int{}, nil
	}
	if err != nil {
		t.Fatal(err)
	}
	runs := map[string]int{}
	open := map[string][]int64{}
	var spans []span
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		f := strings.Fields(line)
		if len(f) < 3 {
			continue
		}
		ns, _ := strconv.ParseInt(f[2], 10, 64)
		if f[1] == "start" {
			runs[f[0]]++
			open[f[0]] = append(open[f[0]], ns)
			continue
		}
		if starts := open[f[0]]; len(starts) > 0 {
			spans = append(spans, span{starts[0], ns})
			open[f[0]] = starts[1:]
		}
	}
	return runs, spans
}

// overlaps counts pairs of consecutive runs (by start) that overlap.
func overlaps(spans []span) int {
	sort.Slice(spans, func(i, j int) bool { return spans[i].start < spans[j].start })
	n := 0
	for i := 1; i < len(spans); i++ {
		if spans[i].start < spans[i-1].end {
			n++
		}
	}
	return n
}

func sleep(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

// newJobID is a fresh sortable job id.
func newJobID() string { return ulid.Make().String() }
