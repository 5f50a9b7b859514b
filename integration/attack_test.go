package integration_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/pcm-project/pcm/broker/auth"
	"github.com/pcm-project/pcm/events"
	"github.com/pcm-project/pcm/fleet"
	"github.com/pcm-project/pcm/internal/clientview"
	"github.com/pcm-project/pcm/internal/kvread"
	"github.com/pcm-project/pcm/internal/streamread"
	"github.com/pcm-project/pcm/maintenance"
	"github.com/pcm-project/pcm/packages"
	"github.com/pcm-project/pcm/testenv"
)

// The attack suite: every role, holding only its own credentials, makes
// every request it may make with the reply aimed at what it must not touch,
// makes the forbidden requests directly, and tries the attacks found
// against the subject-permission model; an admin then checks that nothing
// of anyone else changed. docs/security.md cites it as the evidence of the
// account boundary.

// attackFixture is a secure broker with two enrolled clients, c1 (group
// g1) and c2 (groups g1, g2), each with a pending offer, a stored status,
// an inventory value and a lock value, a package, and maintenance windows
// for each client, each group and every client.
type attackFixture struct {
	env        *testenv.Broker
	job        map[string]string // client -> its pending job
	statusID   map[string]string // client -> the Nats-Msg-Id of its stored status
	offerMsgID string            // the Nats-Msg-Id of a stored offer
	pkgMeta    string            // the meta subject of the package
	pkgObject  string            // the chunk subject of the package
}

// attackGroups are the groups of the fixture's clients.
var attackGroups = map[string][]string{"c1": {"g1"}, "c2": {"g1", "g2"}}

// attackWindowKeys are the keys of PCM_WINDOWS the fixture sets.
var attackWindowKeys = []string{"client.c1", "client.c2", "group.g1", "group.g2", "all"}

