package integration_test

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap/zaptest"

	"github.com/pcm-project/pcm/broker/auth"
	"github.com/pcm-project/pcm/events"
	"github.com/pcm-project/pcm/fleet"
	"github.com/pcm-project/pcm/site"
	"github.com/pcm-project/pcm/testenv"
)

// siteImports returns the subjects the account of site at the hub
// imports (accts: the hub's).
func siteImports(t *testing.T, accts *fleet.Accounts, site string) []string {
	t.Helper()
	ac, err := accts.Lookup(t.Context(), auth.Principal{Kind: auth.KindSite, Name: site})
	if err != nil || ac == nil {
		t.Fatalf("the account of site %s at the hub: %v (%v)", site, ac, err)
	}
	var out []string
	for _, im := range ac.Imports {
		out = append(out, string(im.Subject))
	}
	return out
}

// importsClient reports whether a site's imports take client's statuses.
func importsClient(imports []string, client string) bool {
	return slices.Contains(imports, events.StatusSubjectsOfClient(client))
}

// writeStatus stores a status of client for job at the site, with id.
func writeStatus(t *testing.T, js jetstream.JetStream, client, job, id string) {
	t.Helper()
	m := nats.NewMsg(events.StatusSubject(client, job))
	m.Header.Set(jetstream.MsgIDHeader, id)
	m.Data = []byte(`{"id":"` + id + `"}`)
	if _, err := js.PublishMsg(t.Context(), m); err != nil {
		t.Fatalf("%s's status at the site: %v", client, err)
	}
}

