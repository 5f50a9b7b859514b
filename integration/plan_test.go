package integration_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pcm-project/pcm/agent"
	"github.com/pcm-project/pcm/events"
	"github.com/pcm-project/pcm/publisher"
	"github.com/pcm-project/pcm/rollout"
	"github.com/pcm-project/pcm/testenv"
)

// staged makes j a staged rollout of one ring, offered from offerAfter.
func staged(j events.JobOffered, offerAfter time.Time) events.JobOffered {
	j.OfferAfter, j.MandatoryAfter = offerAfter, &offerAfter
	j.Rollout = &events.RolloutPlan{Rings: []events.Ring{{Percent: 100}}}
	return j
}

// TestHaltSignatures: an agent that trusts keys obeys a halt signed by a
// trusted publisher or its controller key and ignores one unsigned or
// signed by another key (the job runs); a resume signed by the controller
// key does not lift a halt (a controller only stops rollouts).
func TestHaltSignatures(t *testing.T) {
	env := testenv.StartBroker(t)
	dir := t.TempDir()
	pubKey, ctlKey, forger := newSigningKey(t), newSigningKey(t), newSigningKey(t)
	a, _ := enrolledAgent(t, env, "h1", trusting(pubKey), controllerKeys(ctlKey))
	signed := signedPublisher(t, env.JS, pubKey)
	as := func(k signingKey, ctl bool) *publisher.Publisher {
		p, err := publisher.New(env.JS, publisher.Config{Name: "x", Signer: k.kp, Controller: ctl})
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	offerAt := time.Now().Add(2 * time.Second).UTC()
	cases := []struct {
		name   string
		halter *publisher.Publisher
		runs   bool
	}{
		{"unsigned", as(signingKey{}, false), true},
		{"forged", as(forger, false), true},
		{"by the controller key", as(ctlKey, true), false},
		{"by a publisher key", signed, false},
	}
	jobs := make([]string, len(cases))
	for i, tc := range cases {
		j := staged(job(appendTo(filepath.Join(dir, fmt.Sprintf("ran-%d", i))), toClient("h1")), offerAt)
		jobs[i] = publish(t, signed, j)
		if did, err := tc.halter.Halt(t.Context(), events.JobHalted{JobID: jobs[i], Reason: tc.name}); err != nil || !did {
			t.Fatalf("%s: halt: %v %v", tc.name, did, err)
		}
	}
	// A resume signed by the controller key (from a publisher's source):
	// the job stays halted.
	if did, err := as(ctlKey, false).Resume(t.Context(), jobs[2], "the controller may not"); err != nil || !did {
		t.Fatalf("the controller key's resume: %v %v", did, err)
	}
	for i, tc := range cases {
		if !tc.runs {
			continue
		}
		if f := finals(waitFinal(t, env.JS, "h1", jobs[i], 15*time.Second)); f[0].State != events.StateSucceeded {
			t.Fatalf("%s halt: the job ended %+v, want succeeded (the halt is not trusted)", tc.name, f[0])
		}
	}
	a.waitStats(t, 15*time.Second, "both trusted halts held and the untrusted ones counted", func(s agent.Stats) bool {
		return s.HaltedHolds >= 2 && s.UntrustedHalts >= 2
	})
	for i, tc := range cases {
		if n := markerLines(t, filepath.Join(dir, fmt.Sprintf("ran-%d", i))); (n == 1) != tc.runs {
			t.Fatalf("%s halt: the job ran %d times", tc.name, n)
		}
	}
	// The publisher's resume lifts its halt: the job runs at once.
	if did, err := signed.Resume(t.Context(), jobs[3], "go on"); err != nil || !did {
		t.Fatalf("resume: %v %v", did, err)
	}
	if f := finals(waitFinal(t, env.JS, "h1", jobs[3], 15*time.Second)); f[0].State != events.StateSucceeded {
		t.Fatalf("after the resume: %+v", f[0])
	}
	if n := markerLines(t, filepath.Join(dir, "ran-2")); n != 0 {
		t.Fatalf("the job halted by the controller key ran %d times after its resume signed by that key", n)
	}
}

// TestDetection: a job whose detect command says present is not_applicable
// (already present) and its command never runs; one detected after its
// command succeeds; one still absent after its command failed (installed
// but not detected).
func TestDetection(t *testing.T) {
	env := testenv.StartBroker(t)
	dir := t.TempDir()
	a, _ := enrolledAgent(t, env, "d1")
	p := newPublisher(t, env.JS)
	present := filepath.Join(dir, "present")
	touch(t, present)
	installed := filepath.Join(dir, "installed")
	cases := []struct {
		name, detect string
		command      []string
		state        events.State
		reason       string
		runs         int
	}{
		{"already present", "test -e " + present, appendTo(filepath.Join(dir, "ran-0")), events.StateNotApplicable, events.ReasonAlreadyPresent, 0},
		{"installed and detected", "test -e " + installed, []string{"sh", "-c", "echo ran >> " + filepath.Join(dir, "ran-1") + "; touch " + installed}, events.StateSucceeded, "", 1},
		{"installed but not detected", "test -e " + filepath.Join(dir, "never"), appendTo(filepath.Join(dir, "ran-2")), events.StateFailed, events.ReasonNotDetected, 1},
	}
	for i, tc := range cases {
		j := job(tc.command, toClient("d1"))
		j.Detect = &events.DetectCommand{Argv: []string{tc.detect}, Shell: true}
		id := publish(t, p, j)
		f := finals(waitFinal(t, env.JS, "d1", id, 15*time.Second))
		if len(f) != 1 || f[0].State != tc.state || f[0].Reason != tc.reason {
			t.Fatalf("%s: final statuses %+v, want one %s (%q)", tc.name, f, tc.state, tc.reason)
		}
		if n := markerLines(t, filepath.Join(dir, fmt.Sprintf("ran-%d", i))); n != tc.runs {
			t.Fatalf("%s: the command ran %d times, want %d", tc.name, n, tc.runs)
		}
	}
	if s := a.svc.Stats(); s.Detections != 5 || s.Present != 2 {
		t.Fatalf("the agent counts %d detections, %d present; want 5 (1 + 2 + 2) and 2", s.Detections, s.Present)
	}
}

// TestRequiresChain: three jobs, C requires B requires A, published in
// reverse order, run in the right order on every client; while C waits,
// pcm status says for which job; a job whose required job failed for good
// is not_applicable, naming it.
func TestRequiresChain(t *testing.T) {
	env := testenv.StartBroker(t)
	dir := t.TempDir()
	clients := []string{"r1", "r2", "r3"}
	for _, c := range clients {
		enroll(t, env.JS, c, "chain")
		startAgent(t, env.URL, c, filepath.Join(dir, "state-"+c)).waitReady(t)
	}
	p := newPublisher(t, env.JS)
	step := func(name string) []string {
		return []string{"sh", "-c", "echo " + name + ` >> "` + dir + `/order-$PCM_CLIENT_ID"`}
	}
	ids := map[string]string{"A": "chain-a", "B": "chain-b", "C": "chain-c"}
	jc := job(step("C"), toGroup("chain"))
	jc.JobID, jc.Requires = ids["C"], []string{ids["B"]}
	publish(t, p, jc)
	r := waitRollout(t, env.JS, ids["C"], "C waiting for B everywhere", 15*time.Second, func(r rollout.Rollout) bool {
		for _, c := range r.Clients {
			if c.State != rollout.ClientPending || c.WaitsFor != ids["B"] {
				return false
			}
		}
		return len(r.Clients) == len(clients)
	})
	if d := r.Clients[0].Detail; d != "pending: waiting for job "+ids["B"] {
		t.Fatalf("pcm status says %q of a client waiting for B", d)
	}
	jb := job(step("B"), toGroup("chain"))
	jb.JobID, jb.Requires = ids["B"], []string{ids["A"]}
	publish(t, p, jb)
	ja := job(step("A"), toGroup("chain"))
	ja.JobID = ids["A"]
	publish(t, p, ja)
	for _, c := range clients {
		if f := finals(waitFinal(t, env.JS, c, ids["C"], 20*time.Second)); f[0].State != events.StateSucceeded {
			t.Fatalf("C on %s: %+v", c, f[0])
		}
		b, err := os.ReadFile(filepath.Join(dir, "order-"+c))
		if err != nil {
			t.Fatal(err)
		}
		if got := strings.Fields(string(b)); strings.Join(got, " ") != "A B C" {
			t.Fatalf("order on %s: %v, want A B C", c, got)
		}
	}

	// A required job that failed for good: the dependent job does not
	// apply, and says why.
	bad := job([]string{"false"}, toClient("r1"))
	bad.JobID = "chain-bad"
	publish(t, p, bad)
	dep := job(appendTo(filepath.Join(dir, "dep")), toClient("r1"))
	dep.Requires = []string{"chain-bad"}
	depID := publish(t, p, dep)
	f := finals(waitFinal(t, env.JS, "r1", depID, 15*time.Second))
	if f[0].State != events.StateNotApplicable || !strings.Contains(f[0].Reason, "requires job chain-bad, which ended failed") {
		t.Fatalf("the job requiring a failed one: %+v, want not_applicable naming chain-bad", f[0])
	}
	if n := markerLines(t, filepath.Join(dir, "dep")); n != 0 {
		t.Fatalf("the job requiring a failed one ran %d times", n)
	}
}