func newAttackFixture(t *testing.T) *attackFixture {
	t.Helper()
	env := testenv.StartBroker(t, testenv.WithAuth())
	f := &attackFixture{env: env, job: map[string]string{}, statusID: map[string]string{}}
	ctx := t.Context()
	testenv.EnrollClient(t, env.JS, "c1", attackGroups["c1"], fleet.ConsumerOptions{})
	testenv.EnrollClient(t, env.JS, "c2", attackGroups["c2"], fleet.ConsumerOptions{})
	w, err := events.ParseWindow("daily 01:00-02:00 UTC")
	if err != nil {
		t.Fatal(err)
	}
	for _, key := range attackWindowKeys {
		tg, _ := events.WindowTarget(key)
		if _, err := maintenance.New(env.JS).Set(ctx, tg, []events.Window{w}, "admin"); err != nil {
			t.Fatal(err)
		}
	}
	p := newPublisher(t, env.JS)
	later := time.Now().Add(time.Hour).UTC()
	for _, c := range []string{"c1", "c2"} {
		j := job([]string{"sh", "-c", "echo must-not-run"}, toClient(c))
		j.MandatoryAfter = &later
		f.job[c] = publish(t, p, j)
		f.statusID[c] = "fixture-status-" + c
		m := nats.NewMsg(events.StatusSubject(c, f.job[c]))
		m.Header.Set(jetstream.MsgIDHeader, f.statusID[c])
		m.Data = []byte(`{"fixture":"status of ` + c + `"}`)
		if _, err := env.JS.PublishMsg(ctx, m); err != nil {
			t.Fatal(err)
		}
		putAgentInfo(t, env.JS, events.AgentInfo{ClientID: c, Host: c, OS: "linux", Arch: "amd64", Version: "dev",
			LastSeen: time.Now().UTC(), Heartbeat: events.Duration(time.Hour)})
		locks, err := env.JS.KeyValue(ctx, events.BucketLocks)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := locks.Put(ctx, c, []byte(`{"holder":"service","pid":1}`)); err != nil {
			t.Fatal(err)
		}
	}
	f.offerMsgID = "offer." + f.job["c1"] + ".client.c1"
	file := filepath.Join(t.TempDir(), "tool.sh")
	if err := os.WriteFile(file, []byte("#!/bin/sh\necho tool\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	info, err := packages.NewStore(env.JS).Push(ctx, file, packages.PushOptions{Name: "tool", Version: "1.0"})
	if err != nil {
		t.Fatal(err)
	}
	obs, err := env.JS.ObjectStore(ctx, events.BucketPackages)
	if err != nil {
		t.Fatal(err)
	}
	oi, err := obs.GetInfo(ctx, info.Spec())
	if err != nil {
		t.Fatal(err)
	}
	f.pkgMeta = "$O." + events.BucketPackages + ".M." + base64.URLEncoding.EncodeToString([]byte(info.Spec()))
	f.pkgObject = "$O." + events.BucketPackages + ".C." + oi.NUID
	return f
}

// snapshot is what an admin sees of everything the attacks aim at: every
// stream's state and configuration, every consumer's configuration and
// progress, the clients' inventory and lock values, and their accounts.
func (f *attackFixture) snapshot(t *testing.T) map[string]string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	js := f.env.JS
	out := map[string]string{}
	names := js.StreamNames(ctx)
	var streams []string
	for n := range names.Name() {
		streams = append(streams, n)
	}
	if err := names.Err(); err != nil {
		t.Fatal(err)
	}
	sort.Strings(streams)
	out["streams"] = strings.Join(streams, " ")
	for _, name := range streams {
		s, err := js.Stream(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		si := s.CachedInfo()
		out["stream "+name] = fmt.Sprintf("msgs %d first %d last %d deleted %d", si.State.Msgs, si.State.FirstSeq, si.State.LastSeq, si.State.NumDeleted)
		cfg, _ := json.Marshal(si.Config)
		out["stream config "+name] = string(cfg)
		var consumers []string
		for ci := range s.ListConsumers(ctx).Info() {
			consumers = append(consumers, ci.Name)
			cc, _ := json.Marshal(ci.Config)
			out["consumer config "+name+"/"+ci.Name] = string(cc)
			out["consumer progress "+name+"/"+ci.Name] = fmt.Sprintf("delivered %d ack floor %d ack pending %d redelivered %d",
				ci.Delivered.Stream, ci.AckFloor.Stream, ci.NumAckPending, ci.NumRedelivered)
			out["consumer backlog "+name+"/"+ci.Name] = fmt.Sprintf("pending %d", ci.NumPending)
		}
		sort.Strings(consumers)
		out["consumers "+name] = strings.Join(consumers, " ")
	}
	for _, bucket := range []string{events.BucketAgents, events.BucketLocks} {
		kv, err := js.KeyValue(ctx, bucket)
		if err != nil {
			t.Fatal(err)
		}
		keys, err := kv.Keys(ctx)
		if err != nil && !errors.Is(err, jetstream.ErrNoKeysFound) {
			t.Fatal(err)
		}
		sort.Strings(keys)
		out["kv keys "+bucket] = strings.Join(keys, " ")
		for _, c := range []string{"c1", "c2"} {
			e, err := kv.Get(ctx, c)
			switch {
			case errors.Is(err, jetstream.ErrKeyNotFound):
				out["kv "+bucket+"/"+c] = "none"
			case err != nil:
				t.Fatal(err)
			default:
				out["kv "+bucket+"/"+c] = fmt.Sprintf("rev %d %s", e.Revision(), e.Value())
			}
		}
	}
	// The halt records of the clients' jobs: only the pcm account stores
	// one, so no attack may (a publisher, which may change PCM_JOBS by
	// publishing jobs, included).
	jobs, err := js.Stream(ctx, events.StreamJobs)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []string{"c1", "c2"} {
		m, err := jobs.GetLastMsgForSubject(ctx, events.HaltSubject(f.job[c]))
		switch {
		case errors.Is(err, jetstream.ErrMsgNotFound):
			out["halt of the job of "+c] = "none"
		case err != nil:
			t.Fatal(err)
		default:
			out["halt of the job of "+c] = fmt.Sprintf("seq %d", m.Sequence)
		}
	}
	windows, err := js.KeyValue(ctx, events.BucketWindows)
	if err != nil {
		t.Fatal(err)
	}
	for _, key := range attackWindowKeys {
		e, err := windows.Get(ctx, key)
		if err != nil {
			t.Fatalf("window %s: %v", key, err)
		}
		out["kv "+events.BucketWindows+"/"+key] = fmt.Sprintf("rev %d %s", e.Revision(), e.Value())
	}
	accts := f.env.Sec.Accounts(t)
	for _, c := range []string{"c1", "c2"} {
		ac, err := accts.Lookup(ctx, auth.Principal{Kind: auth.KindClient, Name: c})
		if err != nil || ac == nil {
			t.Fatalf("account of %s: %v", c, err)
		}
		b, _ := json.Marshal(ac)
		out["account "+c] = string(b)
	}
	return out
}

// sameExcept fails the test for every key of before that after changed,
// but those listed (the attacker's own state, which its own requests may
// change).
func sameExcept(t *testing.T, before, after map[string]string, own ...string) {
	t.Helper()
	for k, v := range before {
		if slices.Contains(own, k) {
			continue
		}
		if after[k] != v {
			t.Errorf("changed: %s\n  before: %s\n  after:  %s", k, v, after[k])
		}
	}
	for k, v := range after {
		if _, ok := before[k]; !ok {
			t.Errorf("appeared: %s: %s", k, v)
		}
	}
}

// attacker is a connection as one user that records what the broker
// refused it.
type attacker struct {
	u  auth.User
	nc *nats.Conn

	mu      sync.Mutex
	refused []string
}

func dialAttacker(t *testing.T, env *testenv.Broker, u auth.User) *attacker {
	t.Helper()
	a := &attacker{u: u}
	nc, err := nats.Connect(env.URL, append(testenv.ClientOptions(t, env.URL, u),
		nats.Name("attacker "+u.UserName()),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			a.mu.Lock()
			a.refused = append(a.refused, err.Error())
			a.mu.Unlock()
		}))...)
	if err != nil {
		t.Fatalf("connecting as %s: %v", u.UserName(), err)
	}
	t.Cleanup(nc.Close)
	a.nc = nc
	return a
}

