package auth_test

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats.go"

	"github.com/pcm-project/pcm/broker/auth"
	"github.com/pcm-project/pcm/events"
)

func TestSetupCreatesThenLoads(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "auth")
	a, created, err := auth.Setup(dir)
	if err != nil || !created {
		t.Fatalf("first Setup: created %v, %v", created, err)
	}
	if fi, err := os.Stat(dir); err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("auth dir mode: %v %v", fi.Mode(), err)
	}
	for name, mode := range map[string]os.FileMode{
		auth.OperatorSeedFile: 0o600, auth.AccountSeedFile: 0o600, auth.IssuerFile: 0o600, auth.AdminCredsFile: 0o600,
		auth.OperatorJWTFile: 0o644, auth.AccountJWTFile: 0o644, auth.SystemJWTFile: 0o644,
	} {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != mode {
			t.Errorf("%s has mode %o, want %o", name, fi.Mode().Perm(), mode)
		}
	}
	before, err := os.Stat(filepath.Join(dir, auth.AccountJWTFile))
	if err != nil {
		t.Fatal(err)
	}
	b, created, err := auth.Setup(dir)
	if err != nil || created {
		t.Fatalf("second Setup: created %v, %v", created, err)
	}
	// An authority that is up to date is read, not signed again.
	if after, err := os.Stat(filepath.Join(dir, auth.AccountJWTFile)); err != nil || !after.ModTime().Equal(before.ModTime()) {
		t.Fatalf("second Setup rewrote %s: %v", auth.AccountJWTFile, err)
	}
	if b.Account() != a.Account() || b.Trust() != a.Trust() {
		t.Fatal("second Setup made another authority")
	}
	oc, ac, err := b.Trust().Decode()
	if err != nil || !oc.DidSign(ac) || !ac.Limits.IsJSEnabled() {
		t.Fatalf("trust: %v", err)
	}
	if _, err := b.Trust().System(); err != nil {
		t.Fatal(err)
	}
	uc, err := auth.CredsUser(filepath.Join(dir, auth.AdminCredsFile))
	if err != nil || uc.IssuerAccount != a.Account() || uc.Name != "admin-admin" {
		t.Fatalf("admin creds: %+v, %v", uc, err)
	}
}

func TestLoadErrors(t *testing.T) {
	good := filepath.Join(t.TempDir(), "auth")
	if _, _, err := auth.Setup(good); err != nil {
		t.Fatal(err)
	}
	other := filepath.Join(t.TempDir(), "auth")
	if _, _, err := auth.Setup(other); err != nil {
		t.Fatal(err)
	}
	mixed := t.TempDir()
	if err := auth.CopyPublic(good, mixed); err != nil {
		t.Fatal(err)
	}
	copyFile(t, filepath.Join(other, auth.IssuerFile), filepath.Join(mixed, auth.IssuerFile))
	foreignAccount := t.TempDir()
	copyFile(t, filepath.Join(good, auth.OperatorJWTFile), filepath.Join(foreignAccount, auth.OperatorJWTFile))
	copyFile(t, filepath.Join(other, auth.AccountJWTFile), filepath.Join(foreignAccount, auth.AccountJWTFile))
	copyFile(t, filepath.Join(good, auth.SystemJWTFile), filepath.Join(foreignAccount, auth.SystemJWTFile))
	garbage := t.TempDir()
	for _, f := range auth.PublicFiles {
		if err := os.WriteFile(filepath.Join(garbage, f), []byte("not a jwt"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		name string
		dir  string
		want error
	}{
		{"empty dir", t.TempDir(), auth.ErrNoAuthority},
		{"issuer of another authority", mixed, auth.ErrBadAuthority},
		{"account not signed by the operator", foreignAccount, auth.ErrBadAuthority},
		{"not JWTs", garbage, auth.ErrBadAuthority},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := auth.Load(tc.dir); !errors.Is(err, tc.want) {
				t.Fatalf("Load: %v, want %v", err, tc.want)
			}
		})
	}
	a, err := auth.Load(good)
	if err != nil {
		t.Fatal(err)
	}
	noKey := t.TempDir()
	if err := auth.CopyPublic(good, noKey); err != nil {
		t.Fatal(err)
	}
	b, err := auth.Load(noKey)
	if err != nil {
		t.Fatalf("a member's copy (JWTs only) must load: %v", err)
	}
	if _, err := b.Issuer(); !errors.Is(err, auth.ErrNoAuthority) {
		t.Fatalf("Issuer without the issuer file: %v", err)
	}
	if _, err := a.Issuer(); err != nil {
		t.Fatal(err)
	}
}

