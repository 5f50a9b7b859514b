package integration_test

import (
	"crypto/tls"
	"errors"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/pcm-project/pcm/broker/auth"
	"github.com/pcm-project/pcm/testenv"
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
	members := c.serviceNames((*composeService).isNATS)
	for _, name := range order {
		if slices.ContainsFunc(members, func(n string) bool { return c.after(n, name) }) {
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
	testenv.SameInBothModes(t)
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
	testenv.CheckFor(t, 20*time.Second, 100*time.Millisecond, func() error {
		out, errOut, code := runPCM(t, []string{"PCM_TLS_CA=" + ca}, "desktop", "list", "--url", h.nats.urls(), "--creds", desktop, "--client-id", "agent1")
		if code != 0 || !strings.Contains(out, opt) {
			return fmt.Errorf("pcm desktop list does not show the optional job %s: exit %d\n%s%s", opt, code, out, errOut)
		}
		return nil
	})

	composeAuthTool(t, h, "revoke", "client", "agent2")
	h.nats.waitRefused(t, filepath.Join(h.volume("agent2-state"), "creds", "agent2-agent.creds"), ca)
}

// composeMountOf returns the mount of service s that container path p is
// on (the deepest), and p relative to it.
func composeMountOf(s *composeService, p string) (composeMount, string, bool) {
	var best composeMount
	var rel string
	found := false
	for _, m := range s.Volumes {
		r, ok := strings.CutPrefix(p, strings.TrimSuffix(m.Target, "/")+"/")
		if p == m.Target {
			r, ok = ".", true
		}
		if ok && (!found || len(m.Target) > len(best.Target)) {
			best, rel, found = m, r, true
		}
	}
	return best, rel, found
}

// composeFlagValues returns every value of --name in args.
func composeFlagValues(args []string, name string) []string {
	var out []string
	for i, a := range args {
		if v, ok := strings.CutPrefix(a, "--"+name+"="); ok {
			out = append(out, v)
		} else if a == "--"+name && i+1 < len(args) {
			out = append(out, args[i+1])
		}
	}
	return out
}

// composeSetting is a pcm setting of service s: its flag --name, or its
// environment variable.
func composeSetting(s *composeService, name string) (string, bool) {
	if v, ok := composeFlag(s.Command, name); ok {
		return v, true
	}
	v, ok := s.Environment[envNameOf(name)]
	return v, ok
}

// envNameOf is pcm's environment variable of flag --name.
func envNameOf(name string) string {
	return "PCM_" + strings.ToUpper(strings.ReplaceAll(name, "-", "_"))
}

// checkComposeEnrolledAgent: agent service name (client id) of an
// authenticated cluster runs with the credentials an admin's pcm enroll
// wrote into its own volume, after that enrollment, in the groups it was
// enrolled in, and never enrolls itself.
func checkComposeEnrolledAgent(c *composeFile, name, id string) error {
	s := c.Services[name]
	if slices.Contains(s.Command, "--enroll") {
		return errors.New("--enroll: an agent with credentials cannot enroll itself (an admin's pcm enroll decides its groups)")
	}
	creds, ok := composeFlag(s.Command, "creds")
	if !ok {
		return errors.New("no --creds: the cluster refuses a client without credentials")
	}
	m, rel, ok := composeMountOf(s, creds)
	if !ok || !m.named() || m.ReadOnly {
		return fmt.Errorf("its credentials %s are not on a writable named volume of its own", creds)
	}
	for _, other := range c.serviceNames(func(o *composeService) bool {
		return slices.ContainsFunc(o.Volumes, func(om composeMount) bool { return om.Source == m.Source })
	}) {
		if other != name && !(c.Services[other].isPCM() && slices.Equal(c.Services[other].Command[:min(2, len(c.Services[other].Command))], []string{"enroll", id})) {
			return fmt.Errorf("volume %s, which holds its credentials, is also mounted by %s", m.Source, other)
		}
	}
	enrolls := c.serviceNames(func(o *composeService) bool {
		return o.isPCM() && len(o.Command) >= 2 && o.Command[0] == "enroll" && o.Command[1] == id
	})
	if len(enrolls) != 1 {
		return fmt.Errorf("%d services run pcm enroll %s (%v), want one: an admin enrolls the client and writes its credentials", len(enrolls), id, enrolls)
	}
	e := c.Services[enrolls[0]]
	out, _ := composeFlag(e.Command, "out-dir")
	em, erel, ok := composeMountOf(e, out)
	if !ok || em.Source != m.Source || path.Clean(erel) != path.Dir(rel) {
		return fmt.Errorf("--creds %s is not where %s writes the credentials (--out-dir %s)", creds, enrolls[0], out)
	}
	if path.Base(rel) != id+"-agent.creds" {
		return fmt.Errorf("--creds %s: pcm enroll writes the agent's credentials to %s-agent.creds", creds, id)
	}
	if !c.after(name, enrolls[0]) {
		return fmt.Errorf("does not wait for %s to complete (service_completed_successfully): it would start without credentials", enrolls[0])
	}
	if g, eg := composeFlagValues(s.Command, "groups"), composeFlagValues(e.Command, "group"); strings.Join(g, ",") != strings.Join(eg, ",") {
		return fmt.Errorf("--groups %v, but %s enrolls it in %v: its inventory would report other groups than it receives jobs for", g, enrolls[0], eg)
	}
	if _, ok := composeFlag(e.Command, "issuer"); !ok {
		return fmt.Errorf("%s has no --issuer: it cannot make the client's account and credentials", enrolls[0])
	}
	if len(composeFlagValues(e.Command, "trusted-keys"))+len(composeFlagValues(e.Command, "trusted-keys-file")) == 0 {
		return fmt.Errorf("%s gives no --trusted-keys: the agent would refuse every job", enrolls[0])
	}
	return nil
}

// checkComposeAuthCluster: the nats services run pcm's trust model: operator
// mode with one operator and a system account, the full account resolver
// (an account pushed through one member reaches every member), TLS for
// clients and mutual TLS for routes.
func checkComposeAuthCluster(c *composeFile) error {
	nodes, err := composeNATSNodes(c)
	if err != nil {
		return err
	}
	var errs []error
	operators := map[string]bool{}
	for _, name := range slices.Sorted(maps.Keys(nodes)) {
		o := nodes[name].opts
		fail := func(format string, args ...any) {
			errs = append(errs, fmt.Errorf("%w: service %s: "+format, append([]any{errComposeAuth, name}, args...)...))
		}
		if len(o.TrustedOperators) == 0 {
			fail("not in operator mode: include the auth.conf pcm broker nats-config makes")
			continue
		}
		operators[o.TrustedOperators[0].Subject] = true
		if o.SystemAccount == "" {
			fail("no system account: enrollments could not push accounts")
		}
		if _, ok := o.AccountResolver.(*server.DirAccResolver); !ok {
			fail("account resolver %T is not the full one (type: full): an account pushed through another member would not reach it", o.AccountResolver)
		}
		if o.TLSConfig == nil {
			fail("clients connect without TLS: add a tls block")
		}
		if o.Cluster.TLSConfig == nil || o.Cluster.TLSConfig.ClientAuth != tls.RequireAndVerifyClientCert {
			fail("routes without mutual TLS: add a tls block with verify: true to the cluster block")
		}
	}
	if len(operators) > 1 {
		errs = append(errs, fmt.Errorf("%w: the nats services trust %d operators: every member must include the same auth.conf", errComposeAuth, len(operators)))
	}
	return errors.Join(errs...)
}

// checkComposeAuthClients: every pcm service that connects to an
// authenticated cluster does so over TLS (--tls-ca or PCM_TLS_CA) with
// credentials (--creds, or an issuer to mint an admin), each a file on one
// of its mounts; a controller serves the client view once provisioning
// succeeded (desktops list their jobs through it).
func checkComposeAuthClients(c *composeFile) error {
	var errs []error
	for _, name := range c.serviceNames((*composeService).isPCM) {
		s := c.Services[name]
		if _, ok := composeSetting(s, "url"); !ok {
			continue // it does not connect
		}
		fail := func(format string, args ...any) {
			errs = append(errs, fmt.Errorf("%w: service %s: "+format, append([]any{errComposeAuth, name}, args...)...))
		}
		if ca, ok := composeSetting(s, "tls-ca"); !ok {
			fail("no --tls-ca: the members require TLS")
		} else if _, _, ok := composeMountOf(s, ca); !ok {
			fail("--tls-ca %s is on none of its mounts", ca)
		}
		creds, ok := composeSetting(s, "creds")
		if !ok {
			creds, ok = composeSetting(s, "issuer")
		}
		if !ok {
			fail("no --creds (nor --issuer to mint an admin): the members refuse a client without credentials")
		} else if _, _, ok := composeMountOf(s, creds); !ok {
			fail("its credentials %s are on none of its mounts", creds)
		}
	}
	provisioners := c.serviceNames(func(s *composeService) bool { return s.isPCM() && s.pcmPath() == "broker provision" })
	controllers := c.serviceNames(func(s *composeService) bool { return s.isPCM() && s.pcmPath() == "controller" })
	if len(controllers) == 0 {
		errs = append(errs, fmt.Errorf("%w: no service runs pcm controller: stock nats-server serves no client view, and desktops could not list their jobs", errComposeAuth))
	}
	for _, ctl := range controllers {
		for _, p := range provisioners {
			if !c.after(ctl, p) {
				errs = append(errs, fmt.Errorf("%w: service %s does not wait for %s to complete: the client view reads the streams", errComposeAuth, ctl, p))
			}
		}
	}
	return errors.Join(errs...)
}

// checkComposeSecrets: no nats service and no agent mounts a volume that
// holds an issuer or an admin's credentials (the files behind the --issuer
// and, but for agents, --creds of the pcm services).
func checkComposeSecrets(c *composeFile) error {
	secrets := map[string]string{} // volume -> what it holds
	for _, name := range c.serviceNames((*composeService).isPCM) {
		s := c.Services[name]
		for _, flag := range []string{"issuer", "creds"} {
			if flag == "creds" && s.pcmPath() == "agent" {
				continue
			}
			if v, ok := composeSetting(s, flag); ok {
				if m, _, ok := composeMountOf(s, v); ok && m.named() {
					secrets[m.Source] = v
				}
			}
		}
	}
	var errs []error
	for _, name := range c.serviceNames(func(s *composeService) bool { return s.isNATS() || (s.isPCM() && s.pcmPath() == "agent") }) {
		for _, m := range c.Services[name].Volumes {
			if what, ok := secrets[m.Source]; ok {
				errs = append(errs, fmt.Errorf("%w: service %s mounts volume %s, which holds %s: only admin services may", errComposeSecrets, name, m.Source, what))
			}
		}
	}
	return errors.Join(errs...)
}

// composeAuthChecks are the checks of docker-compose.auth.yml: those of
// docker-compose.yml and those of an authenticated deployment.
var composeAuthChecks = append(slices.Clone(composeChecks), []struct {
	name  string
	check func(*composeFile) error
}{
	{"authenticated cluster", checkComposeAuthCluster},
	{"authenticated clients", checkComposeAuthClients},
	{"secrets", checkComposeSecrets},
}...)

// TestComposeAuthFile checks docker-compose.auth.yml with every check, its
// nats services' configuration parsed once the services they wait for (tls,
// init) have made the files it includes.
func TestComposeAuthFile(t *testing.T) {
	c := loadComposeFile(t, composeAuthFile, prepareComposeAuth(t))
	for _, tc := range composeAuthChecks {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.check(c); err != nil {
				t.Error(err)
			}
		})
	}
}