// refusals are the distinct refusals the broker reported to a.
func (a *attacker) refusals() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := slices.Clone(a.refused)
	slices.Sort(out)
	return slices.Compact(out)
}

// req is one request a role may make, made harmless to the attacker's own
// state where it can be (a duplicate message id, an expected revision that
// cannot hold).
type req struct {
	subject string
	body    string
	header  map[string]string
	// unanswered: nothing answers it (a word to its own account's other
	// users, such as a desktop session's presence), so it has no canary.
	unanswered bool
}

func (r req) msg(reply string) *nats.Msg {
	m := nats.NewMsg(r.subject)
	m.Reply = reply
	m.Data = []byte(r.body)
	for k, v := range r.header {
		m.Header.Set(k, v)
	}
	return m
}

// requestsOf are the requests u may make, one or more per subject of its
// grants (checked by TestAttackRequestsCoverGrants).
func (f *attackFixture) requestsOf(u auth.User) []req {
	own := u.Name
	readers := func() []req {
		var rs []req
		for _, s := range []string{events.StreamJobs, events.StreamStatus, "KV_" + events.BucketAgents, "KV_" + events.BucketLocks, "OBJ_" + events.BucketPackages,
			"KV_" + events.BucketWindows, "KV_" + events.BucketReleases} {
			rs = append(rs,
				req{subject: "$JS.API.STREAM.INFO." + s},
				req{subject: "$JS.API.DIRECT.GET." + s, body: `{"seq":1,"batch":3}`},
				req{subject: "$JS.API.DIRECT.GET." + s + "." + map[string]string{
					events.StreamJobs: "pcm.jobs.client.c2", events.StreamStatus: "pcm.status.c2." + f.job["c2"],
					"KV_" + events.BucketAgents: "$KV.PCM_AGENTS.c2", "KV_" + events.BucketLocks: "$KV.PCM_LOCKS.c2",
					"OBJ_" + events.BucketPackages: f.pkgMeta, "KV_" + events.BucketWindows: "$KV.PCM_WINDOWS.client.c2",
					"KV_" + events.BucketReleases: "$KV.PCM_RELEASES.channel.stable"}[s]})
		}
		return append(rs,
			req{subject: "$JS.API.CONSUMER.LIST." + events.StreamJobs, body: `{"offset":0}`},
			req{subject: "$JS.API.CONSUMER.NAMES." + events.StreamJobs, body: `{"offset":0}`},
			req{subject: "$JS.API.CONSUMER.INFO." + events.StreamJobs + ".agent-c2"})
	}
	wrongRev := map[string]string{"Nats-Expected-Last-Subject-Sequence": "999999"}
	client := []req{
		{subject: "$JS.API.CONSUMER.INFO.PCM_JOBS.agent-" + own},
		{subject: events.StatusSubject(own, f.job[own]), body: "duplicate", header: map[string]string{jetstream.MsgIDHeader: f.statusID[own]}},
		{subject: "$JS.API.DIRECT.GET.PCM_STATUS." + events.StatusSubject(own, f.job[own])},
		{subject: "$JS.API.DIRECT.GET.PCM_JOBS.pcm.jobs.cancel." + f.job[own]},
		{subject: "$JS.API.DIRECT.GET.PCM_JOBS." + events.HaltSubject(f.job[own])},
		{subject: "$KV.PCM_LOCKS." + own, body: `{"holder":"service"}`, header: wrongRev},
		{subject: "$JS.API.DIRECT.GET.KV_PCM_LOCKS.$KV.PCM_LOCKS." + own},
		{subject: "$JS.API.DIRECT.GET.OBJ_PCM_PACKAGES", body: `{"last_by_subj":"` + f.pkgMeta + `"}`},
		{subject: "$JS.API.DIRECT.GET.OBJ_PCM_PACKAGES", body: `{"seq":1,"batch":3,"next_by_subj":"` + f.pkgObject + `"}`},
	}
	switch u.Role {
	case auth.RoleAgent:
		return append(client,
			req{subject: "$JS.API.CONSUMER.MSG.NEXT.PCM_JOBS.agent-" + own, body: `{"batch":1,"no_wait":true}`},
			req{subject: "$JS.ACK.PCM_JOBS.agent-" + own + ".1.999999.999999.0.0", body: "+WPI"},
			req{subject: "$JS.ACK.PCM_JOBS.agent-" + own + ".1.999999.999999.0.0", body: `+NXT {"batch":1,"no_wait":true}`},
			req{subject: "$KV.PCM_AGENTS." + own, body: `{"client_id":"` + own + `"}`, header: wrongRev},
			req{subject: "$JS.API.DIRECT.GET.KV_PCM_AGENTS.$KV.PCM_AGENTS." + own},
			req{subject: "$JS.API.DIRECT.GET.KV_PCM_RELEASES.$KV.PCM_RELEASES.channel.stable"},
			req{subject: "pcm.view." + own + ".windows", body: `{"max":2}`})
	case auth.RoleDesktop:
		return append(client,
			req{subject: "pcm.view." + own + ".offers", body: `{"max":2}`},
			req{subject: "pcm.view." + own + ".statuses", body: `{"max":2}`},
			req{subject: "pcm.view." + own + ".windows", body: `{"max":2}`},
			req{subject: events.SessionSubject(own), body: "attacker", unanswered: true})
	case auth.RolePublisher:
		return append(readers(),
			req{subject: "pcm.jobs.client.c1", body: "duplicate", header: map[string]string{jetstream.MsgIDHeader: f.offerMsgID}},
			req{subject: "pcm.jobs.group.g1", body: "duplicate", header: map[string]string{jetstream.MsgIDHeader: f.offerMsgID}},
			req{subject: "pcm.jobs.all", body: "duplicate", header: map[string]string{jetstream.MsgIDHeader: f.offerMsgID}},
			req{subject: events.CancelSubject(f.job["c1"]), body: "duplicate", header: map[string]string{jetstream.MsgIDHeader: f.offerMsgID}},
			req{subject: f.pkgObject, body: "chunk", header: wrongRev},
			req{subject: "$JS.API.STREAM.PURGE.OBJ_PCM_PACKAGES", body: `{"filter":"$O.PCM_PACKAGES.C.nothing-here"}`},
			req{subject: "$KV.PCM_RELEASES.channel.stable", body: "not a manifest", header: wrongRev})
	case auth.RoleAuditor:
		return readers()
	case auth.RoleSite:
		// A site's credentials connect only as a leaf node: the site
		// attack (TestSiteAttackLeafCredentials) makes these across a
		// leaf connection of its own.
		var rs []req
		for _, api := range []string{"$JS.API.", "$JS.hub.API."} {
			for _, s := range auth.SiteReadStreams {
				rs = append(rs, req{subject: api + "STREAM.INFO." + s}, req{subject: api + "DIRECT.GET." + s, body: `{"seq":1}`})
			}
		}
		// Forwarding a client's status and inventory: its account imports
		// them only for the clients enrolled at the site.
		return append(rs,
			req{subject: auth.SiteStatusPrefix + "c1." + f.job["c1"], body: "duplicate", header: map[string]string{jetstream.MsgIDHeader: f.statusID["c1"]}},
			req{subject: auth.SiteAgentsPrefix + "c1", body: `{"client_id":"c1"}`, header: wrongRev})
	}
	return nil
}

