package testenv

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/pcm-project/pcm/broker"
	"github.com/pcm-project/pcm/broker/auth"
	"github.com/pcm-project/pcm/events"
	"github.com/pcm-project/pcm/fleet"
)

// SecureEnv is the environment variable that turns the secure test mode
// on: PCM_TEST_SECURE=1 makes every StartBroker and StartCluster run with
// authentication and TLS, as if given WithAuth() and WithTLS().
const SecureEnv = "PCM_TEST_SECURE"

// Secure tells whether the secure test mode is on.
func Secure() bool {
	v := strings.TrimSpace(os.Getenv(SecureEnv))
	return v != "" && v != "0" && !strings.EqualFold(v, "false")
}

// SameInBothModes marks a test whose brokers set their own security (or
// that starts none): the secure mode would run it exactly as the default
// run does, so under PCM_TEST_SECURE=1 it is skipped and runs once, in the
// default run. Call it first in the test.
func SameInBothModes(t testing.TB) {
	t.Helper()
	if Secure() {
		t.Skip("sets its own security: it ran in the default run (" + SecureEnv + " would repeat it exactly)")
	}
}

// WithAuth starts the broker (or every cluster member) in operator mode
// with a fresh authority: Broker.Sec holds it, the helper connections use
// its admin credentials, and Sec.Creds mints users of any role.
func WithAuth() Option { return func(o *options) { o.auth = true } }

// WithTLS starts the broker (or cluster, routes included) with TLS on
// certificates generated for the test: Broker.Sec holds the CA and
// certificate files, and the helper connections trust the CA.
func WithTLS() Option { return func(o *options) { o.tls = true } }

// Security is the authentication and TLS material of a test broker or
// cluster, in a temporary directory removed at cleanup.
type Security struct {
	// Dir holds everything below, and the credentials Creds mints.
	Dir string
	// Authority is the operator, the accounts and the issuer; nil without
	// WithAuth.
	Authority *auth.Authority
	// AdminCreds is the admin credentials file; empty without WithAuth.
	AdminCreds string
	// IssuerFile is the issuer file; empty without WithAuth.
	IssuerFile string
	// Certs are the TLS files; nil without WithTLS.
	Certs *Certs

	issuer *auth.Issuer
	n      atomic.Int64

	mu    sync.Mutex
	urls  []string
	admin *nats.Conn      // lazily, for Accounts
	known map[string]bool // accounts Creds made or found
}

// newSecurity makes the material o asks for, or returns nil.
func newSecurity(t testing.TB, o options) *Security {
	t.Helper()
	if !o.auth && !o.tls {
		return nil
	}
	s := &Security{Dir: t.TempDir()}
	if o.auth {
		a, _, err := auth.Setup(filepath.Join(s.Dir, "auth"))
		if err != nil {
			t.Fatalf("testenv: %v", err)
		}
		s.Authority = a
		s.AdminCreds = filepath.Join(a.Dir(), auth.AdminCredsFile)
		s.IssuerFile = filepath.Join(a.Dir(), auth.IssuerFile)
		if s.issuer, err = a.Issuer(); err != nil {
			t.Fatalf("testenv: %v", err)
		}
	}
	if o.tls {
		c, err := NewCerts(s.Dir)
		if err != nil {
			t.Fatalf("testenv: generating certificates: %v", err)
		}
		s.Certs = c
	}
	return s
}

// apply sets the broker configuration of s.
func (s *Security) apply(cfg *broker.Config) {
	if s == nil {
		return
	}
	if s.Authority != nil {
		tr := s.Authority.Trust()
		cfg.Auth = &tr
	}
	if s.Certs != nil {
		cfg.TLS = broker.TLSConfig{CertFile: s.Certs.CertFile, KeyFile: s.Certs.KeyFile, CAFile: s.Certs.CAFile}
	}
}

