package testenv_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/pcm-project/pcm/broker/auth"
	"github.com/pcm-project/pcm/events"
	"github.com/pcm-project/pcm/testenv"
)

// TestSecureBroker: WithAuth and WithTLS give a broker whose helper
// connection is the admin over TLS, whose users of any role connect with
// minted credentials, which refuses plain clients, and which survives a
// restart.
func TestSecureBroker(t *testing.T) {
	b := testenv.StartBroker(t, testenv.WithAuth(), testenv.WithTLS())
	if b.Sec == nil || b.Sec.Authority == nil || b.Sec.Certs == nil || b.Sec.AdminCreds == "" {
		t.Fatalf("Sec: %+v", b.Sec)
	}
	if _, err := b.NC.TLSConnectionState(); err != nil {
		t.Fatalf("the helper connection is not TLS: %v", err)
	}
	if testenv.SecurityOf(b.URL) != b.Sec || testenv.SecurityOf("nats://127.0.0.1:1,"+b.URL) != b.Sec {
		t.Fatal("SecurityOf does not find the broker")
	}
	if testenv.SecurityOf("nats://127.0.0.1:1") != nil || testenv.ClientOptions(t, "nats://127.0.0.1:1", auth.User{Role: auth.RoleAgent, Name: "c1"}) != nil {
		t.Fatal("an unknown URL has security")
	}
	if env := b.Sec.ProcessEnv(); len(env) != 3 {
		t.Fatalf("ProcessEnv: %q", env)
	}
	if nc, err := nats.Connect(b.URL, nats.Timeout(2*time.Second), nats.NoReconnect()); err == nil {
		nc.Close()
		t.Fatal("a plain client connected")
	}
	anc, js := b.ConnectAs(t, auth.User{Role: auth.RoleAuditor, Name: "audit"})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := b.JS.Publish(ctx, events.SubjectJobsAll, []byte("x")); err != nil {
		t.Fatalf("admin publish: %v", err)
	}
	b.Restart(t)
	// Restart waits for the helper's connection only: the auditor's own
	// reconnects on its schedule, and a request sent while it drops is lost
	// (nats.go does not retry API requests), so ask again until the deadline.
	var s jetstream.Stream
	testenv.CheckFor(t, 30*time.Second, 50*time.Millisecond, func() (err error) {
		if !anc.IsConnected() {
			return errors.New("the auditor is not reconnected yet")
		}
		actx, acancel := context.WithTimeout(ctx, 2*time.Second)
		defer acancel()
		s, err = js.Stream(actx, events.StreamJobs)
		return err
	})
	if n := s.CachedInfo().State.Msgs; n != 1 {
		t.Fatalf("PCM_JOBS holds %d messages after a restart, want 1", n)
	}
}

func TestSecureModeEnv(t *testing.T) {
	for v, want := range map[string]bool{"": false, "0": false, "false": false, "FALSE": false, "1": true, "yes": true} {
		t.Setenv(testenv.SecureEnv, v)
		if got := testenv.Secure(); got != want {
			t.Errorf("%s=%q: Secure() = %v, want %v", testenv.SecureEnv, v, got, want)
		}
	}
}
