package broker_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/pcm-project/pcm/broker"
	"github.com/pcm-project/pcm/broker/auth"
	"github.com/pcm-project/pcm/events"
	"github.com/pcm-project/pcm/testenv"
)

func TestSecurityConfigValidate(t *testing.T) {
	dir := t.TempDir()
	certs, err := testenv.NewCerts(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	a, _, err := auth.Setup(filepath.Join(t.TempDir(), "auth"))
	if err != nil {
		t.Fatal(err)
	}
	trust := a.Trust()
	bad := trust
	bad.AccountJWT = "garbage"
	noSys := trust
	noSys.SystemJWT = trust.AccountJWT
	cluster := broker.ClusterConfig{Name: "c", Listen: "127.0.0.1:-1", Routes: []string{"nats-route://127.0.0.1:6222"}}
	tlsOK := broker.TLSConfig{CertFile: certs.CertFile, KeyFile: certs.KeyFile}
	for _, tc := range []struct {
		name string
		cfg  broker.Config
		want []error
	}{
		{"auth", broker.Config{StoreDir: dir, Auth: &trust}, nil},
		{"tls", broker.Config{StoreDir: dir, TLS: tlsOK}, nil},
		{"tls with client verification", broker.Config{StoreDir: dir, TLS: broker.TLSConfig{CertFile: certs.CertFile, KeyFile: certs.KeyFile, CAFile: certs.CAFile, VerifyClients: true}}, nil},
		{"tls cluster", broker.Config{StoreDir: dir, Cluster: cluster, TLS: broker.TLSConfig{CertFile: certs.CertFile, KeyFile: certs.KeyFile, CAFile: certs.CAFile}}, nil},
		{"hub of sites with auth", broker.Config{StoreDir: dir, Auth: &trust, Domain: "hub", LeafListen: "127.0.0.1:-1"}, nil},
		{"relays with auth", broker.Config{StoreDir: dir, Auth: &trust, Domain: "hub", LeafListen: "127.0.0.1:-1", Relays: true}, []error{broker.ErrInvalidConfig, broker.ErrInvalidSite}},
		{"site with auth", broker.Config{StoreDir: dir, Auth: &trust, Domain: "b", Hub: &broker.HubLink{URL: "nats-leaf://hub:7422"}}, []error{broker.ErrInvalidConfig, broker.ErrSiteAuth}},
		{"site with unreadable credentials", broker.Config{StoreDir: dir, Auth: &trust, Domain: "b", Hub: &broker.HubLink{URL: "nats-leaf://hub:7422", Credentials: filepath.Join(dir, "none.creds")}}, []error{broker.ErrInvalidConfig, broker.ErrSiteAuth}},
		{"bad account JWT", broker.Config{StoreDir: dir, Auth: &bad}, []error{broker.ErrInvalidConfig, auth.ErrBadAuthority}},
		{"system account not the operator's", broker.Config{StoreDir: dir, Auth: &noSys}, []error{broker.ErrInvalidConfig, auth.ErrBadAuthority}},
		{"cert without key", broker.Config{StoreDir: dir, TLS: broker.TLSConfig{CertFile: certs.CertFile}}, []error{broker.ErrInvalidConfig, broker.ErrInvalidTLS}},
		{"key of another certificate", broker.Config{StoreDir: dir, TLS: broker.TLSConfig{CertFile: certs.CertFile, KeyFile: certs.ClientKeyFile}}, []error{broker.ErrInvalidConfig, broker.ErrInvalidTLS}},
		{"missing certificate", broker.Config{StoreDir: dir, TLS: broker.TLSConfig{CertFile: filepath.Join(dir, "nope.pem"), KeyFile: certs.KeyFile}}, []error{broker.ErrInvalidConfig, broker.ErrInvalidTLS}},
		{"CA not PEM", broker.Config{StoreDir: dir, TLS: broker.TLSConfig{CertFile: certs.CertFile, KeyFile: certs.KeyFile, CAFile: certs.KeyFile}}, []error{broker.ErrInvalidConfig, broker.ErrInvalidTLS}},
		{"client verification without CA", broker.Config{StoreDir: dir, TLS: broker.TLSConfig{CertFile: certs.CertFile, KeyFile: certs.KeyFile, VerifyClients: true}}, []error{broker.ErrInvalidConfig, broker.ErrInvalidTLS}},
		{"tls cluster without CA", broker.Config{StoreDir: dir, Cluster: cluster, TLS: tlsOK}, []error{broker.ErrInvalidConfig, broker.ErrInvalidTLS}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cfg.Validate()
			if len(tc.want) == 0 {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			for _, w := range tc.want {
				if !errors.Is(err, w) {
					t.Fatalf("Validate: %v, want %v", err, w)
				}
			}
		})
	}
}

// TestAuthBrokerRestart: an authenticated broker refuses strangers, serves
// the admin, and after a restart recovers the pcm account's streams before
// the first client connects.
func TestAuthBrokerRestart(t *testing.T) {
	a, _, err := auth.Setup(filepath.Join(t.TempDir(), "auth"))
	if err != nil {
		t.Fatal(err)
	}
	trust := a.Trust()
	cfg := broker.Config{StoreDir: t.TempDir(), Listen: "127.0.0.1:-1", ServerName: "pcm-auth", Auth: &trust}
	start := func() *broker.Broker {
		t.Helper()
		b, err := broker.New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := b.Start(ctx); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(b.Shutdown)
		return b
	}
	admin := filepath.Join(a.Dir(), auth.AdminCredsFile)
	dial := func(url string) jetstream.JetStream {
		t.Helper()
		opts, err := auth.ClientConfig{CredsFile: admin}.Options()
		if err != nil {
			t.Fatal(err)
		}
		nc, err := nats.Connect(url, opts...)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(nc.Close)
		js, err := jetstream.New(nc)
		if err != nil {
			t.Fatal(err)
		}
		return js
	}
	b := start()
	if cfg.AuthAccount() != a.Account() {
		t.Fatalf("AuthAccount %s, want %s", cfg.AuthAccount(), a.Account())
	}
	if nc, err := nats.Connect(b.ClientURL(), nats.Timeout(2*time.Second), nats.NoReconnect()); err == nil {
		nc.Close()
		t.Fatal("a client without credentials connected")
	}
	ctx := context.Background()
	js := dial(b.ClientURL())
	if err := broker.Provision(ctx, js, broker.ProvisionOptions{}); err != nil {
		t.Fatalf("provisioning as admin: %v", err)
	}
	if _, err := js.Publish(ctx, "pcm.jobs.all", []byte("kept")); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(cfg.StoreDir, "jetstream", a.Account(), "streams", events.StreamJobs)); err != nil {
		t.Fatalf("the pcm account's data is not under its own directory: %v", err)
	}
	b.Shutdown()
	cfg.Listen = "127.0.0.1:-1"
	b = start()
	// Start registered the account: its JetStream is on before any client.
	acc, err := b.Server().LookupAccount(a.Account())
	if err != nil || !acc.JetStreamEnabled() {
		t.Fatalf("JetStream not enabled for the pcm account after a restart: %v", err)
	}
	s, err := dial(b.ClientURL()).Stream(ctx, events.StreamJobs)
	if err != nil {
		t.Fatal(err)
	}
	if n := s.CachedInfo().State.Msgs; n != 1 {
		t.Fatalf("after a restart PCM_JOBS holds %d messages, want 1", n)
	}
}

