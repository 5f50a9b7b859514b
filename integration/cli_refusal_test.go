package integration_test

import (
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/pcm-project/pcm/broker/auth"
	"github.com/pcm-project/pcm/testenv"
)

// TestCLIRefusedCredentials: a command whose credentials the broker
// refuses ends at once (not after retrying no-responders) with one last
// line naming what was refused and whose credentials (role and name) do
// not allow it, exit 1, and no stack trace or source location above it.
func TestCLIRefusedCredentials(t *testing.T) {
	testenv.SameInBothModes(t)
	env := testenv.StartBroker(t, testenv.WithAuth())
	enroll(t, env.JS, "rc1", "lab")
	sec := testenv.SecurityOf(env.URL)
	withCreds := func(u auth.User) (string, []string) {
		creds := sec.Creds(t, u)
		e := []string{"PCM_CREDS=" + creds}
		if sec.Certs != nil {
			e = append(e, "PCM_TLS_CA="+sec.Certs.CAFile)
		}
		return creds, e
	}
	auditor, auditorEnv := withCreds(auth.User{Role: auth.RoleAuditor, Name: "aud1"})
	agentCreds, agentEnv := withCreds(auth.User{Role: auth.RoleAgent, Name: "rc1"})
	desktop, desktopEnv := withCreds(auth.User{Role: auth.RoleDesktop, Name: "rc1"})
	publisher, publisherEnv := withCreds(auth.User{Role: auth.RolePublisher, Name: "pub1"})
	// refused is the line of a refusal of subject (a pattern) to creds.
	refused := func(subject, creds, who string) *regexp.Regexp {
		return regexp.MustCompile(`^pcm: the broker refused to publish to ` + subject + `: the credentials in ` + regexp.QuoteMeta(creds) +
			` \(` + who + `\) do not allow it \(docs/security.md lists what each role may do\)$`)
	}
	// clientCreds is the line of command refusing creds of a client's face.
	clientCreds := func(command, creds, face string) *regexp.Regexp {
		return regexp.MustCompile(`^pcm: ` + command + `: ` + regexp.QuoteMeta(creds) + ` holds the credentials of the ` + face +
			` of client rc1, whose account reaches only its own client: give a publisher's \(pcm creds publisher NAME\), an auditor's \(pcm creds auditor NAME\) or an admin's$`)
	}
	for _, tc := range []struct {
		name string
		env  []string
		args []string
		want *regexp.Regexp
	}{
		{"an auditor publishing", auditorEnv, []string{"publish", "--url", env.URL, "--timeout", "1s", "--all", "--", "true"}, refused(`\S+`, auditor, "auditor aud1")},
		{"an agent cancelling", agentEnv, []string{"cancel", "--url", env.URL, "01M8QF139E8JH1R7B9FRSM91DV"}, clientCreds("pcm cancel", agentCreds, "agent")},
		{"a desktop auditing", desktopEnv, []string{"audit", "--url", env.URL}, clientCreds("pcm audit", desktop, "desktop")},
		{"a desktop reading a status", desktopEnv, []string{"status", "--url", env.URL, "01M8QF139E8JH1R7B9FRSM91DV"}, clientCreds("pcm status", desktop, "desktop")},
		{"an agent listing agents", agentEnv, []string{"agents", "--url", env.URL}, clientCreds("pcm agents", agentCreds, "agent")},
		{"an auditor enrolling", auditorEnv, []string{"enroll", "--url", env.URL, "rc2"}, refused(`\$JS\.API\.CONSUMER\.CREATE\.PCM_JOBS\.agent-rc2`, auditor, "auditor aud1")},
		{"a publisher enrolling", publisherEnv, []string{"enroll", "--url", env.URL, "rc2"}, refused(`\S+`, publisher, "publisher pub1")},
		{"an auditor pushing a package", auditorEnv, []string{"package", "push", "--url", env.URL, "--name", "p", "--version", "1", "cli_refusal_test.go"},
			refused(`\$O\.PCM_PACKAGES\.C\.\S+`, auditor, "auditor aud1")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			start := time.Now()
			out, errOut, code := runPCM(t, tc.env, tc.args...)
			took := time.Since(start)
			if code != 1 || out != "" || !tc.want.MatchString(lastLine(errOut)) {
				t.Fatalf("pcm %s: exit %d, stdout %q, last line %q; want exit 1 and a line matching %s\nstderr:\n%s",
					strings.Join(tc.args, " "), code, out, lastLine(errOut), tc.want, errOut)
			}
			for _, internal := range []string{"stacktrace", "caller", ".go:", "goroutine "} {
				if strings.Contains(errOut, internal) {
					t.Fatalf("pcm %s shows %q:\n%s", strings.Join(tc.args, " "), internal, errOut)
				}
			}
			if took > 5*time.Second {
				t.Fatalf("pcm %s took %s to end", strings.Join(tc.args, " "), took)
			}
		})
	}
}

// TestCLINamesThePublisher: what a publisher publishes and pushes is named
// after its credentials' user, and a signed job after its signing key too,
// in pcm status, pcm audit and pcm package list.
func TestCLINamesThePublisher(t *testing.T) {
	testenv.SameInBothModes(t)
	env := testenv.StartBroker(t, testenv.WithAuth())
	enroll(t, env.JS, "np1")
	sec := testenv.SecurityOf(env.URL)
	procEnv := []string{"PCM_CREDS=" + sec.Creds(t, auth.User{Role: auth.RolePublisher, Name: "ci7"})}
	if sec.Certs != nil {
		procEnv = append(procEnv, "PCM_TLS_CA="+sec.Certs.CAFile)
	}
	dir := t.TempDir()
	key := filepath.Join(dir, "signing.nk")
	out, errOut, code := runPCM(t, nil, "keys", "new", "--out", key)
	if code != 0 {
		t.Fatalf("pcm keys new: %s", errOut)
	}
	pub := strings.TrimSpace(out)
	out, errOut, code = runPCM(t, procEnv, "publish", "--url", env.URL, "--signing-key", key, "--client", "np1", "--", "true")
	id := strings.TrimSpace(out)
	if code != 0 || !jobIDLine.MatchString(id) {
		t.Fatalf("pcm publish: exit %d, %q %q", code, out, errOut)
	}
	signer := "ci7 (signed by " + pub[:12] + "..." + pub[len(pub)-4:] + ")"
	out, _, _ = runPCM(t, procEnv, "status", "--url", env.URL, id)
	if first := strings.SplitN(out, "\n", 2)[0]; !regexp.MustCompile(`^job ` + id + ` by ` + regexp.QuoteMeta(signer) + ` at \S+ to client:np1, expires \S+$`).MatchString(first) {
		t.Fatalf("pcm status's first line %q does not name %s", first, signer)
	}
	out, _, _ = runPCM(t, procEnv, "audit", "--url", env.URL, "--job", id)
	if !regexp.MustCompile(`(?m)^\S+ +offered +` + id + ` +client:np1 +- +` + regexp.QuoteMeta(signer) + `$`).MatchString(out) {
		t.Fatalf("pcm audit does not name %s:\n%s", signer, out)
	}
	if _, errOut, code := runPCM(t, procEnv, "package", "push", "--url", env.URL, "--name", "np", "--version", "1", "cli_refusal_test.go"); code != 0 {
		t.Fatalf("pcm package push: %s", errOut)
	}
	out, _, _ = runPCM(t, procEnv, "package", "list", "--url", env.URL)
	if !regexp.MustCompile(`(?m)^np +1 +.* ci7$`).MatchString(out) {
		t.Fatalf("pcm package list does not name ci7:\n%s", out)
	}
}