// Accounts is the principals' accounts of the running broker (or
// cluster), through an admin connection the Security keeps until the test
// ends. It fails the test on a broker without WithAuth.
func (s *Security) Accounts(t testing.TB) *fleet.Accounts {
	t.Helper()
	if s == nil || s.issuer == nil {
		t.Fatal("testenv: Accounts needs a broker started WithAuth()")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.admin == nil || s.admin.IsClosed() {
		nc, _ := connect(t, "testenv accounts", s.urls, s.adminOptions(t)...)
		s.admin = nc
	}
	return fleet.NewAccounts(s.admin, s.issuer)
}

// Creds mints credentials for u into a new file of Dir and returns its
// path, making u's account on the broker first when it has none (a
// client's with the groups its consumer was enrolled with, if any). It
// fails the test on a broker without WithAuth.
func (s *Security) Creds(t testing.TB, u auth.User) string {
	t.Helper()
	if s == nil || s.issuer == nil {
		t.Fatal("testenv: Creds needs a broker started WithAuth()")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s.mu.Lock()
	known := u.Role == auth.RoleAdmin || s.known[u.Principal().AccountName()]
	s.mu.Unlock()
	if known { // no broker needed (it may be down)
		b, err := s.issuer.Issue(u)
		if err != nil {
			t.Fatalf("testenv: issuing %s: %v", u.UserName(), err)
		}
		return s.writeCreds(t, u, b)
	}
	accts := s.Accounts(t)
	if u.Role.Kind() == auth.KindClient {
		ac, err := accts.Lookup(ctx, u.Principal())
		if err != nil {
			t.Fatalf("testenv: looking up the account of %s: %v", u.Name, err)
		}
		if ac == nil {
			p := u.Principal()
			js, _ := jetstream.New(s.admin)
			if c, err := js.Consumer(ctx, events.StreamJobs, events.ConsumerName(u.Name)); err == nil {
				p.Groups = events.GroupsOfConsumer(c.CachedInfo().Config.Metadata)
			}
			if err := accts.Ensure(ctx, p); err != nil {
				t.Fatalf("testenv: making the account of %s: %v", u.Name, err)
			}
		}
	}
	b, err := accts.Issue(ctx, u)
	if err != nil {
		t.Fatalf("testenv: issuing %s: %v", u.UserName(), err)
	}
	s.mu.Lock()
	if s.known == nil {
		s.known = map[string]bool{}
	}
	s.known[u.Principal().AccountName()] = true
	s.mu.Unlock()
	return s.writeCreds(t, u, b)
}

// writeCreds writes credentials of u into a new file of Dir.
func (s *Security) writeCreds(t testing.TB, u auth.User, b []byte) string {
	t.Helper()
	path := filepath.Join(s.Dir, "creds", u.UserName()+"-"+strconv.FormatInt(s.n.Add(1), 10)+".creds")
	if err := auth.WriteCreds(path, b); err != nil {
		t.Fatalf("testenv: %v", err)
	}
	return path
}

// ClientConfig is how a client with credentials file creds (empty: none)
// connects: those credentials and, with TLS, the CA.
func (s *Security) ClientConfig(creds string) auth.ClientConfig {
	var c auth.ClientConfig
	if s == nil {
		return c
	}
	c.CredsFile = creds
	if s.Certs != nil {
		c.CAFile = s.Certs.CAFile
	}
	return c
}

// Options are the nats.Options of ClientConfig(creds).
func (s *Security) Options(t testing.TB, creds string) []nats.Option {
	t.Helper()
	opts, err := s.ClientConfig(creds).Options()
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	return opts
}

// adminOptions are the options of the helper connections: the admin
// credentials and the CA, when set.
func (s *Security) adminOptions(t testing.TB) []nats.Option {
	t.Helper()
	if s == nil {
		return nil
	}
	return s.Options(t, s.AdminCreds)
}

// ProcessEnv is the environment a pcm process needs to reach the broker as
// admin and make accounts: PCM_CREDS, PCM_ISSUER and PCM_TLS_CA, as set.
func (s *Security) ProcessEnv() []string {
	if s == nil {
		return nil
	}
	var env []string
	if s.AdminCreds != "" {
		env = append(env, "PCM_CREDS="+s.AdminCreds, "PCM_ISSUER="+s.IssuerFile)
	}
	if s.Certs != nil {
		env = append(env, "PCM_TLS_CA="+s.Certs.CAFile)
	}
	return env
}

// registry maps the client URL of every running test broker to its
// Security, for ClientOptions.
var registry sync.Map // string -> *Security

func register(t testing.TB, s *Security, urls ...string) {
	if s == nil {
		return
	}
	s.mu.Lock()
	s.urls = urls
	s.mu.Unlock()
	t.Cleanup(func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.admin != nil {
			s.admin.Close()
		}
	})
	for _, u := range urls {
		registry.Store(u, s)
	}
	t.Cleanup(func() {
		for _, u := range urls {
			registry.CompareAndDelete(u, s)
		}
	})
	if Secure() {
		// pcm processes started by the test inherit these; agents among
		// them run the tests' unsigned jobs (TestSigning covers signed
		// ones), which an agent with credentials refuses by default.
		for _, kv := range append(s.ProcessEnv(), "PCM_ALLOW_UNSIGNED=true") {
			k, v, _ := strings.Cut(kv, "=")
			setenv(t, k, v)
		}
	}
}

// setenv sets a process environment variable and restores it at cleanup
// (t.Setenv refuses parallel tests).
func setenv(t testing.TB, k, v string) {
	old, had := os.LookupEnv(k)
	os.Setenv(k, v)
	t.Cleanup(func() {
		if had {
			os.Setenv(k, old)
		} else {
			os.Unsetenv(k)
		}
	})
}

// SecurityOf returns the Security of the test broker or cluster member
// listening at url (nil for an open broker or an unknown URL). url may list
// several URLs, comma-separated: the first known one decides.
func SecurityOf(url string) *Security {
	for _, u := range strings.Split(url, ",") {
		if s, ok := registry.Load(strings.TrimSpace(u)); ok {
			return s.(*Security)
		}
	}
	return nil
}

// ClientOptions are the options a client acting as u needs to reach the
// test broker at url: fresh credentials of u (minted now) and the CA. It
// returns nil for an open broker, so tests can always append it.
func ClientOptions(t testing.TB, url string, u auth.User) []nats.Option {
	t.Helper()
	s := SecurityOf(url)
	if s == nil {
		return nil
	}
	creds := ""
	if s.issuer != nil {
		creds = s.Creds(t, u)
	}
	return s.Options(t, creds)
}

// EnrollClient enrolls client in groups on the broker js is connected to:
// its consumer and, on a secure test broker, its account (so that its
// desktop hears of its groups' offers).
func EnrollClient(t testing.TB, js jetstream.JetStream, client string, groups []string, opts fleet.ConsumerOptions) {
	t.Helper()
	var accts *fleet.Accounts
	if s := SecurityOf(js.Conn().ConnectedUrl()); s != nil && s.issuer != nil {
		accts = s.Accounts(t)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := fleet.Enroll(ctx, js, accts, client, groups, opts); err != nil {
		t.Fatalf("testenv: enrolling %s: %v", client, err)
	}
}
