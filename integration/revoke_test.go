package integration_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/pcm-project/pcm/broker/auth"
	"github.com/pcm-project/pcm/events"
	"github.com/pcm-project/pcm/fleet"
	"github.com/pcm-project/pcm/testenv"
)

// watchedConn is a connection that records why the broker closed it.
type watchedConn struct {
	nc *nats.Conn

	mu   sync.Mutex
	errs []string
}

// dialCreds connects to url with the credentials creds (file content),
// reconnecting for ever: only the broker's refusal ends it.
func dialCreds(t *testing.T, url string, sec *testenv.Security, creds []byte) (*watchedConn, error) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "user.creds")
	if err := auth.WriteCreds(path, creds); err != nil {
		t.Fatal(err)
	}
	w := &watchedConn{}
	record := func(err error) {
		if err != nil {
			w.mu.Lock()
			w.errs = append(w.errs, err.Error())
			w.mu.Unlock()
		}
	}
	opts := append(sec.Options(t, path),
		nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) { record(err) }),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) { record(err) }))
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		return nil, err
	}
	t.Cleanup(nc.Close)
	w.nc = nc
	return w, nil
}

// said reports whether the broker said something containing s.
func (w *watchedConn) said(s string) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, e := range w.errs {
		if strings.Contains(strings.ToLower(e), strings.ToLower(s)) {
			return true
		}
	}
	return false
}

// TestRevocation: revoking a client closes its agent's open connection
// within seconds and refuses its next one, keeps its consumer and pending
// offers, and a new enrollment's credentials work; revoking a publisher
// does the same for its credentials. On a cluster the revocation pushed
// through one member reaches a connection held by another.
func TestRevocation(t *testing.T) {
	testenv.SameInBothModes(t)
	t.Run("single broker", func(t *testing.T) {
		env := testenv.StartBroker(t, testenv.WithAuth())
		revokeAndReenroll(t, env.JS, env.Sec, []string{env.URL})
	})
	t.Run("cluster", func(t *testing.T) {
		c := testenv.StartCluster(t, 3, testenv.WithAuth())
		_, js := c.Connect(t)
		revokeAndReenroll(t, js, c.Sec, c.URLs())
	})
}