// targetsOf are the reply subjects the attacks aim at: the JetStream API
// of the pcm account (purge, delete, consumer create, update and delete),
// what belongs to victim (its status, lock, inventory and job subjects,
// its acks), and the attacker's own subjects (to chain into its own
// imports).
func (f *attackFixture) targetsOf(attacker, victim string) []string {
	ts := []string{
		"$JS.API.STREAM.PURGE." + events.StreamStatus,
		"$JS.API.STREAM.PURGE." + events.StreamJobs,
		"$JS.API.STREAM.DELETE." + events.StreamJobs,
		"$JS.API.STREAM.DELETE.KV_" + events.BucketLocks,
		"$JS.API.STREAM.MSG.DELETE." + events.StreamStatus,
		"$JS.API.STREAM.UPDATE." + events.StreamStatus,
		"$JS.API.CONSUMER.DELETE.PCM_JOBS.agent-" + victim,
		"$JS.API.CONSUMER.CREATE.PCM_JOBS.agent-" + victim,
		"$JS.API.CONSUMER.CREATE.PCM_JOBS.agent-" + victim + ".pcm.jobs.all",
		"$JS.API.CONSUMER.DURABLE.CREATE.PCM_JOBS.spy",
		"$JS.API.CONSUMER.CREATE.PCM_JOBS.spy",
		"$JS.API.CONSUMER.CREATE.KV_" + events.BucketLocks + ".spy",
		"$JS.API.CONSUMER.CREATE.OBJ_" + events.BucketPackages + ".spy",
		"$JS.API.CONSUMER.CREATE.KV_" + events.BucketWindows + ".spy",
		"$JS.API.STREAM.PURGE.KV_" + events.BucketWindows,
		"$KV." + events.BucketWindows + ".client." + victim,
		"$KV." + events.BucketWindows + ".all",
		events.StatusSubject(victim, f.job[victim]),
		"$KV." + events.BucketLocks + "." + victim,
		"$KV." + events.BucketAgents + "." + victim,
		"pcm.jobs.client." + victim,
		"pcm.jobs.all",
		events.HaltSubject(f.job[victim]),
		"$KV." + events.BucketReleases + ".channel.stable",
		events.ReleaseHintSubject("stable"),
	}
	if attacker != "" {
		ts = append(ts, events.StatusSubject(attacker, f.job[attacker]), "$KV."+events.BucketLocks+"."+attacker, "$KV."+events.BucketAgents+"."+attacker)
	}
	return ts
}

