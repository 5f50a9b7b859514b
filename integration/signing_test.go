package integration_test

import (
	"bytes"
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"

	"github.com/pcm-project/pcm/agent"
	"github.com/pcm-project/pcm/events"
	"github.com/pcm-project/pcm/publisher"
	"github.com/pcm-project/pcm/testenv"
)

// signingKey is a publisher's key pair and its public key.
type signingKey struct {
	kp  nkeys.KeyPair
	pub string
}

func newSigningKey(t testing.TB) signingKey {
	t.Helper()
	kp, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	pub, err := kp.PublicKey()
	if err != nil {
		t.Fatal(err)
	}
	return signingKey{kp: kp, pub: pub}
}

// signedPublisher returns a publisher named "test" signing with k (unsigned
// when k.kp is nil).
func signedPublisher(t testing.TB, js jetstream.JetStream, k signingKey) *publisher.Publisher {
	t.Helper()
	p, err := publisher.New(js, publisher.Config{Name: "test", Signer: k.kp})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// trusting makes an agent trust keys.
func trusting(keys ...signingKey) agentOpts {
	return func(c *agent.Config) {
		for _, k := range keys {
			c.TrustedKeys = append(c.TrustedKeys, k.pub)
		}
	}
}

// wantRejected waits for job's final status on client and checks it is a
// single rejected one whose reason names sentinel.
func wantRejected(t *testing.T, js jetstream.JetStream, client, job string, sentinel error) {
	t.Helper()
	sts := waitFinal(t, js, client, job, 10*time.Second)
	if len(sts) != 1 || sts[0].State != events.StateRejected {
		t.Fatalf("want one rejected status, got %+v", sts)
	}
	if !strings.Contains(sts[0].Reason, sentinel.Error()) {
		t.Fatalf("rejected with reason %q: want it to name %q", sts[0].Reason, sentinel)
	}
}

// TestSigning runs an agent that trusts two publisher keys against offers
// and cancellations signed by them, by an unknown key, altered after
// signing, and unsigned: only the trusted, intact ones are acted on; the
// others are rejected with the reason and never run.
func TestSigning(t *testing.T) {
	env := testenv.StartBroker(t)
	ctx := t.Context()
	keyA, keyB, forger := newSigningKey(t), newSigningKey(t), newSigningKey(t)
	pA, pB := signedPublisher(t, env.JS, keyA), signedPublisher(t, env.JS, keyB)
	pForger, pUnsigned := signedPublisher(t, env.JS, forger), signedPublisher(t, env.JS, signingKey{})

	const client = "signed"
	dir := t.TempDir()
	enroll(t, env.JS, client)
	a := startAgent(t, env.URL, client, dir, trusting(keyA, keyB))
	a.waitReady(t)
	if a.warned("NO TRUSTED KEYS") {
		t.Fatal("an agent with trusted keys must not warn about unsigned jobs")
	}

	t.Run("an offer signed by an unknown key is rejected and never runs", func(t *testing.T) {
		marker := filepath.Join(dir, "forged")
		id := publish(t, pForger, job(appendTo(marker), toClient(client)))
		wantRejected(t, env.JS, client, id, events.ErrUntrustedKey)
		waitAcked(t, env.JS, client, 5*time.Second)
		if n := markerLines(t, marker); n != 0 {
			t.Fatalf("the forged job ran %d times", n)
		}
	})

	t.Run("an offer altered after signing is rejected and never runs", func(t *testing.T) {
		marker := filepath.Join(dir, "tampered")
		j, err := pA.Prepare(ctx, job(appendTo(marker), toClient(client)))
		if err != nil {
			t.Fatal(err)
		}
		ev, err := events.NewJobOffered("test", j)
		if err != nil {
			t.Fatal(err)
		}
		if err := events.Sign(&ev, keyA.kp); err != nil {
			t.Fatal(err)
		}
		msg, err := events.NewMsg(events.JobSubject(toClient(client)), ev, "")
		if err != nil {
			t.Fatal(err)
		}
		// One byte of the argv changes: "echo ran" becomes "echo run".
		tampered := bytes.Replace(msg.Data, []byte("echo ran "), []byte("echo run "), 1)
		if bytes.Equal(tampered, msg.Data) || len(tampered) != len(msg.Data) {
			t.Fatal("the test did not change exactly one byte of the argv")
		}
		msg.Data = tampered
		if _, err := env.JS.PublishMsg(ctx, msg); err != nil {
			t.Fatal(err)
		}
		wantRejected(t, env.JS, client, j.JobID, events.ErrBadSignature)
		waitAcked(t, env.JS, client, 5*time.Second)
		if n := markerLines(t, marker); n != 0 {
			t.Fatalf("the tampered job ran %d times", n)
		}
	})

	t.Run("an unsigned offer is rejected and never runs", func(t *testing.T) {
		marker := filepath.Join(dir, "unsigned")
		id := publish(t, pUnsigned, job(appendTo(marker), toClient(client)))
		wantRejected(t, env.JS, client, id, events.ErrUnsigned)
		waitAcked(t, env.JS, client, 5*time.Second)
		if n := markerLines(t, marker); n != 0 {
			t.Fatalf("the unsigned job ran %d times", n)
		}
	})

	t.Run("a job signed by either of two trusted keys runs", func(t *testing.T) {
		for name, p := range map[string]*publisher.Publisher{"key A": pA, "key B": pB} {
			marker := filepath.Join(dir, "trusted-"+strings.ReplaceAll(name, " ", ""))
			id := publish(t, p, job(appendTo(marker), toClient(client)))
			sts := waitFinal(t, env.JS, client, id, 10*time.Second)
			if fin := finals(sts); len(fin) != 1 || fin[0].State != events.StateSucceeded {
				t.Fatalf("%s: want succeeded, got %+v", name, sts)
			}
			if n := markerLines(t, marker); n != 1 {
				t.Fatalf("%s: ran %d times", name, n)
			}
		}
		waitAcked(t, env.JS, client, 5*time.Second)
	})

	t.Run("a cancellation signed by an untrusted key does not cancel", func(t *testing.T) {
		marker := filepath.Join(dir, "not-cancelled")
		j := job(appendTo(marker), toClient(client))
		at := time.Now().Add(3 * time.Second).UTC()
		j.MandatoryAfter = &at
		held := a.svc.Stats().Held
		id := publish(t, pA, j)
		a.waitStats(t, 5*time.Second, "the job held until its mandatory time", func(s agent.Stats) bool { return s.Held > held })
		refused := a.svc.Stats().Refused
		if err := pForger.Cancel(ctx, id, "forged"); err != nil {
			t.Fatal(err)
		}
		a.waitStats(t, 5*time.Second, "the forged cancellation refused", func(s agent.Stats) bool { return s.Refused > refused })
		if time.Now().After(at) {
			t.Fatal("the forged cancellation was refused after the job's mandatory time: the test proves nothing")
		}
		sts := waitFinal(t, env.JS, client, id, 10*time.Second)
		if fin := finals(sts); len(fin) != 1 || fin[0].State != events.StateSucceeded {
			t.Fatalf("want succeeded despite the forged cancellation, got %+v", sts)
		}
		if n := markerLines(t, marker); n != 1 {
			t.Fatalf("ran %d times", n)
		}
		waitAcked(t, env.JS, client, 5*time.Second)
	})

	t.Run("a cancellation signed by a trusted key cancels", func(t *testing.T) {
		marker := filepath.Join(dir, "cancelled")
		j := job(appendTo(marker), toClient(client))
		at := time.Now().Add(time.Hour).UTC()
		j.MandatoryAfter = &at
		held := a.svc.Stats().Held
		id := publish(t, pA, j)
		a.waitStats(t, 5*time.Second, "the job held until its mandatory time", func(s agent.Stats) bool { return s.Held > held })
		if err := pB.Cancel(ctx, id, "rotated publisher cancels"); err != nil {
			t.Fatal(err)
		}
		sts := waitFinal(t, env.JS, client, id, 10*time.Second)
		if fin := finals(sts); len(fin) != 1 || fin[0].State != events.StateCancelled {
			t.Fatalf("want cancelled, got %+v", sts)
		}
		waitAcked(t, env.JS, client, 5*time.Second)
		if n := markerLines(t, marker); n != 0 {
			t.Fatalf("the cancelled job ran %d times", n)
		}
	})

	t.Run("an agent without trusted keys warns that it runs unsigned jobs", func(t *testing.T) {
		enroll(t, env.JS, "open")
		open := startAgent(t, env.URL, "open", t.TempDir())
		open.waitReady(t)
		if !open.warned("NO TRUSTED KEYS") {
			t.Fatal("no warning about unsigned jobs")
		}
		id := publish(t, pUnsigned, job([]string{"true"}, toClient("open")))
		if fin := finals(waitFinal(t, env.JS, "open", id, 10*time.Second)); fin[0].State != events.StateSucceeded {
			t.Fatalf("the open agent: want succeeded, got %+v", fin)
		}
	})

	t.Run("a trusted key that is not a public key is refused", func(t *testing.T) {
		nc, _ := env.Connect(t)
		seed, _ := keyA.kp.Seed()
		for _, bad := range []string{"UNOTAKEY", string(seed)} {
			_, err := agent.New(nc, agent.Config{ClientID: "x", StateDir: t.TempDir(), TrustedKeys: []string{keyA.pub, bad}})
			if !errors.Is(err, agent.ErrInvalidConfig) || !errors.Is(err, events.ErrInvalidKey) {
				t.Fatalf("want ErrInvalidConfig and ErrInvalidKey, got %v", err)
			}
			if strings.Contains(err.Error(), string(seed)) {
				t.Fatal("the error shows a seed")
			}
		}
	})
}

// TestSigningDesktop: a desktop that trusts a key lists and runs only the
// offers signed by it; forged, altered and unsigned offers are never listed
// nor run, and a forged cancellation does not hide a trusted offer.
func TestSigningDesktop(t *testing.T) {
	env := testenv.StartBroker(t)
	ctx := t.Context()
	trusted, forger := newSigningKey(t), newSigningKey(t)
	pTrusted, pForger := signedPublisher(t, env.JS, trusted), signedPublisher(t, env.JS, forger)
	pUnsigned := signedPublisher(t, env.JS, signingKey{})
	const client = "deskSigned"
	enroll(t, env.JS, client)
	dir := t.TempDir()
	optional := func(marker string) events.JobOffered {
		j := job(appendTo(filepath.Join(dir, marker)), toClient(client))
		j.MandatoryAfter = nil
		return j
	}
	good := publish(t, pTrusted, optional("good"))
	forged := publish(t, pForger, optional("forged"))
	unsigned := publish(t, pUnsigned, optional("unsigned"))
	// Altered after signing, published raw: one argv byte changed.
	j, err := pTrusted.Prepare(ctx, optional("tampered"))
	if err != nil {
		t.Fatal(err)
	}
	ev, err := events.NewJobOffered("test", j)
	if err != nil {
		t.Fatal(err)
	}
	if err := events.Sign(&ev, trusted.kp); err != nil {
		t.Fatal(err)
	}
	msg, err := events.NewMsg(events.JobSubject(toClient(client)), ev, "")
	if err != nil {
		t.Fatal(err)
	}
	altered := bytes.Replace(msg.Data, []byte("echo ran "), []byte("echo rap "), 1)
	if bytes.Equal(altered, msg.Data) {
		t.Fatal("the test did not alter the argv")
	}
	msg.Data = altered
	if _, err := env.JS.PublishMsg(ctx, msg); err != nil {
		t.Fatal(err)
	}
	tampered := j.JobID
	// A forged cancellation of the good job.
	cancelGood, err := events.NewJobCancelled("test", events.JobCancelled{JobID: good, Reason: "forged", Targets: []events.Target{toClient(client)}})
	if err != nil {
		t.Fatal(err)
	}
	if err := events.Sign(&cancelGood, forger.kp); err != nil {
		t.Fatal(err)
	}
	if cmsg, err := events.NewMsg(events.JobSubject(toClient(client)), cancelGood, ""); err != nil {
		t.Fatal(err)
	} else if _, err := env.JS.PublishMsg(ctx, cmsg); err != nil {
		t.Fatal(err)
	}

	d := newTestDesktop(t, env.URL, client, func(c *agent.DesktopConfig) {
		c.TrustedKeys = []string{trusted.pub}
	})
	jobs, err := d.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(jobs) != 1 || jobs[0].JobID != good {
		ids := make([]string, len(jobs))
		for i, j := range jobs {
			ids[i] = j.JobID
		}
		t.Fatalf("listed %v, want only the trusted job %s", ids, good)
	}
	for name, c := range map[string]struct {
		id   string
		want error
	}{
		"forged": {forged, events.ErrUntrustedKey}, "unsigned": {unsigned, events.ErrUnsigned}, "tampered": {tampered, events.ErrBadSignature},
	} {
		_, err := d.Run(ctx, c.id)
		if !errors.Is(err, agent.ErrNotRunnable) || !errors.Is(err, c.want) {
			t.Fatalf("running the %s job: want ErrNotRunnable and %v, got %v", name, c.want, err)
		}
		if n := markerLines(t, filepath.Join(dir, name)); n != 0 {
			t.Fatalf("the %s job ran %d times", name, n)
		}
	}
	st, err := d.Run(ctx, good)
	if err != nil || st.State != events.StateSucceeded {
		t.Fatalf("running the trusted job: %+v, %v", st, err)
	}
	if n := markerLines(t, filepath.Join(dir, "good")); n != 1 {
		t.Fatalf("the trusted job ran %d times", n)
	}
	if d.Stats().Untrusted == 0 {
		t.Fatal("the desktop did not count the events it ignored")
	}

	// A session announces neither the stored untrusted offers nor a new
	// forged one, and announces a new trusted one. Each forged offer is
	// published before a trusted one on the same subject, so once a trusted
	// one is announced, the forged one before it was seen and skipped.
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- d.Session(sctx) }()
	untrusted := []string{forged, unsigned, tampered, publish(t, pForger, optional("live-forged"))}
	liveGood := publish(t, pTrusted, optional("live-good"))
	testenv.WaitFor(t, 10*time.Second, "the session announcing the new trusted offer", func() bool { return d.saidSomething(liveGood) })
	for _, id := range untrusted {
		if d.saidSomething(id) {
			t.Fatalf("the session announced the untrusted offer %s", id)
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