func revokeAndReenroll(t *testing.T, js jetstream.JetStream, sec *testenv.Security, urls []string) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	accts := sec.Accounts(t)
	testenv.EnrollClient(t, js, "stolen", []string{"lab"}, fleet.ConsumerOptions{})
	p := newPublisher(t, js)
	later := time.Now().Add(time.Hour).UTC()
	j := job([]string{"true"}, toClient("stolen"))
	j.MandatoryAfter = &later
	publish(t, p, j)

	agentCreds, err := accts.Issue(ctx, auth.User{Role: auth.RoleAgent, Name: "stolen"})
	if err != nil {
		t.Fatal(err)
	}
	pubCreds, err := accts.Issue(ctx, auth.User{Role: auth.RolePublisher, Name: "leaked-ci"})
	if err != nil {
		t.Fatal(err)
	}
	// The laptop's agent holds a connection to the last member; the CI job
	// one to the first.
	laptop, err := dialCreds(t, urls[len(urls)-1], sec, agentCreds)
	if err != nil {
		t.Fatal(err)
	}
	ci, err := dialCreds(t, urls[0], sec, pubCreds)
	if err != nil {
		t.Fatal(err)
	}
	ljs, _ := jetstream.New(laptop.nc)
	if _, err := ljs.Consumer(ctx, events.StreamJobs, events.ConsumerName("stolen")); err != nil {
		t.Fatalf("the agent's credentials do not work before the revocation: %v", err)
	}
	before := consumerPending(t, js, "stolen")

	start := time.Now()
	if _, err := accts.Revoke(ctx, auth.Principal{Kind: auth.KindClient, Name: "stolen"}); err != nil {
		t.Fatal(err)
	}
	if _, err := accts.Revoke(ctx, auth.Principal{Kind: auth.KindPublisher, Name: "leaked-ci"}); err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, 10*time.Second, "the broker closing the revoked connections", func() bool {
		return laptop.said("revoked") && ci.said("revoked")
	})
	t.Logf("revoked connections closed %s after the revocation", time.Since(start).Round(time.Millisecond))
	// The members holding the connections have the revocation; the
	// others get it from the resolver's update a moment later (a member
	// that had it late let one dial through in CI): each must refuse
	// within seconds, and from then on for good.
	for _, u := range urls {
		for _, creds := range [][]byte{agentCreds, pubCreds} {
			testenv.CheckFor(t, 5*time.Second, 20*time.Millisecond, func() error {
				w, err := dialCreds(t, u, sec, creds)
				switch {
				case err == nil:
					w.nc.Close()
					return fmt.Errorf("revoked credentials connected to %s", u)
				case !errors.Is(err, nats.ErrAuthorization) && !errors.Is(err, nats.ErrAuthRevoked):
					return fmt.Errorf("revoked credentials at %s: %v, want an authorization violation", u, err)
				}
				return nil
			})
		}
	}
	refusedAt := time.Now()
	for _, u := range urls {
		for _, creds := range [][]byte{agentCreds, pubCreds} {
			if w, err := dialCreds(t, u, sec, creds); err == nil {
				w.nc.Close()
				t.Fatalf("revoked credentials connected to %s again after being refused", u)
			}
		}
	}
	t.Logf("every member refused the revoked credentials %s after the revocation", refusedAt.Sub(start).Round(time.Millisecond))
	if after := consumerPending(t, js, "stolen"); after != before || after == 0 {
		t.Fatalf("the revoked client's consumer holds %d pending offers, it held %d", after, before)
	}

	// A new enrollment (the laptop replaced) issues credentials that work.
	testenv.EnrollClient(t, js, "stolen", []string{"lab"}, fleet.ConsumerOptions{})
	fresh, err := accts.Issue(ctx, auth.User{Role: auth.RoleAgent, Name: "stolen"})
	if err != nil {
		t.Fatal(err)
	}
	w, err := dialCreds(t, urls[0], sec, fresh)
	if err != nil {
		t.Fatalf("new credentials after a revocation: %v", err)
	}
	wjs, _ := jetstream.New(w.nc)
	cons, err := wjs.Consumer(ctx, events.StreamJobs, events.ConsumerName("stolen"))
	if err != nil {
		t.Fatalf("new credentials after a revocation: %v", err)
	}
	msgs, err := cons.Fetch(1, jetstream.FetchMaxWait(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for range msgs.Messages() {
		n++
	}
	if n != 1 {
		t.Fatalf("the re-enrolled agent fetched %d of its pending offers, want 1", n)
	}
}

// consumerPending is how many offers client's consumer holds for it.
func consumerPending(t *testing.T, js jetstream.JetStream, client string) uint64 {
	t.Helper()
	c, err := js.Consumer(t.Context(), events.StreamJobs, events.ConsumerName(client))
	if err != nil {
		t.Fatal(err)
	}
	i := c.CachedInfo()
	return i.NumPending + uint64(i.NumAckPending)
}

// TestAccountLimits: a client's users cannot open subscriptions or send
// messages beyond the limits in their JWTs; the broker refuses them with
// its own error.
func TestAccountLimits(t *testing.T) {
	testenv.SameInBothModes(t)
	env := testenv.StartBroker(t, testenv.WithAuth())
	testenv.EnrollClient(t, env.JS, "c1", nil, fleet.ConsumerOptions{})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	creds, err := env.Sec.Accounts(t).Issue(ctx, auth.User{Role: auth.RoleAgent, Name: "c1"})
	if err != nil {
		t.Fatal(err)
	}
	w, err := dialCreds(t, env.URL, env.Sec, creds)
	if err != nil {
		t.Fatal(err)
	}
	inbox := auth.User{Role: auth.RoleAgent, Name: "c1"}.InboxPrefix()
	made := 0
	for i := 0; i < 5000 && !w.said("maximum subscriptions"); i++ {
		if _, err := w.nc.SubscribeSync(inbox + "." + nats.NewInbox()); err != nil {
			break
		}
		made++
		if i%100 == 0 {
			_ = w.nc.Flush()
		}
	}
	_ = w.nc.Flush()
	testenv.WaitFor(t, 5*time.Second, "the broker refusing subscriptions beyond the limit", func() bool { return w.said("maximum subscriptions exceeded") })
	t.Logf("subscriptions before the refusal: %d", made)

	w2, err := dialCreds(t, env.URL, env.Sec, creds)
	if err != nil {
		t.Fatal(err)
	}
	// The broker announces the payload limit of the user's JWT to the
	// connection (nats-server's INFO max_payload), and refuses more.
	testenv.WaitFor(t, 5*time.Second, "the broker announcing the JWT's payload limit", func() bool {
		return w2.nc.MaxPayload() == auth.MaxEventPayload
	})
	big := make([]byte, auth.MaxEventPayload+1)
	if err := w2.nc.Publish(events.StatusSubject("c1", "J1"), big); !errors.Is(err, nats.ErrMaxPayload) {
		t.Fatalf("publishing %d bytes: %v, want %v", len(big), err, nats.ErrMaxPayload)
	}
	st, err := env.JS.Stream(ctx, events.StreamStatus)
	if err != nil {
		t.Fatal(err)
	}
	if n := st.CachedInfo().State.Msgs; n != 0 {
		t.Fatalf("PCM_STATUS stored %d messages", n)
	}
}