// redirect sends every request of a with its reply aimed at every
// target, then the same requests with its own inbox as reply (canaries):
// each canary must be answered, so the broker did answer the redirected
// copies sent before it.
func (a *attacker) redirect(t *testing.T, reqs []req, targets []string) {
	t.Helper()
	for _, r := range reqs {
		for _, tgt := range targets {
			if err := a.nc.PublishMsg(r.msg(tgt)); err != nil {
				t.Fatalf("%s: %s with reply %s: %v", a.u.UserName(), r.subject, tgt, err)
			}
		}
	}
	for _, r := range reqs {
		if r.unanswered {
			continue
		}
		inbox := a.nc.NewRespInbox()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_, err := a.nc.RequestMsgWithContext(ctx, r.msg(inbox))
		cancel()
		if err != nil {
			t.Errorf("%s: the canary %s got no answer (%v): the redirected copies may not have been tried", a.u.UserName(), r.subject, err)
		}
	}
}

// direct publishes to every target, with and without a reply, and
// subscribes to the victim's subjects: the broker must refuse each (the
// user's permissions) or nothing in the pcm account must hear it.
func (a *attacker) direct(t *testing.T, targets []string, subs []string) {
	t.Helper()
	for _, tgt := range targets {
		_ = a.nc.Publish(tgt, []byte(`{"config":{"durable_name":"spy","deliver_subject":"spy.x","filter_subjects":["pcm.>"]}}`))
		_ = a.nc.PublishRequest(tgt, a.nc.NewRespInbox(), []byte(`{}`))
	}
	for _, s := range subs {
		_, _ = a.nc.SubscribeSync(s)
	}
	if err := a.nc.Flush(); err != nil && !errors.Is(err, nats.ErrConnectionClosed) {
		t.Logf("%s: flush after direct attempts: %v", a.u.UserName(), err)
	}
}

// TestAttacks runs the attack suite against every role, and two clients
// against each other both ways.
func TestAttacks(t *testing.T) {
	testenv.SameInBothModes(t)
	f := newAttackFixture(t)
	before := f.snapshot(t)
	victimSubs := func(victim string) []string {
		return []string{">", "pcm.status.>", "pcm.status." + victim + ".*", "pcm.jobs.>", "$KV.>", "$KV.PCM_LOCKS." + victim,
			"_INBOX.>", "_INBOX_agent-" + victim + ".>", "$JS.API.>", "$JS.ACK.>"}
	}
	// What a client's principals may change of their own client, even by
	// aiming the answers to their own requests at their own account's
	// imports (docs/security.md): its consumer's progress, its lock and
	// its inventory (and the bucket streams those keys live in).
	ownClient := func(c string) []string {
		return []string{"consumer progress PCM_JOBS/agent-" + c, "consumer backlog PCM_JOBS/agent-" + c,
			"kv " + events.BucketAgents + "/" + c, "kv " + events.BucketLocks + "/" + c,
			"stream KV_" + events.BucketAgents, "stream KV_" + events.BucketLocks}
	}
	for _, tc := range []struct {
		u      auth.User
		victim string
		own    []string // the attacker's own state its requests may change
	}{
		{auth.User{Role: auth.RoleAgent, Name: "c1"}, "c2", ownClient("c1")},
		{auth.User{Role: auth.RoleAgent, Name: "c2"}, "c1", ownClient("c2")},
		{auth.User{Role: auth.RoleDesktop, Name: "c1"}, "c2", ownClient("c1")},
		{auth.User{Role: auth.RoleDesktop, Name: "c2"}, "c1", ownClient("c2")},
		// A publisher publishes jobs and releases: the answers it aims at
		// job subjects are jobs it published (unsigned: agents with trusted
		// keys refuse them), which clients' consumers then hold; those it
		// aims at a release channel are manifests it wrote (unsigned:
		// agents refuse them).
		{auth.User{Role: auth.RolePublisher, Name: "ci"}, "c2", []string{"stream " + events.StreamJobs, "stream KV_" + events.BucketReleases,
			"consumer backlog PCM_JOBS/agent-c1", "consumer backlog PCM_JOBS/agent-c2"}},
		{auth.User{Role: auth.RoleAuditor, Name: "audit"}, "c2", nil},
	} {
		t.Run(tc.u.UserName(), func(t *testing.T) {
			a := dialAttacker(t, f.env, tc.u)
			own := ""
			if tc.u.Role.Kind() == auth.KindClient {
				own = tc.u.Name
			}
			a.redirect(t, f.requestsOf(tc.u), f.targetsOf(own, tc.victim))
			a.direct(t, f.targetsOf("", tc.victim), victimSubs(tc.victim))
			f.knownAttacks(t, a, tc.victim)
			after := f.snapshot(t)
			sameExcept(t, before, after, tc.own...)
			if t.Failed() {
				t.Logf("what the broker refused %s: %q", tc.u.UserName(), a.refusals())
			}
			before = after
		})
	}
}

