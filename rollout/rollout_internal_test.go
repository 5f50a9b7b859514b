package rollout

import (
	"strings"
	"testing"
	"time"

	"github.com/pcm-project/pcm/events"
	"github.com/pcm-project/pcm/fleet"
	"github.com/pcm-project/pcm/internal/offers"
)

// rolloutFixture is a job offered to group lab (seq 10) and client ws-x
// (seq 11), mandatory in an hour unless changed.
func rolloutFixture(now time.Time) *view {
	mandatory := now.Add(time.Hour)
	job := events.JobOffered{
		JobID:      "j1",
		Command:    events.CommandLine{Argv: []string{"true"}, Automated: true, Timeout: events.Duration(time.Minute)},
		Targets:    []events.Target{{Kind: events.TargetGroup, Name: "lab"}, {Kind: events.TargetClient, Name: "ws-x"}},
		OfferAfter: now.Add(-time.Minute), MandatoryAfter: &mandatory, ExpireAfter: now.Add(24 * time.Hour),
	}
	offer := offers.Found{Job: job, Copies: []offers.Entry{{Subject: "pcm.jobs.group.lab", Seq: 10}, {Subject: "pcm.jobs.client.ws-x", Seq: 11}}}
	enrolled := map[string]fleet.Enrollment{}
	for _, c := range []string{"done", "got", "late", "stale", "desk", "never", "other"} {
		groups := []string{"lab"}
		if c == "other" {
			groups = []string{"ops"}
		}
		enrolled[c] = fleet.Enrollment{Client: c, Groups: groups, Filters: events.ConsumerFilters(c, groups), Delivered: 9}
	}
	enrolled["got"] = fleet.Enrollment{Client: "got", Groups: []string{"lab"}, Filters: events.ConsumerFilters("got", []string{"lab"}), Delivered: 10}
	v := newView(offer, enrolled)
	fresh := events.AgentInfo{LastSeen: now, Heartbeat: events.Duration(time.Second)}
	for _, c := range []string{"done", "got", "late", "desk", "other"} {
		a := fresh
		a.ClientID = c
		v.agents[c] = a
	}
	v.agents["stale"] = events.AgentInfo{ClientID: "stale", LastSeen: now.Add(-time.Minute), Heartbeat: events.Duration(time.Second)}
	v.locks["desk"] = events.LockInfo{Holder: events.RunnerDesktop, User: "ann", Since: now.Add(-time.Second)}
	exit := 0
	v.apply(events.JobStatus{JobID: "j1", ClientID: "done", State: events.StateSucceeded, Attempt: 1, ExitCode: &exit, Runner: events.RunnerService}, now)
	return v
}

func TestRolloutClientStates(t *testing.T) {
	now := time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC)
	v := rolloutFixture(now)
	r := v.rollout(now)
	ts := func(t time.Time) string { return t.UTC().Format(time.RFC3339) }
	want := map[string]struct {
		state  ClientState
		detail string
	}{
		"done":  {ClientState(events.StateSucceeded), ""},
		"got":   {ClientPending, "pending: mandatory at " + ts(now.Add(time.Hour))},
		"late":  {ClientNotReceived, "not received"},
		"stale": {ClientOffline, "offline since " + ts(now.Add(-time.Minute))},
		"desk":  {ClientLocked, "locked by desktop (user ann) since " + ts(now.Add(-time.Second))},
		"never": {ClientOffline, "offline: never seen (no heartbeat in PCM_AGENTS)"},
		"ws-x":  {ClientNotReceived, "not received: not enrolled (pcm enroll ws-x)"},
	}
	if len(r.Clients) != len(want) {
		t.Fatalf("%d clients, want %d (other is in group ops, not targeted): %+v", len(r.Clients), len(want), r.Clients)
	}
	for _, c := range r.Clients {
		w, ok := want[c.Client]
		if !ok {
			t.Errorf("unexpected client %s", c.Client)
			continue
		}
		if c.State != w.state || c.Detail != w.detail || !c.Expected {
			t.Errorf("%s: state %q detail %q expected %v; want %q %q", c.Client, c.State, c.Detail, c.Expected, w.state, w.detail)
		}
	}
	if r.Done != 1 || r.Succeeded != 1 || r.Failed != 0 || r.Counts[ClientOffline] != 2 {
		t.Fatalf("done %d succeeded %d failed %d counts %v", r.Done, r.Succeeded, r.Failed, r.Counts)
	}

	// A client outside the targets that reports is listed, not expected.
	v.apply(events.JobStatus{JobID: "j1", ClientID: "other", State: events.StateStarted, Attempt: 1, Runner: events.RunnerService}, now)
	r = v.rollout(now)
	var other *ClientRollout
	for i := range r.Clients {
		if r.Clients[i].Client == "other" {
			other = &r.Clients[i]
		}
	}
	if other == nil || other.Expected || other.State != ClientState(events.StateStarted) {
		t.Fatalf("other: %+v", other)
	}

	// Pending reasons follow the job's window.
	v.offer.Job.OfferAfter = now.Add(time.Minute)
	if c := v.client("got", now); c.Explain(ts) != "pending: offered from "+ts(now.Add(time.Minute)) {
		t.Errorf("before the offer time: %q", c.Explain(ts))
	}
	v.offer.Job.OfferAfter = now.Add(-time.Hour)
	v.offer.Job.MandatoryAfter = nil
	if c := v.client("got", now); c.Explain(ts) != "pending: waiting for the user at the desktop" {
		t.Errorf("optional job: %q", c.Explain(ts))
	}
}