// TestSiteClientLeavesTheSite: two clients at an authenticated site whose
// forwarder runs; issuing the site's credentials again keeps its imports;
// ws1 is enrolled back at the hub (fleet.LeaveAuthSite: a failed signature
// of the site's account keeps its record, a good one removes the import
// and then the record) and its agent writes once more at the site: that
// status is dropped at the site, once, and ws2's statuses after it still
// reach the hub.
func TestSiteClientLeavesTheSite(t *testing.T) {
	f := startAuthSites(t)
	ctx := t.Context()
	hubAccts := fleet.NewAccounts(f.hubJS.Conn(), f.iss)
	agents := map[string]jetstream.JetStream{}
	for _, c := range []string{"ws1", "ws2"} {
		js, err := jetstream.New(f.enrollAtSite(t, c))
		if err != nil {
			t.Fatal(err)
		}
		agents[c] = js
		if err := fleet.RecordSite(ctx, f.hubJS, fleet.SiteRecord{Client: c, Site: "branch1", Groups: []string{"lab"}}); err != nil {
			t.Fatal(err)
		}
	}
	if err := fleet.EnsureSiteAccount(ctx, f.hubJS, hubAccts, "branch1"); err != nil {
		t.Fatal(err)
	}
	// The site's credentials issued again: the account keeps its clients.
	if _, err := hubAccts.Issue(ctx, auth.User{Role: auth.RoleSite, Name: "branch1"}); err != nil {
		t.Fatal(err)
	}
	if im := siteImports(t, hubAccts, "branch1"); !importsClient(im, "ws1") || !importsClient(im, "ws2") {
		t.Fatalf("after issuing the site's credentials its account imports %q: want ws1's and ws2's statuses", im)
	}

	viaSite, err := jetstream.NewWithDomain(f.siteJS.Conn(), "hub")
	if err != nil {
		t.Fatal(err)
	}
	fw := site.NewForwarder(f.siteJS, viaSite, "branch1", zaptest.NewLogger(t))
	fw.DropAfter = 3 * time.Second
	fctx, stop := context.WithCancel(ctx)
	defer stop()
	go func() { _ = fw.Run(fctx) }()
	writeStatus(t, agents["ws1"], "ws1", f.job, "ws1-a")
	writeStatus(t, agents["ws2"], "ws2", f.job, "ws2-a")
	testenv.CheckFor(t, 15*time.Second, 50*time.Millisecond, func() error {
		if n := fw.Forwarded(); n < 2 {
			return fmt.Errorf("%d of 2 forwarded", n)
		}
		return nil
	})

	// A failed signature keeps the record: running it again finds the site.
	down, err := f.hub.ConnectAdmin(f.iss, "closed admin")
	if err != nil {
		t.Fatal(err)
	}
	down.Close()
	if _, err := fleet.LeaveAuthSite(ctx, f.hubJS, fleet.NewAccounts(down, f.iss), "ws1"); err == nil {
		t.Fatal("LeaveAuthSite with a closed connection for the accounts succeeded")
	}
	if sites, err := fleet.ReadSites(ctx, f.hubJS); err != nil || sites["ws1"].Site != "branch1" {
		t.Fatalf("after a failed leave, ws1's record: %+v %v: want it kept", sites["ws1"], err)
	}
	if left, err := fleet.LeaveAuthSite(ctx, f.hubJS, hubAccts, "ws1"); err != nil || left != "branch1" {
		t.Fatalf("LeaveAuthSite: %q %v", left, err)
	}
	if sites, err := fleet.ReadSites(ctx, f.hubJS); err != nil || sites["ws1"].Site != "" || sites["ws2"].Site != "branch1" {
		t.Fatalf("after the leave: %+v %v: want ws2's record only", sites, err)
	}
	if im := siteImports(t, hubAccts, "branch1"); importsClient(im, "ws1") || !importsClient(im, "ws2") {
		t.Fatalf("after ws1 left, the site's account imports %q: want ws2's statuses only", im)
	}

	// ws1's agent writes once more at the site, then ws2's: ws2's reaches
	// the hub, ws1's is dropped at the site.
	writeStatus(t, agents["ws1"], "ws1", f.job, "ws1-b")
	writeStatus(t, agents["ws2"], "ws2", f.job, "ws2-b")
	hs, err := f.hubJS.Stream(ctx, events.StreamStatus)
	if err != nil {
		t.Fatal(err)
	}
	testenv.CheckFor(t, 20*time.Second, 50*time.Millisecond, func() error {
		m, err := hs.GetLastMsgForSubject(ctx, events.StatusSubject("ws2", f.job))
		if err != nil {
			return err
		}
		if id := m.Header.Get(jetstream.MsgIDHeader); id != "ws2-b" {
			return fmt.Errorf("ws2's last status at the hub is %s, want ws2-b (dropped %d)", id, fw.Dropped())
		}
		return nil
	})
	if n := fw.Dropped(); n != 1 {
		t.Errorf("dropped %d messages, want 1 (ws1-b)", n)
	}
	if m, err := hs.GetLastMsgForSubject(ctx, events.StatusSubject("ws1", f.job)); err != nil || m.Header.Get(jetstream.MsgIDHeader) != "ws1-a" {
		t.Errorf("ws1's last status at the hub: %v, want ws1-a", err)
	}
}

// TestSiteClientMovesBetweenSites: a client enrolled at site branch1, then
// at branch2 (fleet.EnrollAtAuthSite), leaves branch1's account at the
// hub: only branch2's imports its statuses.
func TestSiteClientMovesBetweenSites(t *testing.T) {
	f := startAuthSites(t)
	ctx := t.Context()
	hubAccts := fleet.NewAccounts(f.hubJS.Conn(), f.iss)
	siteAccts := fleet.NewAccounts(f.siteJS.Conn(), f.iss)
	enroll := func(siteName string) {
		t.Helper()
		if _, err := fleet.EnrollAtAuthSite(ctx, f.hubJS, hubAccts, f.siteJS, siteAccts, siteName, "ws1", []string{"lab"}, fleet.ConsumerOptions{}); err != nil {
			t.Fatalf("enrolling ws1 at %s: %v", siteName, err)
		}
	}
	enroll("branch1")
	if im := siteImports(t, hubAccts, "branch1"); !importsClient(im, "ws1") {
		t.Fatalf("branch1's account imports %q: want ws1's statuses", im)
	}
	enroll("branch2")
	if im := siteImports(t, hubAccts, "branch2"); !importsClient(im, "ws1") {
		t.Fatalf("branch2's account imports %q: want ws1's statuses", im)
	}
	if im := siteImports(t, hubAccts, "branch1"); importsClient(im, "ws1") {
		t.Errorf("after ws1 moved to branch2, branch1's account still imports %q", im)
	}
}