// knownAttacks are the attacks found against the subject-permission model
// (issue 12's table), each tried as a's role can.
func (f *attackFixture) knownAttacks(t *testing.T, a *attacker, victim string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	js, err := jetstream.New(a.nc)
	if err != nil {
		t.Fatal(err)
	}
	// Each try waits for the broker's answer or 500 ms (a refused request
	// gets none): they run side by side, and all have ended when
	// knownAttacks returns.
	var tries sync.WaitGroup
	defer tries.Wait()
	try := func(what string, fn func(context.Context) error) {
		tries.Go(func() {
			c, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
			defer cancel()
			if err := fn(c); err == nil {
				t.Errorf("%s: %s succeeded", a.u.UserName(), what)
			}
		})
	}
	// A push consumer delivering every offer and status to the attacker.
	try("creating a spy push consumer", func(c context.Context) error {
		_, err := js.CreateConsumer(c, events.StreamJobs, jetstream.ConsumerConfig{Durable: "spy", FilterSubjects: []string{"pcm.>"}})
		return err
	})
	try("creating a durable consumer on the package store", func(c context.Context) error {
		_, err := js.CreateConsumer(c, "OBJ_"+events.BucketPackages, jetstream.ConsumerConfig{Durable: "spy"})
		return err
	})
	try("creating a durable consumer on the lock bucket", func(c context.Context) error {
		_, err := js.CreateConsumer(c, "KV_"+events.BucketLocks, jetstream.ConsumerConfig{Durable: "spy"})
		return err
	})
	try("re-filtering the victim's consumer", func(c context.Context) error {
		_, err := js.UpdateConsumer(c, events.StreamJobs, jetstream.ConsumerConfig{Durable: "agent-" + victim, FilterSubjects: []string{"pcm.jobs.none"}, AckPolicy: jetstream.AckExplicitPolicy})
		return err
	})
	try("deleting the victim's consumer", func(c context.Context) error { return js.DeleteConsumer(c, events.StreamJobs, "agent-"+victim) })
	try("deleting the jobs stream", func(c context.Context) error { return js.DeleteStream(c, events.StreamJobs) })
	try("purging the status stream", func(c context.Context) error {
		s, err := js.Stream(c, events.StreamStatus)
		if err != nil {
			return err
		}
		return s.Purge(c)
	})
	try("forging a succeeded status of the victim's pending job", func(c context.Context) error {
		_, err := js.Publish(c, events.StatusSubject(victim, f.job[victim]), []byte(`{"state":"succeeded"}`))
		return err
	})
	try("taking the victim's lock", func(c context.Context) error {
		_, err := js.Publish(c, "$KV."+events.BucketLocks+"."+victim, []byte(`{"holder":"service","pid":666}`))
		return err
	})
	try("overwriting the victim's inventory", func(c context.Context) error {
		_, err := js.Publish(c, "$KV."+events.BucketAgents+"."+victim, []byte(`{"client_id":"`+victim+`"}`))
		return err
	})
	// Only admins write maintenance windows: no role may open a window on
	// the victim, on every client, or on its own client.
	for _, key := range []string{"client." + victim, "group.g1", "all", "client." + a.u.Name} {
		try("writing the maintenance window "+key, func(c context.Context) error {
			_, err := js.Publish(c, "$KV."+events.BucketWindows+"."+key, []byte(`{"windows":[{"days":["Mon"],"start":"00:00","end":"23:59","zone":"UTC"}]}`))
			return err
		})
	}
	try("purging the maintenance windows", func(c context.Context) error {
		s, err := js.Stream(c, "KV_"+events.BucketWindows)
		if err != nil {
			return err
		}
		return s.Purge(c)
	})
	if a.u.Role != auth.RolePublisher {
		try("injecting an unsigned job for the victim", func(c context.Context) error {
			_, err := js.Publish(c, "pcm.jobs.client."+victim, []byte(`{"specversion":"1.0"}`))
			return err
		})
	}
	if a.u.Role.Kind() == auth.KindClient {
		// Reading the other client's offers: through the view, and by
		// sequence with a direct get (no filter in the request subject).
		// The view answers its own client at once; for another it stays
		// silent, so the scan ends at its deadline: 2 s is plenty for an
		// answer that should not come.
		seen := 0
		vctx, vcancel := context.WithTimeout(ctx, 2*time.Second)
		defer vcancel()
		err := clientview.Scan(vctx, a.nc, victim, clientview.Offers, func(streamread.Msg) error { seen++; return nil })
		if err == nil || seen > 0 {
			t.Errorf("%s: read %d of %s's offers through the view (%v)", a.u.UserName(), seen, victim, err)
		}
		// Reading the other client's maintenance windows: through the
		// view, and by direct gets on the bucket; its own view holds its
		// own key, its groups' and every client's, nothing else.
		seen = 0
		wctx, wcancel := context.WithTimeout(ctx, 2*time.Second)
		err = clientview.Scan(wctx, a.nc, victim, clientview.Windows, func(streamread.Msg) error { seen++; return nil })
		wcancel()
		if err == nil || seen > 0 {
			t.Errorf("%s: read %d of %s's maintenance windows through the view (%v)", a.u.UserName(), seen, victim, err)
		}
		var keys []string
		octx, ocancel := context.WithTimeout(context.Background(), 10*time.Second)
		err = clientview.Scan(octx, a.nc, a.u.Name, clientview.Windows, func(m streamread.Msg) error {
			keys = append(keys, kvread.EntryOf(events.BucketWindows, m).Key)
			return nil
		})
		ocancel()
		want := events.WindowKeysOf(a.u.Name, attackGroups[a.u.Name])
		slices.Sort(keys)
		slices.Sort(want)
		if err != nil || !slices.Equal(keys, want) {
			t.Errorf("%s: its own view of the maintenance windows holds %v (%v), want %v", a.u.UserName(), keys, err, want)
		}
		for _, body := range []string{`{"seq":1}`, `{"last_by_subj":"$KV.PCM_WINDOWS.client.` + victim + `"}`} {
			c, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
			m, err := a.nc.RequestWithContext(c, "$JS.API.DIRECT.GET.KV_"+events.BucketWindows, []byte(body))
			cancel()
			if err == nil && len(m.Data) > 0 {
				t.Errorf("%s: read a maintenance window by a direct get %s: %q", a.u.UserName(), body, m.Data)
			}
		}
		for _, body := range []string{`{"seq":1}`, `{"seq":1,"batch":10}`, `{"last_by_subj":"pcm.jobs.client.` + victim + `"}`} {
			try("reading an offer by a direct get "+body, func(c context.Context) error {
				m, err := a.nc.RequestWithContext(c, "$JS.API.DIRECT.GET."+events.StreamJobs, []byte(body))
				if err == nil && len(m.Data) == 0 {
					return errors.New("an empty answer")
				}
				return err
			})
		}
	}
	// The v2-shaped ack subject whose tokens read as the victim's consumer:
	// a +NXT there would pull the victim's offers to the attacker.
	inbox := a.nc.NewRespInbox()
	got, err := a.nc.SubscribeSync(inbox)
	if err != nil {
		t.Fatal(err)
	}
	own := a.u.Name
	for _, s := range []string{
		"$JS.ACK.PCM_JOBS.agent-" + victim + ".PCM_JOBS.agent-" + own + ".1.1.1",
		"$JS.ACK.PCM_JOBS.agent-" + victim + ".1.1.1.0.0",
		"$JS.ACK._.x.PCM_JOBS.agent-" + victim + ".1.1.1.0.0.x",
	} {
		_ = a.nc.PublishRequest(s, inbox, []byte(`+NXT {"batch":5,"no_wait":true}`))
	}
	_ = a.nc.Flush()
	if m, err := got.NextMsg(time.Second); err == nil && len(m.Data) > 0 && m.Header.Get("Status") == "" {
		t.Errorf("%s: pulled one of %s's offers through an ack subject: %q", a.u.UserName(), victim, m.Data)
	}
	// 200,000 subscriptions: the account's and the user's limits stop them.
	if a.u.Role != auth.RoleAdmin {
		var subs []*nats.Subscription
		for i := 0; i < 5000; i++ {
			s, err := a.nc.SubscribeSync(a.nc.NewRespInbox())
			if err != nil {
				break
			}
			subs = append(subs, s)
		}
		_ = a.nc.Flush()
		testenv.WaitFor(t, 5*time.Second, "the broker to refuse subscriptions beyond the limit", func() bool {
			a.mu.Lock()
			defer a.mu.Unlock()
			for _, r := range a.refused {
				if strings.Contains(strings.ToLower(r), "maximum subscriptions") {
					return true
				}
			}
			return !a.nc.IsConnected()
		})
		for _, s := range subs {
			_ = s.Unsubscribe()
		}
	}
}