func TestLoadIssuerErrors(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "auth")
	if _, _, err := auth.Setup(dir); err != nil {
		t.Fatal(err)
	}
	notKey := filepath.Join(t.TempDir(), "x")
	if err := os.WriteFile(notKey, []byte("hello"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, path string
		want       error
	}{
		{"missing", filepath.Join(t.TempDir(), "nope"), auth.ErrNoAuthority},
		{"not an issuer file", notKey, auth.ErrBadAuthority},
		{"user credentials", filepath.Join(dir, auth.AdminCredsFile), auth.ErrBadAuthority},
		{"a JWT", filepath.Join(dir, auth.AccountJWTFile), auth.ErrBadAuthority},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := auth.LoadIssuer(tc.path); !errors.Is(err, tc.want) {
				t.Fatalf("LoadIssuer: %v, want %v", err, tc.want)
			}
		})
	}
	iss, err := auth.LoadIssuer(filepath.Join(dir, auth.IssuerFile))
	if err != nil {
		t.Fatal(err)
	}
	ciAccount, err := iss.AccountOf(auth.Principal{Kind: auth.KindPublisher, Name: "ci"})
	if err != nil {
		t.Fatal(err)
	}
	creds, err := iss.Issue(auth.User{Role: auth.RolePublisher, Name: "ci", TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "sub", "ci.creds")
	if err := auth.WriteCreds(path, creds); err != nil {
		t.Fatal(err)
	}
	uc, err := auth.CredsUser(path)
	if err != nil {
		t.Fatal(err)
	}
	if uc.Expires == 0 || uc.IssuerAccount != ciAccount || !slices.Contains(uc.Tags, "pcm-role:publisher") {
		t.Fatalf("issued user: %+v", uc)
	}
	if vr := (jwt.ValidationResults{}); true {
		uc.Validate(&vr)
		if vr.IsBlocking(true) {
			t.Fatalf("issued JWT does not validate: %v", vr.Errors())
		}
	}
	// Every principal's user connects with its private inbox prefix, from
	// the file or from memory, the agent (whose JWT allows its whole
	// account) included.
	for _, u := range []auth.User{{Role: auth.RoleAgent, Name: "c1"}, {Role: auth.RoleDesktop, Name: "c1"},
		{Role: auth.RolePublisher, Name: "ci"}, {Role: auth.RoleAuditor, Name: "audit"}} {
		creds, err := iss.Issue(u)
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(t.TempDir(), u.UserName()+".creds")
		if err := auth.WriteCreds(path, creds); err != nil {
			t.Fatal(err)
		}
		fromFile, err := auth.ClientConfig{CredsFile: path}.Options()
		if err != nil {
			t.Fatal(err)
		}
		fromMemory, err := auth.CredsOption(creds)
		if err != nil {
			t.Fatal(err)
		}
		for _, opts := range [][]nats.Option{fromFile, {fromMemory}} {
			var o nats.Options
			for _, opt := range opts {
				if err := opt(&o); err != nil {
					t.Fatal(err)
				}
			}
			if o.InboxPrefix != u.InboxPrefix() {
				t.Errorf("%s connects with inbox prefix %q, want %q", u.UserName(), o.InboxPrefix, u.InboxPrefix())
			}
		}
	}
}

func TestUserValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		u    auth.User
		want error
	}{
		{"unknown role", auth.User{Role: "root", Name: "x"}, auth.ErrInvalidUser},
		{"empty name", auth.User{Role: auth.RoleAgent}, auth.ErrInvalidUser},
		{"dotted client id", auth.User{Role: auth.RoleAgent, Name: "a.b"}, auth.ErrInvalidUser},
		{"wildcard client id", auth.User{Role: auth.RoleDesktop, Name: "*"}, auth.ErrInvalidUser},
		{"negative TTL", auth.User{Role: auth.RoleAuditor, Name: "a", TTL: -time.Second}, auth.ErrInvalidUser},
		{"agent", auth.User{Role: auth.RoleAgent, Name: "ws-042"}, nil},
		{"admin", auth.User{Role: auth.RoleAdmin, Name: "root_1"}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := auth.Permissions(tc.u)
			if !errors.Is(err, tc.want) || (tc.want == nil) != (err == nil) {
				t.Fatalf("Permissions: %v, want %v", err, tc.want)
			}
		})
	}
	if _, err := auth.ParseRole("Publisher"); err != nil {
		t.Fatal(err)
	}
	if _, err := auth.ParseRole("root"); !errors.Is(err, auth.ErrInvalidUser) {
		t.Fatalf("ParseRole(root): %v", err)
	}
}

