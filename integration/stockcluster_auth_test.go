package integration_test

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/pcm-project/pcm/broker/auth"
	"github.com/pcm-project/pcm/testenv"
)

// TestStockClusterAuthenticated runs pcm on three separate nats-server
// processes of go.mod's version configured from
// docs/examples/stock-cluster-auth (operator mode, a full account resolver,
// TLS for clients and routes), with the auth.conf that pcm broker
// nats-config makes from an authority made by pcm broker init-auth. As an
// operator would: it provisions with the admin's credentials, runs pcm
// controller, enrolls a client through one member (its account pushed to
// every member), runs its agent through another with only its own
// credentials and the trusted keys pcm enroll wrote, publishes a signed job
// as a publisher, lists an optional job at the client's desktop (through
// the client view), and revokes the client: its credentials are refused by
// every member.
//
// PCM_STOCK_CLUSTER=1 go test -count=1 -run TestStockClusterAuthenticated -v -timeout 20m ./integration/
func TestStockClusterAuthenticated(t *testing.T) {
	if os.Getenv(stockEnv) == "" {
		t.Skipf("set %s=1 to run the stock-cluster tests (see docs/testing.md)", stockEnv)
	}
	bin := natsServerBinary(t)
	dir := t.TempDir()
	authDir := filepath.Join(dir, "auth")
	if out, errOut, code := runPCM(t, nil, "broker", "init-auth", "--auth-dir", authDir); code != 0 {
		t.Fatalf("pcm broker init-auth: exit %d\n%s%s", code, out, errOut)
	}
	certs, err := testenv.NewCerts(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	authConf, errOut, code := runPCM(t, nil, "broker", "nats-config", "--auth-dir", authDir)
	if code != 0 {
		t.Fatalf("pcm broker nats-config: exit %d\n%s", code, errOut)
	}
	c := startStockClusterFrom(t, bin, "stock-cluster-auth", 0, func(n *stockNode) {
		n.rewrite = func(conf string) string {
			if k := strings.Count(conf, `"/etc/nats/tls/`); k != 6 {
				t.Fatalf("docs/examples/stock-cluster-auth: %d paths under /etc/nats/tls/, want 6", k)
			}
			return strings.ReplaceAll(conf, `"/etc/nats/tls/`, `"`+filepath.Join(n.dir, "tls")+"/")
		}
		conf := replaceOnce(t, authConf, `dir: "/var/lib/nats/accounts"`, `dir: "`+filepath.Join(n.dir, "accounts")+`"`)
		if err := os.WriteFile(filepath.Join(n.dir, "auth.conf"), []byte(conf), 0o644); err != nil {
			t.Fatal(err)
		}
		tlsDir := filepath.Join(n.dir, "tls")
		if err := os.MkdirAll(tlsDir, 0o700); err != nil {
			t.Fatal(err)
		}
		for from, to := range map[string]string{certs.CAFile: "ca.pem", certs.CertFile: "server.pem", certs.KeyFile: "server-key.pem"} {
			b, err := os.ReadFile(from)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(tlsDir, to), b, 0o600); err != nil {
				t.Fatal(err)
			}
		}
	})
	urls := c.urls()
	admin, issuer := filepath.Join(authDir, auth.AdminCredsFile), filepath.Join(authDir, auth.IssuerFile)
	env := []string{"PCM_TLS_CA=" + certs.CAFile}
	pcm := func(args ...string) string {
		t.Helper()
		out, errOut, code := runPCM(t, env, args...)
		if code != 0 {
			t.Fatalf("pcm %s: exit %d\n%s%s", strings.Join(args, " "), code, out, errOut)
		}
		return out
	}

	// A plain client, and a client without credentials, are refused.
	if nc, err := nats.Connect(c.nodes[0].url(), nats.Timeout(2*time.Second), nats.NoReconnect()); err == nil {
		nc.Close()
		t.Fatal("a plain client connected")
	}
	pcm("broker", "provision", "--url", urls, "--creds", admin, "--replicas", "3")
	startPCM(t, dir, env, "controller", "--url", urls, "--creds", admin).stdout.waitLine(t, regexp.MustCompile(`^pcm controller serving`), 20*time.Second)

	signing := filepath.Join(dir, "signing.nk")
	key := strings.TrimSpace(pcm("keys", "new", "--out", signing))
	creds := filepath.Join(dir, "creds")
	first, third := c.nodes[0].url(), c.nodes[2].url()
	pcm("enroll", "c1", "--group", "lab", "--url", first, "--creds", admin, "--issuer", issuer, "--out-dir", creds, "--trusted-keys", key)
	pcm("creds", "publisher", "ci", "--url", first, "--issuer", issuer, "--out", filepath.Join(creds, "ci.creds"))
	pcm("creds", "auditor", "audit", "--url", first, "--issuer", issuer, "--out", filepath.Join(creds, "audit.creds"))

	// The agent reaches the cluster through another member, with its own
	// credentials only (and the trusted keys next to them).
	startPCM(t, dir, env, "agent", "--url", third, "--creds", filepath.Join(creds, "c1-agent.creds"), "--client-id", "c1",
		"--state-dir", filepath.Join(dir, "state"), "--log-level", "warn")
	out := pcm("publish", "--url", urls, "--creds", filepath.Join(creds, "ci.creds"), "--signing-key", signing,
		"--client", "c1", "--wait", "--wait-timeout", "1m", "--", "echo", "hello from a stock cluster")
	jobID := strings.TrimSpace(strings.Split(out, "\n")[0])
	if !jobIDLine.MatchString(jobID) {
		t.Fatalf("pcm publish --wait printed %q", out)
	}
	if out := pcm("status", "--url", urls, "--creds", filepath.Join(creds, "audit.creds"), jobID); !strings.Contains(out, "succeeded") {
		t.Fatalf("pcm status as the auditor: %q", out)
	}

	// The desktop lists an optional job through the client view.
	opt := strings.TrimSpace(pcm("publish", "--url", urls, "--creds", filepath.Join(creds, "ci.creds"), "--signing-key", signing,
		"--client", "c1", "--optional", "--", "echo", "optional"))
	if out := pcm("desktop", "list", "--url", first, "--creds", filepath.Join(creds, "c1-desktop.creds"), "--client-id", "c1"); !strings.Contains(out, opt) {
		t.Fatalf("pcm desktop list does not show the optional job %s:\n%s", opt, out)
	}

	// Revoked through the first member, refused by every member.
	pcm("revoke", "client", "c1", "--url", first, "--creds", admin, "--issuer", issuer)
	c.waitRefused(t, filepath.Join(creds, "c1-agent.creds"), certs.CAFile)
}