// TestAttackRequestsCoverGrants: the attack suite makes a request on every
// subject each role may publish to, so a grant added later is attacked too.
func TestAttackRequestsCoverGrants(t *testing.T) {
	testenv.SameInBothModes(t)
	f := &attackFixture{job: map[string]string{"c1": "J1", "c2": "J2"}, statusID: map[string]string{"c1": "s1", "c2": "s2"},
		pkgMeta: "$O.PCM_PACKAGES.M.dG9vbEAxLjA=", pkgObject: "$O.PCM_PACKAGES.C.x"}
	for _, u := range []auth.User{{Role: auth.RoleAgent, Name: "c1"}, {Role: auth.RoleDesktop, Name: "c1"},
		{Role: auth.RolePublisher, Name: "ci"}, {Role: auth.RoleAuditor, Name: "audit"}, {Role: auth.RoleSite, Name: "branch1"}} {
		gs, err := auth.Grants(u)
		if err != nil {
			t.Fatal(err)
		}
		reqs := f.requestsOf(u)
		for _, g := range gs {
			if g.Sub {
				continue
			}
			covered := slices.ContainsFunc(reqs, func(r req) bool {
				return jwt.Subject(r.subject).IsContainedIn(jwt.Subject(g.Subject))
			})
			if !covered {
				t.Errorf("%s may publish to %q, which no request of the attack suite uses", u.UserName(), g.Subject)
			}
		}
	}
}

