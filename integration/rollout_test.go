package integration_test

import (
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/pcm-project/pcm/agent/lock"
	"github.com/pcm-project/pcm/events"
	"github.com/pcm-project/pcm/fleet"
	"github.com/pcm-project/pcm/rollout"
	"github.com/pcm-project/pcm/testenv"
)

// slowScript is the command of the rollout tests: it fails on client bad,
// and on client slow runs until the file release-<job> appears in dir.
func slowScript(dir string) string {
	return `case "$PCM_CLIENT_ID" in bad) exit 3;; slow) while [ ! -f ` + dir + `/release-$PCM_JOB_ID ]; do sleep 0.05; done;; esac`
}

// TestRolloutFiveAgents publishes to a group of five clients where one
// succeeds, one fails, one is offline, one is another platform and one is
// slow: pcm status -o json reports each, and pcm publish --wait exits 1 on a
// failure, 2 on a timeout with the slow one running, 0 when all succeed.
func TestRolloutFiveAgents(t *testing.T) {
	env := testenv.StartBroker(t)
	dir := t.TempDir()
	for _, c := range []string{"ok", "bad", "off", "win", "slow"} {
		enroll(t, env.JS, c, "fleet")
	}
	for _, c := range []string{"ok", "bad", "slow"} {
		startAgent(t, env.URL, c, filepath.Join(dir, c)).waitReady(t)
	}
	startAgent(t, env.URL, "win", filepath.Join(dir, "win"), asOS("windows")).waitReady(t)
	offSince := time.Now().Add(-time.Hour).UTC().Truncate(time.Second)
	putAgentInfo(t, env.JS, events.AgentInfo{ClientID: "off", Host: "off-host", OS: "linux", Arch: "amd64", Groups: []string{"fleet"},
		Version: "dev", LastSeen: offSince, StartedAt: offSince.Add(-time.Hour), Heartbeat: events.Duration(time.Second)})

	publishArgs := func(extra ...string) []string {
		args := []string{"publish", "--url", env.URL, "--platform", "linux/*", "--platform", "darwin/*", "--wait"}
		return append(args, extra...)
	}
	script := slowScript(dir)
	release := func(job string) { touch(t, filepath.Join(dir, "release-"+job)) }

	// 1. A failure with --max-failures 0: exit 1 naming the failed client.
	out, errOut, code := runPCM(t, nil, publishArgs("--group", "fleet", "--max-failures", "0", "--wait-timeout", "20s", "--", "sh", "-c", script)...)
	job1 := strings.TrimSpace(out)
	if code != 1 || !jobIDLine.MatchString(job1) || !strings.Contains(errOut, "bad (failed, exit 3") {
		t.Fatalf("publish --wait --max-failures 0: exit %d, stdout %q, stderr:\n%s\nwant exit 1, the job id, and bad named as failed", code, out, errOut)
	}
	if !strings.Contains(errOut, "waiting for job "+job1+" on 5 clients") {
		t.Fatalf("publish --wait did not announce what it waits for:\n%s", errOut)
	}

	// pcm status reports each client, once ok has finished and slow started.
	waitRollout(t, env.JS, job1, "ok succeeded and slow started", 15*time.Second, func(r rollout.Rollout) bool {
		s := statesOf(r)
		return s["ok"] == rollout.ClientState(events.StateSucceeded) && s["slow"] == rollout.ClientState(events.StateStarted) &&
			s["win"] == rollout.ClientState(events.StateNotApplicable)
	})
	out, errOut, code = runPCM(t, nil, "status", "--url", env.URL, job1, "-o", "json")
	if code != 0 {
		t.Fatalf("pcm status exited %d: %s", code, errOut)
	}
	r := parseRollout(t, out)
	if r.JobID != job1 || len(r.Clients) != 5 || r.Done != 3 || r.Failed != 1 || r.Succeeded != 2 {
		t.Fatalf("rollout %s: %d clients, %d done, %d failed, %d succeeded; want 5, 3, 1, 2: %+v", r.JobID, len(r.Clients), r.Done, r.Failed, r.Succeeded, r.Clients)
	}
	ok := clientOf(t, r, "ok")
	if ok.State != "succeeded" || ok.ExitCode == nil || *ok.ExitCode != 0 || ok.Runner != events.RunnerService || ok.Time == nil || !ok.Done || ok.Failed || !ok.Expected {
		t.Fatalf("ok: %+v", ok)
	}
	bad := clientOf(t, r, "bad")
	if bad.State != "failed" || bad.ExitCode == nil || *bad.ExitCode != 3 || !bad.Done || !bad.Failed || !strings.Contains(bad.Detail, "exit code 3") {
		t.Fatalf("bad: %+v", bad)
	}
	off := clientOf(t, r, "off")
	if off.State != rollout.ClientOffline || off.Since == nil || !off.Since.Equal(offSince) || off.Detail != "offline since "+offSince.Format(time.RFC3339) || off.Done {
		t.Fatalf("off: %+v (want offline since %s)", off, offSince)
	}
	win := clientOf(t, r, "win")
	if win.State != "not_applicable" || !win.Done || win.Failed || !strings.Contains(win.Detail, "windows") {
		t.Fatalf("win: %+v", win)
	}
	slow := clientOf(t, r, "slow")
	if slow.State != "started" || slow.Done || slow.Runner != events.RunnerService || slow.Time == nil {
		t.Fatalf("slow: %+v", slow)
	}
	if r.Counts["succeeded"] != 1 || r.Counts["failed"] != 1 || r.Counts["offline"] != 1 || r.Counts["not_applicable"] != 1 || r.Counts["started"] != 1 {
		t.Fatalf("counts %v", r.Counts)
	}
	// The table says the same, with a summary line.
	out, _, code = runPCM(t, []string{"NO_COLOR=1"}, "status", "--url", env.URL, job1, "--utc")
	wantSummary := "5 clients: 1 succeeded, 1 not applicable, 1 failed, 1 started, 1 offline (3 done, 1 failed)"
	if code != 0 || !strings.Contains(out, wantSummary) || !strings.Contains(out, "offline since "+offSince.Format(time.RFC3339)) ||
		!regexp.MustCompile(`(?m)^bad\s+failed\s+3\s+service\s`).MatchString(out) || strings.Contains(out, "\x1b[") {
		t.Fatalf("pcm status table (exit %d):\n%s\nwant the summary %q, aligned rows and no colours off a terminal", code, out, wantSummary)
	}
	release(job1)
	waitFinal(t, env.JS, "slow", job1, 10*time.Second)

	// 2. The failure within --max-failures 1, slow still running: exit 2
	// on the timeout, listing the unfinished clients.
	start := time.Now()
	out, errOut, code = runPCM(t, nil, publishArgs("--group", "fleet", "--max-failures", "1", "--wait-timeout", "3s", "--", "sh", "-c", script)...)
	job2 := strings.TrimSpace(out)
	if code != 2 || !strings.Contains(errOut, "timed out after 3s") || !strings.Contains(errOut, "2 of 5 clients unfinished") ||
		!strings.Contains(errOut, "slow (started") || !strings.Contains(errOut, "off (offline since") {
		t.Fatalf("publish --wait --wait-timeout 3s: exit %d, stderr:\n%s\nwant exit 2 listing slow (started) and off (offline)", code, errOut)
	}
	if took := time.Since(start); took > 8*time.Second {
		t.Fatalf("the wait took %s with --wait-timeout 3s", took)
	}
	release(job2)
	waitFinal(t, env.JS, "slow", job2, 10*time.Second)

	// 3. Every client succeeds (or the job does not apply): exit 0.
	out, errOut, code = runPCM(t, nil, publishArgs("--client", "ok", "--client", "slow", "--client", "win", "--wait-timeout", "20s", "--", "true")...)
	if code != 0 || !strings.Contains(errOut, "done on 3 clients in ") {
		t.Fatalf("publish --wait on clients that all succeed: exit %d, stdout %q, stderr:\n%s", code, out, errOut)
	}
	job3 := strings.TrimSpace(out)
	r = waitRollout(t, env.JS, job3, "job 3 done", time.Second, func(r rollout.Rollout) bool { return r.Done == 3 })
	if r.Failed != 0 || r.Counts["succeeded"] != 2 || r.Counts["not_applicable"] != 1 {
		t.Fatalf("job 3 rollout %+v", r)
	}
}