func TestIsLoopback(t *testing.T) {
	for hp, want := range map[string]bool{
		"127.0.0.1:4222": true, "127.0.0.1:-1": true, "[::1]:4222": true, "localhost:4222": true,
		"0.0.0.0:4222": false, ":4222": false, "10.0.0.2:4222": false, "example.com:4222": false, "nonsense": false,
	} {
		if got := broker.IsLoopback(hp); got != want {
			t.Errorf("IsLoopback(%q) = %v, want %v", hp, got, want)
		}
	}
}

// TestInProcessAdmin: an admin issued InProcess (a site broker's, pcm creds
// site) connects in process (ConnectAdminCreds) and is refused over the
// network.
func TestInProcessAdmin(t *testing.T) {
	a, _, err := auth.Setup(filepath.Join(t.TempDir(), "auth"))
	if err != nil {
		t.Fatal(err)
	}
	iss, err := a.Issuer()
	if err != nil {
		t.Fatal(err)
	}
	creds, err := iss.Issue(auth.User{Role: auth.RoleAdmin, Name: "site-b", InProcess: true})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "b-site-admin.creds")
	if err := auth.WriteCreds(path, creds); err != nil {
		t.Fatal(err)
	}
	trust := a.Trust()
	b, err := broker.New(broker.Config{StoreDir: t.TempDir(), Listen: "127.0.0.1:-1", Auth: &trust})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Shutdown)
	nc, err := b.ConnectAdminCreds(path, "test in process")
	if err != nil {
		t.Fatalf("the in-process admin in process: %v", err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	if err := broker.Provision(t.Context(), js, broker.ProvisionOptions{}); err != nil {
		t.Fatalf("the in-process admin provisions: %v", err)
	}
	if nc, err := nats.Connect(b.ClientURL(), nats.UserCredentials(path)); err == nil {
		nc.Close()
		t.Fatal("the in-process admin connected over the network")
	}
	if err := (auth.User{Role: auth.RoleSite, Name: "b", InProcess: true}).Validate(); !errors.Is(err, auth.ErrInvalidUser) {
		t.Errorf("a site's credentials in process only: %v, want %v", err, auth.ErrInvalidUser)
	}
}
