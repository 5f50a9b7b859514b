package integration_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/pcm-project/pcm/broker/auth"
	"github.com/pcm-project/pcm/events"
	"github.com/pcm-project/pcm/internal/streamread"
	"github.com/pcm-project/pcm/testenv"
)

// heard collects the subjects a subscription hears.
type heard struct {
	mu   sync.Mutex
	subs []string
}

func listen(t *testing.T, nc *nats.Conn, subject string) *heard {
	t.Helper()
	h := &heard{}
	if _, err := nc.Subscribe(subject, func(m *nats.Msg) {
		h.mu.Lock()
		h.subs = append(h.subs, m.Subject)
		h.mu.Unlock()
	}); err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	return h
}

func (h *heard) got() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]string(nil), h.subs...)
}

// TestStatusLiveOnSecureBroker: on a broker with accounts, what other
// principals store through their service imports (an agent's status and
// inventory, a publisher's job) is heard live by the auditors and
// publishers that follow it, and by the desktops of the clients a job
// targets only: a Follower of PCM_STATUS as an auditor delivers a new status
// at once, not at its resync (an hour here).
func TestStatusLiveOnSecureBroker(t *testing.T) {
	env := testenv.StartBroker(t, testenv.WithAuth())
	enroll(t, env.JS, "lf1", "lab")
	enroll(t, env.JS, "lf2")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	anc, ajs := env.ConnectAs(t, auth.User{Role: auth.RoleAuditor, Name: "live"})
	f, err := streamread.Follow(ctx, ajs, events.StreamStatus, streamread.FollowOptions{
		Subjects: events.StatusStreamSubjects(), Resync: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Stop()
	// The history, then the read that follows it shortly (for a message
	// stored as the Follower subscribed): after these, only a notice or
	// the resync reads again.
	for range 2 {
		if m := <-f.Updates(); m != nil {
			t.Fatalf("the history of an empty PCM_STATUS holds %s", m.Subject)
		}
	}
	statuses := listen(t, anc, events.SubjectStatusAll)
	jobsHeard := listen(t, anc, "pcm.jobs.>")
	inventory := listen(t, anc, "$KV."+events.BucketAgents+".>")
	pnc, _ := env.ConnectAs(t, auth.User{Role: auth.RolePublisher, Name: "ci"})
	pubHeard := listen(t, pnc, events.SubjectStatusAll)
	d1, _ := env.ConnectAs(t, auth.User{Role: auth.RoleDesktop, Name: "lf1"})
	d2, _ := env.ConnectAs(t, auth.User{Role: auth.RoleDesktop, Name: "lf2"})
	desk1, desk2 := listen(t, d1, "pcm.jobs.>"), listen(t, d2, "pcm.jobs.>")

	_, agent := env.ConnectAs(t, auth.User{Role: auth.RoleAgent, Name: "lf1"})
	subject := events.StatusSubject("lf1", "j1")
	sent := time.Now()
	if _, err := agent.Publish(ctx, subject, []byte(`{"status":"x"}`)); err != nil {
		t.Fatal(err)
	}
	select {
	case m := <-f.Updates():
		if m == nil || m.Subject != subject {
			t.Fatalf("the auditor's Follower delivered %+v, want the status on %s", m, subject)
		}
		t.Logf("the auditor's Follower delivered the agent's status %s after it was stored", time.Since(sent).Round(time.Millisecond))
	case <-time.After(5 * time.Second):
		t.Fatalf("the auditor's Follower did not deliver the agent's status within 5s (its resync is an hour)")
	}
	if _, err := agent.Publish(ctx, "$KV."+events.BucketAgents+".lf1", []byte(`{}`)); err != nil {
		t.Fatal(err)
	}
	_, pjs := env.ConnectAs(t, auth.User{Role: auth.RolePublisher, Name: "ci"})
	if _, err := pjs.Publish(ctx, events.JobSubject(events.Target{Kind: events.TargetGroup, Name: "lab"}), []byte(`{"job":"x"}`)); err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, 5*time.Second, "the auditor, the publisher and lf1's desktop to hear what was stored", func() bool {
		return len(statuses.got()) == 1 && len(pubHeard.got()) == 1 && len(inventory.got()) == 1 &&
			len(jobsHeard.got()) == 1 && len(desk1.got()) == 1
	})
	if got := desk1.got()[0]; got != events.JobSubject(events.Target{Kind: events.TargetGroup, Name: "lab"}) {
		t.Errorf("lf1's desktop heard %s, want %s", got, events.JobSubject(events.Target{Kind: events.TargetGroup, Name: "lab"}))
	}
	if got := statuses.got()[0]; got != subject {
		t.Errorf("the auditor heard %s, want %s", got, subject)
	}
	// lf2 is not in group lab: its desktop hears nothing of the job (its
	// account imports its own offer subjects only).
	if err := d2.Flush(); err != nil {
		t.Fatal(err)
	}
	if got := desk2.got(); len(got) != 0 {
		t.Errorf("lf2's desktop heard %v, another client's offer", got)
	}
}

// TestStatusFollowAcrossRestarts: an auditor's Follower of the whole of
// PCM_STATUS delivers each status an agent stores after a restart of the
// broker, restart after restart, well before its resync (an hour here).
func TestStatusFollowAcrossRestarts(t *testing.T) {
	env := testenv.StartBroker(t, testenv.WithAuth())
	enroll(t, env.JS, "lr1")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	_, ajs := env.ConnectAs(t, auth.User{Role: auth.RoleAuditor, Name: "restarts"})
	f, err := streamread.Follow(ctx, ajs, events.StreamStatus, streamread.FollowOptions{
		Subjects: events.StatusStreamSubjects(), Resync: time.Hour, Options: streamread.Options{Timeout: time.Second}})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Stop()
	var mu sync.Mutex
	var got []string
	go func() {
		for m := range f.Updates() {
			if m != nil {
				mu.Lock()
				got = append(got, m.Subject)
				mu.Unlock()
			}
		}
	}()
	_, agent := env.ConnectAs(t, auth.User{Role: auth.RoleAgent, Name: "lr1"})
	for i := range 4 {
		if i > 0 {
			env.Restart(t)
		}
		subject := events.StatusSubject("lr1", fmt.Sprintf("j%d", i))
		pctx, pcancel := context.WithTimeout(ctx, 20*time.Second)
		_, err := agent.Publish(pctx, subject, []byte(`{"status":"x"}`), jetstream.WithRetryAttempts(40))
		pcancel()
		if err != nil {
			t.Fatal(err)
		}
		testenv.WaitFor(t, 5*time.Second, "the status stored after restart "+fmt.Sprint(i), func() bool {
			mu.Lock()
			defer mu.Unlock()
			return len(got) == i+1 && got[i] == subject
		})
	}
}