// TestStatusReasons checks the reasons given for clients with no status
// (locked by desktop, not received, not enrolled, never seen, pending), that
// --watch shows a change as it happens, and the agents inventory.
func TestStatusReasons(t *testing.T) {
	env := testenv.StartBroker(t)
	dir := t.TempDir()
	p := newPublisher(t, env.JS)
	for _, c := range []string{"desk", "idle", "never", "later"} {
		enroll(t, env.JS, c, "lab")
	}
	startAgent(t, env.URL, "desk", filepath.Join(dir, "desk")).waitReady(t)
	startAgent(t, env.URL, "later", filepath.Join(dir, "later")).waitReady(t)
	putAgentInfo(t, env.JS, events.AgentInfo{ClientID: "idle", Host: "idle-host", OS: "linux", Arch: "amd64", Version: "dev",
		LastSeen: time.Now().UTC(), Heartbeat: events.Duration(time.Hour)})

	// The desktop holds desk's lock.
	locker, err := lock.New(env.JS, lock.Config{Client: "desk", Lease: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	lease, err := locker.TryAcquire(t.Context(), events.LockInfo{Holder: events.RunnerDesktop, User: "ann"})
	if err != nil {
		t.Fatal(err)
	}

	jobA := publish(t, p, job([]string{"true"}, toClient("desk"), toClient("idle"), toClient("never"), toClient("ghost")))
	r := waitRollout(t, env.JS, jobA, "desk locked", 10*time.Second, func(r rollout.Rollout) bool {
		return statesOf(r)["desk"] == rollout.ClientLocked
	})
	want := map[string]string{
		"desk":  "locked by desktop (user ann) since ",
		"idle":  "not received",
		"never": "offline: never seen",
		"ghost": "not received: not enrolled (pcm enroll ghost)",
	}
	if len(r.Clients) != len(want) {
		t.Fatalf("rollout of job A lists %d clients, want %d: %+v", len(r.Clients), len(want), r.Clients)
	}
	for c, detail := range want {
		if got := clientOf(t, r, c); !strings.HasPrefix(got.Detail, detail) || got.Done || !got.Expected {
			t.Errorf("%s: state %s, detail %q; want detail %q", c, got.State, got.Detail, detail)
		}
	}
	later := time.Now().Add(time.Hour).UTC().Truncate(time.Second)
	jb := job([]string{"true"}, toGroup("lab"))
	jb.MandatoryAfter = &later
	jobB := publish(t, p, jb)
	r = waitRollout(t, env.JS, jobB, "later pending", 10*time.Second, func(r rollout.Rollout) bool {
		return statesOf(r)["later"] == rollout.ClientPending
	})
	if c := clientOf(t, r, "later"); c.Due == nil || !c.Due.Equal(later) || c.Detail != "pending: mandatory at "+later.Format(time.RFC3339) {
		t.Fatalf("later: %+v", c)
	}

	// --watch prints a line when the desktop lets go and desk runs the job.
	w := startPCM(t, dir, []string{"NO_COLOR=1"}, "status", "--url", env.URL, jobA, "--watch", "--utc")
	w.stdout.waitLine(t, regexp.MustCompile(`^4 clients: `), 10*time.Second)
	if err := lease.Release(t.Context()); err != nil {
		t.Fatal(err)
	}
	w.stdout.waitLine(t, regexp.MustCompile(` desk succeeded, exit 0 \[1/4 done, 0 failed\]$`), 10*time.Second)

	// The inventory lists every client with its liveness; show adds the
	// pending jobs and the last statuses.
	out, errOut, code := runPCM(t, nil, "agents", "--url", env.URL, "-o", "json")
	if code != 0 {
		t.Fatalf("pcm agents exited %d: %s", code, errOut)
	}
	var inv []fleet.AgentEntry
	if err := jsonUnmarshal(out, &inv); err != nil {
		t.Fatalf("pcm agents -o json: %v\n%s", err, out)
	}
	live := map[string]fleet.Liveness{}
	for _, a := range inv {
		live[a.Client] = a.Liveness
	}
	wantLive := map[string]fleet.Liveness{"desk": fleet.Online, "later": fleet.Online, "idle": fleet.Online, "never": fleet.NeverSeen}
	if len(live) != len(wantLive) {
		t.Fatalf("inventory %v, want %v", live, wantLive)
	}
	for c, l := range wantLive {
		if live[c] != l {
			t.Errorf("inventory: %s is %s, want %s", c, live[c], l)
		}
	}
	out, _, code = runPCM(t, []string{"NO_COLOR=1"}, "agents", "--url", env.URL)
	if code != 0 || !regexp.MustCompile(`(?m)^desk\s+\S+\s+linux/\S+\s+lab\s+dev\s`).MatchString(out) || !strings.Contains(out, "4 clients: 3 online, 0 stale, 1 never seen") {
		t.Fatalf("pcm agents table (exit %d):\n%s", code, out)
	}
	out, errOut, code = runPCM(t, nil, "agents", "show", "later", "--url", env.URL, "-o", "json")
	if code != 0 {
		t.Fatalf("pcm agents show exited %d: %s", code, errOut)
	}
	var detail fleet.AgentDetail
	if err := jsonUnmarshal(out, &detail); err != nil {
		t.Fatal(err)
	}
	if len(detail.Pending) != 1 || detail.Pending[0].JobID != jobB || !detail.Pending[0].Received || len(detail.Recent) != 0 {
		t.Fatalf("agents show later: pending %+v, recent %+v; want job B received and no status", detail.Pending, detail.Recent)
	}
	out, _, code = runPCM(t, nil, "agents", "show", "desk", "--url", env.URL, "-o", "json")
	detail = fleet.AgentDetail{}
	if err := jsonUnmarshal(out, &detail); code != 0 || err != nil {
		t.Fatalf("agents show desk: exit %d, %v", code, err)
	}
	if len(detail.Pending) != 1 || detail.Pending[0].JobID != jobB || len(detail.Recent) != 2 ||
		detail.Recent[0].State != events.StateStarted || detail.Recent[1].State != events.StateSucceeded || detail.Recent[1].JobID != jobA {
		t.Fatalf("agents show desk: pending %+v, recent %+v", detail.Pending, detail.Recent)
	}
	if _, errOut, code := runPCM(t, nil, "agents", "show", "nobody", "--url", env.URL); code == 0 || !strings.Contains(errOut, "unknown client") {
		t.Fatalf("agents show of an unknown client: exit %d, %s", code, errOut)
	}
	if _, errOut, code := runPCM(t, nil, "status", "--url", env.URL, "NOSUCHJOB"); code == 0 || !strings.Contains(errOut, "job not found") {
		t.Fatalf("status of an unknown job: exit %d, %s", code, errOut)
	}
}