func TestRolloutStatusOrderAndRetries(t *testing.T) {
	now := time.Now()
	v := rolloutFixture(now)
	v.offer.Job.MaxAttempts = 2
	st := func(state events.State, attempt int) events.JobStatus {
		return events.JobStatus{JobID: "j1", ClientID: "got", State: state, Attempt: attempt, MaxAttempts: 2, Runner: events.RunnerService}
	}
	v.apply(st(events.StateFailed, 1), now)
	c := v.client("got", now)
	if c.Done || c.Failed || !strings.Contains(c.Explain(time.Time.String), "attempt 1 of 2, will retry") {
		t.Fatalf("a retryable failure is not the end: %+v %q", c, c.Explain(time.Time.String))
	}
	v.apply(st(events.StateStarted, 2), now)
	v.apply(st(events.StateFailed, 2), now)
	v.apply(st(events.StateStarted, 2), now) // late started: ignored
	v.apply(st(events.StateStarted, 1), now) // older attempt: ignored
	if c := v.client("got", now); c.State != ClientState(events.StateFailed) || !c.Done || !c.Failed || c.Attempt != 2 {
		t.Fatalf("after the last attempt: %+v", c)
	}
}

func TestVerdict(t *testing.T) {
	mk := func(done, failed, clients int) Rollout {
		return Rollout{Clients: make([]ClientRollout, clients), Done: done, Failed: failed}
	}
	cases := []struct {
		name        string
		r           Rollout
		maxFailures int
		want        Verdict
	}{
		{"nothing yet", mk(0, 0, 3), 0, VerdictRunning},
		{"no clients", mk(0, 0, 0), 0, VerdictRunning},
		{"all done", mk(3, 0, 3), 0, VerdictSucceeded},
		{"one failure, none allowed", mk(1, 1, 3), 0, VerdictFailed},
		{"one failure allowed, others running", mk(1, 1, 3), 1, VerdictRunning},
		{"one failure allowed, all done", mk(3, 1, 3), 1, VerdictSucceeded},
		{"negative limit is zero", mk(1, 1, 3), -5, VerdictFailed},
	}
	for _, c := range cases {
		if got := c.r.Verdict(c.maxFailures); got != c.want {
			t.Errorf("%s: %s, want %s", c.name, got, c.want)
		}
	}
}