// TestDesktopCannotSkipBackgroundJobs: a user holding its client's desktop
// credentials reports a job done before the service runs it. For a job the
// desktop may run, the service believes it (the desktop's word); for a
// background job, which only the service runs, it does not: the job runs
// anyway, as the next attempt.
func TestDesktopCannotSkipBackgroundJobs(t *testing.T) {
	testenv.SameInBothModes(t)
	env := testenv.StartBroker(t, testenv.WithAuth())
	testenv.EnrollClient(t, env.JS, "c1", nil, fleet.ConsumerOptions{AckWait: testAckWait})
	p := newPublisher(t, env.JS)
	dir := t.TempDir()
	bgMarker, optMarker := filepath.Join(dir, "bg"), filepath.Join(dir, "opt")
	bg := job([]string{"sh", "-c", "echo ran >> " + bgMarker}, toClient("c1"))
	bg.Command.Background = true
	bgID := publish(t, p, bg)
	opt := job([]string{"sh", "-c", "echo ran >> " + optMarker}, toClient("c1"))
	opt.MandatoryAfter = nil
	opt.Command.Automated = false
	optID := publish(t, p, opt)

	_, js := env.ConnectAs(t, auth.User{Role: auth.RoleDesktop, Name: "c1"})
	for _, id := range []string{bgID, optID} {
		ev, err := events.NewJobStatus(events.JobStatus{JobID: id, ClientID: "c1", Host: "ws", State: events.StateSucceeded,
			Attempt: 1, MaxAttempts: 1, Runner: events.RunnerDesktop, User: "mallory"})
		if err != nil {
			t.Fatal(err)
		}
		m, err := events.NewMsg(events.StatusSubject("c1", id), ev, ev.ID())
		if err != nil {
			t.Fatal(err)
		}
		if _, err := js.PublishMsg(t.Context(), m); err != nil {
			t.Fatalf("the desktop reporting its client's status: %v", err)
		}
	}
	startAgent(t, env.URL, "c1", filepath.Join(dir, "state")).waitReady(t)
	sts := waitFinalBy(t, env.JS, "c1", bgID, events.RunnerService, 20*time.Second)
	if markerLines(t, bgMarker) != 1 {
		t.Fatalf("the background job ran %d times, want once despite the desktop's status", markerLines(t, bgMarker))
	}
	t.Logf("background job: %d statuses, the service's final at attempt %d", len(sts), finals(sts)[len(finals(sts))-1].Attempt)
	waitAcked(t, env.JS, "c1", 20*time.Second)
	if _, err := os.Stat(optMarker); err == nil {
		t.Fatal("the optional job ran although its desktop reported it done")
	}
}

// waitFinalBy waits for a final status of job on client reported by runner.
func waitFinalBy(t *testing.T, js jetstream.JetStream, client, job string, runner events.Runner, timeout time.Duration) []events.JobStatus {
	t.Helper()
	var sts []events.JobStatus
	testenv.WaitFor(t, timeout, "a final status of "+job+" by the "+string(runner), func() bool {
		sts = readStatuses(t, js, client, job)
		for _, st := range finals(sts) {
			if st.Runner == runner {
				return true
			}
		}
		return false
	})
	return sts
}