// TestComposeAuthChecksCatchMistakes breaks docker-compose.auth.yml one way
// at a time and asserts that the check in charge reports it.
func TestComposeAuthChecksCatchMistakes(t *testing.T) {
	volumes := prepareComposeAuth(t)
	drop := func(args composeStrings, flag string) composeStrings {
		i := slices.Index(args, flag)
		return slices.Delete(slices.Clone(args), i, i+2)
	}
	cases := []composeMistake{
		{"member in open mode", checkComposeAuthCluster, errComposeAuth, func(c *composeFile) {
			c.Services["n1"].Volumes[0].Source = "./docs/examples/stock-cluster/nats-1.conf"
		}},
		{"client without TLS", checkComposeAuthClients, errComposeAuth, func(c *composeFile) {
			c.Services["provision"].Command = drop(c.Services["provision"].Command, "--tls-ca")
		}},
		{"client without credentials", checkComposeAuthClients, errComposeAuth, func(c *composeFile) {
			c.Services["controller"].Command = drop(c.Services["controller"].Command, "--creds")
		}},
		{"CA off every mount", checkComposeAuthClients, errComposeAuth, func(c *composeFile) {
			c.Services["agent1"].Command = composeSetElem(c.Services["agent1"].Command, "/pcm/public/ca.pem", "/etc/ca.pem")
		}},
		{"no controller", checkComposeAuthClients, errComposeAuth, func(c *composeFile) {
			delete(c.Services, "controller")
		}},
		{"agent without credentials", checkComposeAgents, errComposeAgents, func(c *composeFile) {
			c.Services["agent1"].Command = drop(c.Services["agent1"].Command, "--creds")
		}},
		{"agent enrolling itself", checkComposeAgents, errComposeAgents, func(c *composeFile) {
			c.Services["agent2"].Command = append(c.Services["agent2"].Command, "--enroll")
		}},
		{"agent with another client's credentials", checkComposeAgents, errComposeAgents, func(c *composeFile) {
			c.Services["agent1"].Command = composeSetElem(c.Services["agent1"].Command, "/var/lib/pcm/creds/agent1-agent.creds", "/var/lib/pcm/creds/agent2-agent.creds")
		}},
		{"agent before its enrollment", checkComposeAgents, errComposeAgents, func(c *composeFile) {
			c.Services["agent2"].DependsOn["enroll-agent2"] = "service_started"
		}},
		{"enrollment into another volume", checkComposeAgents, errComposeAgents, func(c *composeFile) {
			c.Services["enroll-agent1"].Volumes[2].Source = "operator"
		}},
		{"enrollment without trusted keys", checkComposeAgents, errComposeAgents, func(c *composeFile) {
			c.Services["enroll-agent2"].Command = drop(c.Services["enroll-agent2"].Command, "--trusted-keys-file")
		}},
		{"agent in other groups than enrolled", checkComposeAgents, errComposeAgents, func(c *composeFile) {
			c.Services["agent1"].Command = composeSetElem(c.Services["agent1"].Command, "lab", "prod")
		}},
		{"member mounting the authority", checkComposeSecrets, errComposeSecrets, func(c *composeFile) {
			c.Services["n3"].Volumes = append(c.Services["n3"].Volumes, composeMount{Source: "authority", Target: "/etc/nats/authority", ReadOnly: true})
		}},
		{"agent mounting the authority", checkComposeSecrets, errComposeSecrets, func(c *composeFile) {
			c.Services["agent2"].Volumes = append(c.Services["agent2"].Volumes, composeMount{Source: "authority", Target: "/pcm/authority", ReadOnly: true})
		}},
		{"agent not waiting for the enrollment writing its volume", checkComposeVolumes, errComposeVolumes, func(c *composeFile) {
			c.Services["agent1"].DependsOn = composeDependsOn{"provision": "service_completed_successfully"}
		}},
		{"script not in the repository", checkComposePCMCommands, errComposePCMCommand, func(c *composeFile) {
			c.Services["init"].Entrypoint = composeStrings{"/bin/sh", "/pcm/compose/nope.sh"}
		}},
		{"enroll without its client", checkComposePCMCommands, errComposePCMCommand, func(c *composeFile) {
			c.Services["enroll-agent1"].Command = slices.Delete(slices.Clone(c.Services["enroll-agent1"].Command), 1, 2)
		}},
	}
	checkComposeMistakes(t, func(t *testing.T) *composeFile { return loadComposeFile(t, composeAuthFile, volumes) }, cases)
}