// TestPermissionsShape pins the properties the permission tests rely on:
// every role but admin and agent has a private inbox and no wildcard over
// its whole account (an agent's JWT allows its whole account, which its
// account's imports confine; its desktop's grants do not reach the agent's
// inbox), and what a client's account imports names only that client (but
// the shared package content and the cancellation records).
func TestPermissionsShape(t *testing.T) {
	for _, r := range auth.Roles {
		u := auth.User{Role: r, Name: "c1"}
		p, err := auth.Permissions(u)
		if err != nil {
			t.Fatal(err)
		}
		if r == auth.RoleAdmin || r == auth.RoleAgent {
			if !slices.Equal(p.Pub.Allow, jwt.StringList{">"}) || !slices.Equal(p.Sub.Allow, jwt.StringList{">"}) {
				t.Fatalf("%s may not use its whole account: %+v", r, p)
			}
			continue
		}
		if !slices.Contains(p.Sub.Allow, u.InboxPrefix()+".>") {
			t.Errorf("%s has no private inbox: %v", r, p.Sub.Allow)
		}
		for _, s := range append(append([]string{}, p.Pub.Allow...), p.Sub.Allow...) {
			if s == ">" || strings.HasPrefix(s, "_INBOX.") || s == "$JS.API.>" || s == "$KV.>" {
				t.Errorf("%s may use %q", r, s)
			}
		}
	}
	desktop, err := auth.Permissions(auth.User{Role: auth.RoleDesktop, Name: "c1"})
	if err != nil {
		t.Fatal(err)
	}
	agentInbox := auth.User{Role: auth.RoleAgent, Name: "c1"}.InboxPrefix() + ".x"
	for _, s := range desktop.Sub.Allow {
		if jwt.Subject(agentInbox).IsContainedIn(jwt.Subject(s)) {
			t.Errorf("the desktop may subscribe to %q, which holds the agent's inbox", s)
		}
	}
	imports, err := auth.Imports(auth.Principal{Kind: auth.KindClient, Name: "c1", Groups: []string{"g1"}})
	if err != nil {
		t.Fatal(err)
	}
	for _, im := range imports {
		switch s := im.Subject; {
		case strings.Contains(s, "PCM_PACKAGES"), strings.Contains(s, "PCM_RELEASES.channel."), strings.HasPrefix(s, "pcm.releases.channel."), s == "pcm.jobs.all", s == "pcm.jobs.group.g1", s == "pcm.none",
			s == events.LiveSubject("pcm.jobs.all"), s == events.LiveSubject("pcm.jobs.group.g1"),
			s == "$JS.API.DIRECT.GET.PCM_JOBS."+events.SubjectJobsCancels, s == "$JS.API.DIRECT.GET.PCM_JOBS."+events.SubjectJobsHalts:
			// shared content, the release channels' signed manifests, its
			// group, the cancellation and halt records, the shadow
		case !strings.Contains(s, "c1"):
			t.Errorf("the account of client c1 imports %q, which does not name its client", s)
		}
	}
}

// TestImportsAreExported: every import of every kind of principal falls
// within an export of the pcm account (the broker would ignore one that
// does not), with the right kind.
func TestImportsAreExported(t *testing.T) {
	for _, p := range []auth.Principal{
		{Kind: auth.KindClient, Name: "c1", Groups: []string{"g1", "g2"}},
		{Kind: auth.KindPublisher, Name: "ci"},
		{Kind: auth.KindAuditor, Name: "audit"},
		{Kind: auth.KindSite, Name: "branch1", Clients: []string{"c1", "c2"}},
	} {
		imports, err := auth.Imports(p)
		if err != nil {
			t.Fatal(err)
		}
		for _, im := range imports {
			found := false
			for _, e := range auth.Exports() {
				if e.Stream == im.Stream && jwt.Subject(im.Subject).IsContainedIn(jwt.Subject(e.Subject)) {
					found = true
				}
			}
			if !found {
				t.Errorf("%s imports %q (stream %v), which the pcm account does not export", p, im.Subject, im.Stream)
			}
		}
	}
}

