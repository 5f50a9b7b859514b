//go:build !nobroker

package main

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pcm-project/pcm/broker"
	"github.com/pcm-project/pcm/broker/auth"
)

// TestSiteTrustRefusals: pcm broker --site --auth refuses, naming the
// flag, what it cannot run a site with: no hub JWTs, credentials that are
// not a site's or are another site's, an admin that may connect over the
// network or is missing; and it takes the files pcm creds site writes.
func TestSiteTrustRefusals(t *testing.T) {
	dir := t.TempDir()
	hubAuth := filepath.Join(dir, "hub")
	a, _, err := auth.Setup(hubAuth)
	if err != nil {
		t.Fatal(err)
	}
	iss, err := a.Issuer()
	if err != nil {
		t.Fatal(err)
	}
	write := func(name string, u auth.User) string {
		t.Helper()
		creds, err := iss.Issue(u)
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(dir, name)
		if err := auth.WriteCreds(path, creds); err != nil {
			t.Fatal(err)
		}
		return path
	}
	siteCreds := write("b-site.creds", auth.User{Role: auth.RoleSite, Name: "b"})
	write("b-site-admin.creds", auth.User{Role: auth.RoleAdmin, Name: "site-b", InProcess: true})
	otherSite := write("c-site.creds", auth.User{Role: auth.RoleSite, Name: "c"})
	agent := write("ws1-agent.creds", auth.User{Role: auth.RoleAgent, Name: "ws1"})
	netAdmin := write("net-admin.creds", auth.User{Role: auth.RoleAdmin, Name: "ops"})
	lone := write(filepath.Join("lone", "b-site.creds"), auth.User{Role: auth.RoleSite, Name: "b"})
	siteAuth := filepath.Join(dir, "site")
	if err := auth.CopyPublic(hubAuth, siteAuth); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name                         string
		authDir, hubCreds, siteAdmin string
		want                         string // "" : accepted
	}{
		{"the files pcm creds site writes", siteAuth, siteCreds, "", ""},
		{"no hub JWTs", filepath.Join(dir, "empty"), siteCreds, "", "copy operator.jwt, account.jwt, system.jwt"},
		{"an agent's credentials", siteAuth, agent, "", `--hub-creds ` + agent + ` holds the credentials of "agent-ws1", not a site's`},
		{"another site's credentials", siteAuth, otherSite, "", "are the credentials of c, not of --site b"},
		{"no admin next to them", siteAuth, lone, "", "--site-admin-creds: "},
		{"missing credentials", siteAuth, filepath.Join(dir, "none.creds"), "", "--hub-creds: "},
		{"a network admin", siteAuth, siteCreds, netAdmin, "--site-admin-creds " + netAdmin + " may connect over the network"},
		{"an agent as the admin", siteAuth, siteCreds, agent, "--site-admin-creds " + agent + ` holds the credentials of "agent-ws1", not an admin's`},
		{"a missing admin", siteAuth, siteCreds, filepath.Join(dir, "none.creds"), "--site-admin-creds"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := brokerFlags{site: "b", hub: "nats-leaf://127.0.0.1:7422", auth: true, authDir: tc.authDir, hubCreds: tc.hubCreds, siteAdminCreds: tc.siteAdmin}
			if err := f.checkSite(false); err != nil {
				t.Fatal(err)
			}
			_, admin, err := f.siteTrust()
			if tc.want == "" {
				if err != nil || admin != filepath.Join(dir, "b-site-admin.creds") {
					t.Fatalf("siteTrust: %q, %v; want the admin next to the site's credentials", admin, err)
				}
				return
			}
			if err == nil || !errors.Is(err, broker.ErrSiteAuth) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("siteTrust: %v; want %v saying %q", err, broker.ErrSiteAuth, tc.want)
			}
			if strings.Contains(err.Error(), "create the operator") {
				t.Fatalf("siteTrust: %v: a site trusts the hub's operator, it must not be told to create one", err)
			}
		})
	}
}
