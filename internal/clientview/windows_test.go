package clientview_test

import (
	"context"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/pcm-project/pcm/broker/auth"
	"github.com/pcm-project/pcm/events"
	"github.com/pcm-project/pcm/fleet"
	"github.com/pcm-project/pcm/internal/clientview"
	"github.com/pcm-project/pcm/internal/kvread"
	"github.com/pcm-project/pcm/internal/streamread"
	"github.com/pcm-project/pcm/maintenance"
	"github.com/pcm-project/pcm/testenv"
)

// TestViewWindows: a client's view of PCM_WINDOWS holds its own key, its
// groups' (as its consumer is enrolled) and every client's, never another
// client's or group's; a removal shows as a deletion.
func TestViewWindows(t *testing.T) {
	env := testenv.StartBroker(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	testenv.EnrollClient(t, env.JS, "c1", []string{"g1"}, fleet.ConsumerOptions{})
	testenv.EnrollClient(t, env.JS, "c2", []string{"g2"}, fleet.ConsumerOptions{})
	s := maintenance.New(env.JS)
	w, err := events.ParseWindow("daily 01:00-02:00 UTC")
	if err != nil {
		t.Fatal(err)
	}
	for _, tg := range []events.Target{
		{Kind: events.TargetClient, Name: "c1"}, {Kind: events.TargetClient, Name: "c2"},
		{Kind: events.TargetGroup, Name: "g1"}, {Kind: events.TargetGroup, Name: "g2"}, {Kind: events.TargetAll},
	} {
		if _, err := s.Set(ctx, tg, []events.Window{w}, "ops"); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Remove(ctx, events.Target{Kind: events.TargetAll}); err != nil {
		t.Fatal(err)
	}
	nc, _ := env.ConnectAs(t, auth.User{Role: auth.RoleDesktop, Name: "c1"})
	live := map[string]bool{}
	err = clientview.Scan(ctx, nc, "c1", clientview.Windows, func(m streamread.Msg) error {
		e := kvread.EntryOf(events.BucketWindows, m)
		live[e.Key] = !e.Deleted
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for k, alive := range live {
		if alive {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	if strings.Join(keys, " ") != "client.c1 group.g1" || live["all"] {
		t.Fatalf("c1 sees windows %v (all: %v), want client.c1 and group.g1, and all removed", keys, live)
	}
}
