package integration_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/pcm-project/pcm/broker/auth"
	"github.com/pcm-project/pcm/integration/testenv"
)

// composeAuthFile is the authenticated Compose deployment: operator mode,
// one account per principal, TLS (docs/security.md, "The Compose example").
const composeAuthFile = "docker-compose.auth.yml"

// needOpenSSL skips the test when the tls service's script cannot make the
// certificates here (its container installs openssl; this machine must
// have it).
func needOpenSSL(t testing.TB) {
	t.Helper()
	if _, err := exec.LookPath("openssl"); err != nil {
		t.Skip("openssl is not installed: the tls service of docker-compose.auth.yml needs it to make the certificates")
	}
}

// prepareComposeAuth runs, in new volumes, the one-shot services of
// docker-compose.auth.yml that the nats services wait for (tls and init:
// the certificate, the authority, auth.conf), so that the members'
// configuration can be parsed; the volumes are shared by every load of the
// file in the test.
func prepareComposeAuth(t testing.TB) *composeVolumes {
	t.Helper()
	needOpenSSL(t)
	c := loadComposeFile(t, composeAuthFile, nil)
	order, err := c.startOrder()
	if err != nil {
		t.Fatal(err)
	}
	before := map[string]bool{}
	for _, name := range c.serviceNames((*composeService).isNATS) {
		for dep := range c.Services[name].DependsOn {
			before[dep] = true
		}
	}
	for _, name := range order {
		if before[name] {
			c.host.complete(name)
		}
	}
	return c.host.volumes
}

// securityDoc is docs/security.md, read once.
var securityDoc = sync.OnceValues(func() (string, error) {
	b, err := os.ReadFile(filepath.Join(composeRoot, "docs", "security.md"))
	return string(b), err
})

// composeAuthTool runs pcm with args in docker-compose.auth.yml's pcm
// (tools) service, as docs/security.md shows it: pcm-auth ARGS, where
// pcm-auth is docker compose -f docker-compose.auth.yml run --rm pcm (a job
// id in ARGS is written JOB there). The test fails (later) if the document
// does not show the command.
func composeAuthTool(t *testing.T, h *composeHost, args ...string) string {
	t.Helper()
	doc, err := securityDoc()
	if err != nil {
		t.Fatal(err)
	}
	shown := slices.Clone(args)
	for i, a := range shown {
		if jobIDLine.MatchString(a) {
			shown[i] = "JOB"
		}
	}
	line := "\npcm-auth " + strings.Join(shown, " ")
	if !strings.Contains(doc, line+"\n") && !strings.Contains(doc, line+" ") {
		t.Errorf("docs/security.md does not show the command the test runs:%s", line)
	}
	return h.mustRun("pcm", args...)
}

// TestComposeAuthRun runs docker-compose.auth.yml on this machine as docker
// compose up would (composeHost): the tls and init scripts, three
// nats-server processes of go.mod's version from
// docs/examples/compose-auth/nats.conf, provision, the controller, the
// admin's enrollments and the two agents with their own credentials; then
// the commands docs/security.md shows, through the pcm tool service: a
// publisher's and an auditor's credentials, a signed job run by both
// agents, the audit, and a revocation that every member enforces. It also
// starts the file again (docker compose up once more): tls and init keep
// what they made.
func TestComposeAuthRun(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a 3-node cluster")
	}
	needOpenSSL(t)
	c := loadComposeFile(t, composeAuthFile, nil)
	h := c.host
	h.up()
	issuer, _ := os.ReadFile(filepath.Join(h.volume("authority"), auth.IssuerFile))
	signing, _ := os.ReadFile(filepath.Join(h.volume("operator"), "signing.nk"))
	for _, name := range []string{"tls", "init"} {
		h.complete(name)
	}
	if b, _ := os.ReadFile(filepath.Join(h.volume("authority"), auth.IssuerFile)); len(issuer) == 0 || string(b) != string(issuer) {
		t.Fatal("init made another authority when run again")
	}
	if b, _ := os.ReadFile(filepath.Join(h.volume("operator"), "signing.nk")); len(signing) == 0 || string(b) != string(signing) {
		t.Fatal("init made another signing key when run again")
	}

	ca := filepath.Join(h.volume("public"), "ca.pem")
	if nc, err := nats.Connect(h.nats.nodes[0].url(), nats.RootCAs(ca), nats.Timeout(2*time.Second), nats.NoReconnect()); err == nil {
		nc.Close()
		t.Fatal("a client without credentials connected")
	}

	composeAuthTool(t, h, "creds", "publisher", "ci", "--out", "ci.creds")
	composeAuthTool(t, h, "creds", "auditor", "audit", "--out", "audit.creds")
	out := composeAuthTool(t, h, "publish", "--creds", "ci.creds", "--signing-key", "signing.nk", "--group", "lab", "--wait", "--", "echo", "hello")
	job := strings.TrimSpace(strings.Split(out, "\n")[0])
	if !jobIDLine.MatchString(job) {
		t.Fatalf("pcm publish --wait printed %q", out)
	}
	audit := composeAuthTool(t, h, "audit", "--creds", "audit.creds", "--job", job)
	for _, client := range []string{"agent1", "agent2"} {
		if !strings.Contains(audit, client) {
			t.Errorf("pcm audit --job %s shows nothing of %s:\n%s", job, client, audit)
		}
	}
	if n := strings.Count(audit, "succeeded"); n != 2 {
		t.Errorf("pcm audit --job %s shows %d succeeded statuses, want 2:\n%s", job, n, audit)
	}
	if agents := composeAuthTool(t, h, "agents", "--creds", "audit.creds"); !strings.Contains(agents, "agent1") || !strings.Contains(agents, "agent2") {
		t.Errorf("pcm agents does not list both agents:\n%s", agents)
	}

	// An agent's desktop lists its optional jobs through the controller's
	// client view, with the desktop credentials enroll wrote next to the
	// agent's.
	opt := strings.TrimSpace(h.mustRun("pcm", "publish", "--creds", "ci.creds", "--signing-key", "signing.nk", "--client", "agent1", "--optional", "--", "echo", "optional"))
	desktop := filepath.Join(h.volume("agent1-state"), "creds", "agent1-desktop.creds")
	testenv.CheckFor(t, 20*time.Second, "pcm desktop list to show the optional job", func() error {
		out, errOut, code := runPCM(t, []string{"PCM_TLS_CA=" + ca}, "desktop", "list", "--url", h.nats.urls(), "--creds", desktop, "--client-id", "agent1")
		if code != 0 || !strings.Contains(out, opt) {
			return fmt.Errorf("exit %d\n%s%s", code, out, errOut)
		}
		return nil
	})

	composeAuthTool(t, h, "revoke", "client", "agent2")
	h.nats.waitRefused(t, filepath.Join(h.volume("agent2-state"), "creds", "agent2-agent.creds"), ca)
}
