package maintenance_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/pcm-project/pcm/broker/auth"
	"github.com/pcm-project/pcm/events"
	"github.com/pcm-project/pcm/maintenance"
	"github.com/pcm-project/pcm/testenv"
)

func parse(t *testing.T, specs ...string) []events.Window {
	t.Helper()
	var ws []events.Window
	for _, s := range specs {
		w, err := events.ParseWindow(s)
		if err != nil {
			t.Fatal(err)
		}
		ws = append(ws, w)
	}
	return ws
}

// TestStore: windows set per client, group and every client are listed
// back and apply to the clients they name; a set replaces, a removal
// removes; windows that would never hold a job are refused and change
// nothing.
func TestStore(t *testing.T) {
	env := testenv.StartBroker(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s := maintenance.New(env.JS)
	lab := events.Target{Kind: events.TargetGroup, Name: "lab"}
	ws1 := events.Target{Kind: events.TargetClient, Name: "ws-1"}
	all := events.Target{Kind: events.TargetAll}
	if _, err := s.Set(ctx, lab, parse(t, "Mon-Fri 22:00-04:00 Europe/Berlin"), "ops"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Set(ctx, ws1, parse(t, "Sat 00:00-24:00 UTC", "2099-12-24 08:00-18:00 UTC"), "ops"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Set(ctx, all, parse(t, "Sun 02:00-03:00 UTC"), "ops"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Set(ctx, lab, parse(t, "daily 01:00-02:00 UTC"), "ops"); err != nil { // replaces
		t.Fatal(err)
	}
	list, err := s.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for _, e := range list {
		keys = append(keys, events.WindowKey(e.Target))
		if e.UpdatedBy != "ops" || e.UpdatedAt.IsZero() {
			t.Errorf("%s: set by %q at %s", e.Target, e.UpdatedBy, e.UpdatedAt)
		}
	}
	if strings.Join(keys, " ") != "all client.ws-1 group.lab" {
		t.Fatalf("listed %v", keys)
	}
	if got := maintenance.Of(list, "ws-1", []string{"lab"}); len(got) != 4 || got.String() == "" {
		t.Fatalf("ws-1 in lab has %v", got)
	}
	if got := maintenance.Of(list, "ws-2", []string{"other"}); len(got) != 1 || got[0].String() != "Sun 02:00-03:00 UTC" {
		t.Fatalf("ws-2 in another group has %v, want every client's only", got)
	}
	if err := s.Remove(ctx, ws1); err != nil {
		t.Fatal(err)
	}
	if err := s.Remove(ctx, ws1); !errors.Is(err, maintenance.ErrNotFound) {
		t.Fatalf("removing twice: %v", err)
	}
	for _, tc := range []struct {
		name string
		ws   []events.Window
		says string
	}{
		{"none", nil, "give at least one"},
		{"a one-off date passed", parse(t, "2020-01-01 08:00-18:00 UTC"), "never opens again"},
		{"never opens", []events.Window{{Days: []string{"Mon"}, Start: "22:00", End: "22:00", Zone: "UTC"}}, "never opens"},
		{"unknown zone", []events.Window{{Days: []string{"Mon"}, Start: "22:00", End: "04:00", Zone: "Mars/Olympus"}}, "is unknown: give an IANA zone"},
	} {
		if _, err := s.Set(ctx, lab, tc.ws, "ops"); !errors.Is(err, events.ErrWindow) || !strings.Contains(err.Error(), tc.says) {
			t.Errorf("%s: %v, want %v saying %q", tc.name, err, events.ErrWindow, tc.says)
		}
	}
	if list, _ := s.List(ctx); len(list) != 2 || list[1].Windows[0].String() != "daily 01:00-02:00 UTC" {
		t.Fatalf("a refused set changed the windows: %+v", list)
	}
}

// TestWritesNeedAnAdmin: a publisher and an auditor read the windows; only
// an admin writes them.
func TestWritesNeedAnAdmin(t *testing.T) {
	env := testenv.StartBroker(t, testenv.WithAuth())
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	lab := events.Target{Kind: events.TargetGroup, Name: "lab"}
	if _, err := maintenance.New(env.JS).Set(ctx, lab, parse(t, "daily 01:00-02:00 UTC"), "admin"); err != nil {
		t.Fatal(err)
	}
	for _, role := range []auth.Role{auth.RolePublisher, auth.RoleAuditor} {
		_, js := env.ConnectAs(t, auth.User{Role: role, Name: "ci"})
		s := maintenance.New(js)
		if list, err := s.List(ctx); err != nil || len(list) != 1 {
			t.Fatalf("%s lists %+v, %v", role, list, err)
		}
		wctx, wcancel := context.WithTimeout(ctx, 3*time.Second)
		_, err := s.Set(wctx, lab, parse(t, "daily 03:00-04:00 UTC"), string(role))
		wcancel()
		if !errors.Is(err, maintenance.ErrNotAllowed) || !strings.Contains(err.Error(), "needs an admin's credentials") {
			t.Fatalf("%s setting windows: %v, want %v", role, err, maintenance.ErrNotAllowed)
		}
	}
	if list, _ := maintenance.New(env.JS).List(ctx); list[0].Windows[0].String() != "daily 01:00-02:00 UTC" {
		t.Fatalf("windows changed: %+v", list)
	}
}
