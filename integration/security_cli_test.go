package integration_test

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/pcm-project/pcm/broker/auth"
	"github.com/pcm-project/pcm/events"
	"github.com/pcm-project/pcm/testenv"
)

// TestSecureCLI runs pcm as an operator would with authentication and TLS:
// pcm broker --auth with a certificate, pcm enroll issuing the client's
// credentials, pcm creds for a publisher and an auditor, an agent and a
// publish with their own credentials, and the refusals (no credentials, no
// CA, the agent enrolling itself, pcm up beyond loopback). A restart keeps
// the authority and the data.
func TestSecureCLI(t *testing.T) {
	dir := t.TempDir()
	certs, err := testenv.NewCerts(dir)
	if err != nil {
		t.Fatal(err)
	}
	data := filepath.Join(dir, "data")
	brokerArgs := []string{"broker", "--data", data, "--listen", "127.0.0.1:-1", "--auth",
		"--tls-cert", certs.CertFile, "--tls-key", certs.KeyFile, "--tls-ca", certs.CAFile}
	b := startPCM(t, dir, nil, brokerArgs...)
	url := b.stdout.waitLine(t, brokerReadyLine, 10*time.Second)[1]
	b.stdout.waitLine(t, regexp.MustCompile(`^authentication on: `), 5*time.Second)
	authDir := filepath.Join(data, "auth")
	admin, issuer := filepath.Join(authDir, auth.AdminCredsFile), filepath.Join(authDir, auth.IssuerFile)
	for _, secret := range []string{admin, issuer, filepath.Join(authDir, auth.OperatorSeedFile), filepath.Join(authDir, auth.AccountSeedFile)} {
		assertMode0600(t, secret)
	}
	// Every client command below reaches the broker through TLS.
	tlsEnv := []string{"PCM_TLS_CA=" + certs.CAFile, "PCM_URL=" + url}
	pcm := func(args ...string) (string, string, int) {
		t.Helper()
		return runPCM(t, tlsEnv, args...)
	}
	mustPCM := func(args ...string) string {
		t.Helper()
		out, errOut, code := pcm(args...)
		if code != 0 {
			t.Fatalf("pcm %s exited %d: %s", strings.Join(args, " "), code, errOut)
		}
		return out
	}

	signingKey := filepath.Join(dir, "signing.nk")
	publicKey := strings.TrimSpace(mustPCM("keys", "new", "--out", signingKey))
	credsDir := filepath.Join(dir, "creds")
	out := mustPCM("enroll", "c1", "--group", "g1", "--creds", admin, "--issuer", issuer, "--out-dir", credsDir, "--trusted-keys", publicKey)
	agentCreds, desktopCreds := filepath.Join(credsDir, "c1-agent.creds"), filepath.Join(credsDir, "c1-desktop.creds")
	if !strings.Contains(out, agentCreds) || !strings.Contains(out, desktopCreds) {
		t.Fatalf("pcm enroll said %q, want the paths of both credentials", out)
	}
	assertMode0600(t, agentCreds)
	assertMode0600(t, desktopCreds)
	if b, err := os.ReadFile(filepath.Join(credsDir, "c1-trusted.keys")); err != nil || !strings.Contains(string(b), publicKey) {
		t.Fatalf("pcm enroll wrote no trusted keys next to the credentials: %q, %v", b, err)
	}
	// A second client enrolled without keys: its agent refuses to start.
	mustPCM("enroll", "c2", "--creds", admin, "--issuer", issuer, "--out-dir", credsDir)
	pubCreds, auditCreds := filepath.Join(credsDir, "ci.creds"), filepath.Join(credsDir, "audit.creds")
	mustPCM("creds", "publisher", "ci", "--out", pubCreds, "--issuer", issuer)
	mustPCM("creds", "auditor", "audit", "--out", auditCreds, "--issuer", issuer)
	assertMode0600(t, pubCreds)
	mustPCM("broker", "provision", "--creds", admin)

	t.Run("refusals", func(t *testing.T) {
		for _, tc := range []struct {
			name string
			env  []string
			args []string
			want string
		}{
			{"no credentials", tlsEnv, []string{"publish", "--all", "--", "true"}, "requires credentials"},
			{"no CA", []string{"PCM_URL=" + url}, []string{"publish", "--creds", pubCreds, "--all", "--", "true"}, "certificate"},
			{"an agent enrolling itself", tlsEnv, []string{"agent", "--creds", agentCreds, "--client-id", "c1", "--enroll", "--state-dir", filepath.Join(dir, "x")}, "cannot enroll itself"},
			{"an agent with credentials and no trusted key", tlsEnv, []string{"agent", "--creds", filepath.Join(credsDir, "c2-agent.creds"), "--client-id", "c2", "--state-dir", filepath.Join(dir, "y")}, "--allow-unsigned"},
			{"an agent publishing a job", tlsEnv, []string{"publish", "--creds", agentCreds, "--timeout", "1s", "--all", "--", "true"}, "credentials of the agent of client c1"},
			{"a credentials file that is not one", tlsEnv, []string{"publish", "--creds", certs.CAFile, "--all", "--", "true"}, "credentials"},
			{"pcm up beyond loopback", nil, []string{"up", "--data", filepath.Join(dir, "up"), "--listen", "0.0.0.0:0"}, "loopback only"},
			{"creds without the issuer", nil, []string{"creds", "publisher", "x", "--out", filepath.Join(dir, "x.creds")}, "--issuer"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				_, errOut, code := runPCM(t, tc.env, tc.args...)
				if code == 0 || !strings.Contains(errOut, tc.want) {
					t.Fatalf("exit %d, stderr %q: want a failure mentioning %q", code, tail(errOut, 2000), tc.want)
				}
			})
		}
	})

	// The agent runs with its own credentials; the publisher publishes
	// with its own; the auditor reads the result.
	startPCM(t, dir, tlsEnv, "agent", "--creds", agentCreds, "--client-id", "c1", "--state-dir", filepath.Join(dir, "state"))
	id := strings.TrimSpace(mustPCM("publish", "--creds", pubCreds, "--signing-key", signingKey, "--client", "c1", "--", "echo", "hello"))
	if !jobIDLine.MatchString(id) {
		t.Fatalf("pcm publish printed %q, want a job id", id)
	}
	js := dialSecure(t, url, auth.ClientConfig{CredsFile: auditCreds, CAFile: certs.CAFile})
	fin := finals(waitFinalAsAuditor(t, js, "c1", id, 15*time.Second))
	if fin[0].State != events.StateSucceeded || !strings.Contains(fin[0].OutputTail, "hello") {
		t.Fatalf("want succeeded with hello, got %+v", fin[0])
	}
	if out := mustPCM("status", "--creds", auditCreds, id); !strings.Contains(out, "succeeded") {
		t.Fatalf("pcm status as auditor: %q", out)
	}

	// A restart loads the same authority: every credential still works.
	if err := b.stopGracefully(t, 15*time.Second); err != nil {
		t.Fatalf("pcm broker exited with %v on SIGTERM", err)
	}
	b2 := startPCM(t, dir, nil, brokerArgs...)
	url2 := b2.stdout.waitLine(t, brokerReadyLine, 10*time.Second)[1]
	tlsEnv = []string{"PCM_TLS_CA=" + certs.CAFile, "PCM_URL=" + url2}
	if out := mustPCM("status", "--creds", auditCreds, id); !strings.Contains(out, "succeeded") {
		t.Fatalf("after a restart, pcm status as auditor: %q", out)
	}
}

// assertMode0600 fails unless path is readable by its owner only.
func assertMode0600(t testing.TB, path string) {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if m := fi.Mode().Perm(); m != 0o600 {
		t.Fatalf("%s has mode %o, want 600", path, m)
	}
}

// dialSecure connects with a client configuration, closed at cleanup.
func dialSecure(t testing.TB, url string, cfg auth.ClientConfig) jetstream.JetStream {
	t.Helper()
	opts, err := cfg.Options()
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