// TestRolloutPlanStates: a staged rollout shows each client's ring, a
// client whose ring has not opened as pending until its time, the rings'
// states and counts; once halted, the clients that have not run it say
// halted and the verdict is VerdictHalted; a client waiting for a job it
// requires names it.
func TestRolloutPlanStates(t *testing.T) {
	now := time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC)
	v := rolloutFixture(now)
	plan := &events.RolloutPlan{Rings: []events.Ring{{Groups: []string{"pilot"}}, {Percent: 100}}, Soak: events.Duration(time.Hour)}
	v.offer.Job.Rollout = plan
	v.offer.Job.MandatoryAfter = &v.offer.Job.OfferAfter
	v.enrolled["got"] = fleet.Enrollment{Client: "got", Groups: []string{"lab", "pilot"}, Filters: events.ConsumerFilters("got", []string{"lab"}), Delivered: 10}
	v.enrolled["late"] = fleet.Enrollment{Client: "late", Groups: []string{"lab"}, Filters: events.ConsumerFilters("late", []string{"lab"}), Delivered: 10}
	ts := func(t time.Time) string { return t.UTC().Format(time.RFC3339) }
	r := v.rollout(now)
	got, late := clientIn(t, r, "got"), clientIn(t, r, "late")
	if got.Ring != 1 || got.State != ClientPending || got.Detail != "pending: received, due now" {
		t.Fatalf("got (group pilot, ring 1 open): %+v", got)
	}
	opens := v.offer.Job.OfferAfter.Add(time.Hour)
	if late.Ring != 2 || late.State != ClientPending || late.Detail != "pending: ring 2 opens at "+ts(opens) {
		t.Fatalf("late (ring 2 not open): %+v", late)
	}
	if len(r.Rings) != 2 || r.Rings[0].State != RingOpen || r.Rings[1].State != RingWaiting || r.Rings[0].Clients != 1 || r.Rings[1].Clients != len(r.Clients)-1 {
		t.Fatalf("rings %+v", r.Rings)
	}
	if r.Verdict(NoFailureLimit) != VerdictRunning {
		t.Fatalf("verdict %s before the halt", r.Verdict(NoFailureLimit))
	}

	v.applyHalt(&events.JobHalted{JobID: "j1", Reason: "too many failures"}, "controller c1")
	r = v.rollout(now)
	for _, c := range []string{"got", "late"} {
		if cr := clientIn(t, r, c); cr.State != ClientHalted || cr.Detail != "halted: too many failures" {
			t.Fatalf("%s after the halt: %+v", c, cr)
		}
	}
	if cr := clientIn(t, r, "done"); cr.State != ClientState(events.StateSucceeded) {
		t.Fatalf("done after the halt: %+v (it finished before)", cr)
	}
	if cr := clientIn(t, r, "stale"); cr.State != ClientOffline {
		t.Fatalf("stale after the halt: %+v", cr)
	}
	if r.Rings[0].State != RingHalted || r.Rings[1].State != RingHalted || r.HaltedBy != "controller c1" || r.Verdict(NoFailureLimit) != VerdictHalted {
		t.Fatalf("after the halt: rings %+v, by %q, verdict %s", r.Rings, r.HaltedBy, r.Verdict(NoFailureLimit))
	}
	v.applyHalt(nil, "ops")
	if r = v.rollout(now.Add(2 * time.Hour)); r.Halted != nil || r.Rings[1].State != RingOpen || clientIn(t, r, "late").State == ClientHalted {
		t.Fatalf("after the resume and ring 2's time: %+v", r)
	}

	v.offer.Job.Rollout = nil
	v.offer.Job.Requires = []string{"base"}
	v.applyRequired(events.JobStatus{JobID: "base", ClientID: "late", State: events.StateSucceeded, Attempt: 1, MaxAttempts: 1})
	r = v.rollout(now)
	if cr := clientIn(t, r, "got"); cr.WaitsFor != "base" || cr.Detail != "pending: waiting for job base" {
		t.Fatalf("got, base not run there: %+v", cr)
	}
	if cr := clientIn(t, r, "late"); cr.WaitsFor != "" || cr.Detail != "pending: received, due now" {
		t.Fatalf("late, base succeeded there: %+v", cr)
	}
}

func clientIn(t *testing.T, r Rollout, client string) ClientRollout {
	t.Helper()
	for _, c := range r.Clients {
		if c.Client == client {
			return c
		}
	}
	t.Fatalf("no client %s in %+v", client, r.Clients)
	return ClientRollout{}
}