// TestPrincipalAccounts: a principal's account is always the same (derived
// from the issuer's secret), differs between principals, validates, and
// carries the revocations it is given.
func TestPrincipalAccounts(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "auth")
	a, _, err := auth.Setup(dir)
	if err != nil {
		t.Fatal(err)
	}
	iss, err := a.Issuer()
	if err != nil {
		t.Fatal(err)
	}
	c1 := auth.Principal{Kind: auth.KindClient, Name: "c1", Groups: []string{"lab"}}
	p1, _ := iss.AccountOf(c1)
	again, _ := iss.AccountOf(auth.Principal{Kind: auth.KindClient, Name: "c1"})
	other, _ := iss.AccountOf(auth.Principal{Kind: auth.KindClient, Name: "c2"})
	pub1, _ := iss.AccountOf(auth.Principal{Kind: auth.KindPublisher, Name: "c1"})
	if p1 != again || p1 == other || p1 == pub1 || p1 == a.Account() {
		t.Fatalf("account keys: c1 %s, c1 again %s, c2 %s, publisher c1 %s", p1, again, other, pub1)
	}
	rev := jwt.RevocationList{}
	rev.Revoke(jwt.All, time.Unix(1_800_000_000, 0))
	tok, err := iss.PrincipalAccount(c1, rev)
	if err != nil {
		t.Fatal(err)
	}
	ac, err := jwt.DecodeAccountClaims(tok)
	if err != nil {
		t.Fatal(err)
	}
	var vr jwt.ValidationResults
	ac.Validate(&vr)
	if vr.IsBlocking(true) {
		t.Fatalf("account JWT does not validate: %v", vr.Errors())
	}
	oc, _, _ := a.Trust().Decode()
	if ac.Subject != p1 || ac.Name != "client:c1" || !oc.DidSign(ac) || ac.Limits.IsJSEnabled() || ac.Revocations[jwt.All] != 1_800_000_000 {
		t.Fatalf("account claims: %+v", ac)
	}
	if ac.Limits.Conn <= 0 || ac.Limits.Subs <= 0 || ac.Limits.Payload <= 0 || ac.Limits.LeafNodeConn != 0 {
		t.Fatalf("account limits: %+v", ac.Limits)
	}
	if _, err := iss.PrincipalAccount(auth.Principal{Kind: "root", Name: "x"}, nil); !errors.Is(err, auth.ErrInvalidUser) {
		t.Fatalf("unknown kind: %v", err)
	}
	if _, err := iss.PrincipalAccount(auth.Principal{Kind: auth.KindClient, Name: "c1", Groups: []string{"g>"}}, nil); !errors.Is(err, auth.ErrInvalidUser) {
		t.Fatalf("bad group: %v", err)
	}
}

func TestClientConfigOptions(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "auth")
	if _, _, err := auth.Setup(dir); err != nil {
		t.Fatal(err)
	}
	notPEM := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(notPEM, []byte("nope"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		cfg  auth.ClientConfig
		want error
	}{
		{"missing creds", auth.ClientConfig{CredsFile: filepath.Join(dir, "nope.creds")}, auth.ErrCreds},
		{"creds that are not", auth.ClientConfig{CredsFile: filepath.Join(dir, auth.OperatorJWTFile)}, auth.ErrCreds},
		{"CA not PEM", auth.ClientConfig{CAFile: notPEM}, auth.ErrTLS},
		{"missing CA", auth.ClientConfig{CAFile: filepath.Join(dir, "nope.pem")}, auth.ErrTLS},
		{"cert without key", auth.ClientConfig{CertFile: notPEM}, auth.ErrTLS},
		{"nothing", auth.ClientConfig{}, nil},
		{"admin", auth.ClientConfig{CredsFile: filepath.Join(dir, auth.AdminCredsFile)}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := tc.cfg.Options()
			if !errors.Is(err, tc.want) || (tc.want == nil) != (err == nil) {
				t.Fatalf("Options: %v, want %v", err, tc.want)
			}
		})
	}
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o600); err != nil {
		t.Fatal(err)
	}
}