// TestRolloutTimeRules: a due job that requires a maintenance window says
// when the client's next window opens (its own, its group's or every
// client's); a deferral shows as the client's state; a restart after a
// success ends the job, without failing it.
func TestRolloutTimeRules(t *testing.T) {
	now := time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC)
	ts := func(t time.Time) string { return t.UTC().Format(time.RFC3339) }
	v := rolloutFixture(now)
	past := now.Add(-time.Minute)
	v.offer.Job.MandatoryAfter, v.offer.Job.InWindow = &past, true
	if c := v.client("got", now); !strings.Contains(c.Explain(ts), "waiting for maintenance window (none opens") {
		t.Fatalf("no window set: %q", c.Explain(ts))
	}
	nightly, err := events.ParseWindow("daily 22:00-04:00 UTC")
	if err != nil {
		t.Fatal(err)
	}
	v.windows["group.lab"] = events.Windows{nightly}
	if c := v.client("got", now); c.Explain(ts) != "pending: waiting for maintenance window (next: 2026-11-21T22:00:00Z)" {
		t.Fatalf("window closed: %q", c.Explain(ts))
	}
	morning, err := events.ParseWindow("Sat 09:00-12:00 UTC") // 2026-11-21 is a Saturday
	if err != nil {
		t.Fatal(err)
	}
	v.windows["all"] = events.Windows{morning}
	if c := v.client("got", now); c.Explain(ts) != "pending: received, due now" {
		t.Fatalf("window open: %q", c.Explain(ts))
	}
	until := now.Add(4 * time.Hour)
	v.apply(events.JobStatus{JobID: "j1", ClientID: "got", State: events.StateDeferred, Attempt: 1, Runner: events.RunnerDesktop,
		Reason: "deferred by ann", TimeRulesStatus: events.TimeRulesStatus{Deferral: 1, DeferralsMax: 3, DeferredUntil: &until}}, now)
	if c := v.client("got", now); c.State != ClientState(events.StateDeferred) || c.Done || c.Explain(ts) != "deferred by ann" {
		t.Fatalf("deferred: %+v", c)
	}
	exit := 3010
	v.apply(events.JobStatus{JobID: "j1", ClientID: "got", State: events.StateSucceeded, Attempt: 1, ExitCode: &exit, Runner: events.RunnerService,
		TimeRulesStatus: events.TimeRulesStatus{RestartRequired: true}}, now)
	v.apply(events.JobStatus{JobID: "j1", ClientID: "got", State: events.StateRestarted, Attempt: 1, Runner: events.RunnerService}, now)
	if c := v.client("got", now); c.State != ClientState(events.StateRestarted) || !c.Done || c.Failed {
		t.Fatalf("restarted: %+v", c)
	}
}

// TestRolloutSiteClients: a client of a branch site is pending while its
// site answers (its consumer is at the site), and says its site is
// unreachable, since the last heartbeat that reached the hub from the site,
// while the link is down, with or without a status.
func TestRolloutSiteClients(t *testing.T) {
	now := time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC)
	ts := func(t time.Time) string { return t.UTC().Format(time.RFC3339) }
	v := rolloutFixture(now)
	for _, c := range []string{"br-1", "br-2"} {
		v.enrolled[c] = fleet.Enrollment{Client: c, Groups: []string{"lab"}, Filters: events.ConsumerFilters(c, []string{"lab"}), Site: "branch1"}
	}
	v.agents["br-1"] = events.AgentInfo{ClientID: "br-1", LastSeen: now.Add(-2 * time.Minute), Heartbeat: events.Duration(time.Second)}
	v.agents["br-2"] = events.AgentInfo{ClientID: "br-2", LastSeen: now.Add(-time.Minute), Heartbeat: events.Duration(time.Second)}
	v.apply(events.JobStatus{JobID: "j1", ClientID: "br-2", State: events.StateStarted, Attempt: 1, Runner: events.RunnerService}, now)

	v.agents["br-1"] = events.AgentInfo{ClientID: "br-1", LastSeen: now, Heartbeat: events.Duration(time.Second)}
	if c := v.client("br-1", now); c.State != ClientPending || c.Site != "branch1" {
		t.Errorf("reachable site: %s %q, want pending at site branch1", c.State, c.Explain(ts))
	}
	v.agents["br-1"] = events.AgentInfo{ClientID: "br-1", LastSeen: now.Add(-2 * time.Minute), Heartbeat: events.Duration(time.Second)}
	v.unreachable = map[string]bool{"branch1": true}
	want := "site branch1 unreachable since " + ts(now.Add(-time.Minute))
	if c := v.client("br-1", now); c.State != ClientOffline || c.Explain(ts) != want {
		t.Errorf("no status, link down: %s %q, want offline %q", c.State, c.Explain(ts), want)
	}
	if c := v.client("br-2", now); c.State != ClientState(events.StateStarted) || c.Explain(ts) != want {
		t.Errorf("started, link down: %s %q, want started %q", c.State, c.Explain(ts), want)
	}
}
