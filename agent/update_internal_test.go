package agent

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nkeys"

	"github.com/pcm-project/pcm/events"
)

// TestCheckRelease is the table of what the service does with a manifest
// heard on its channel: install it, leave it (nothing to do), or refuse it
// (the reason shown in its inventory).
func TestCheckRelease(t *testing.T) {
	trusted, _ := nkeys.CreateUser()
	other, _ := nkeys.CreateUser()
	pub, _ := trusted.PublicKey()
	ref := events.PackageRef{Name: "pcm-linux-amd64", Version: "v1.1.0", SHA256: strings.Repeat("a", 64), Size: 1}
	base := events.Release{Version: "v1.1.0", Channel: "stable", PublishedAt: time.Now().UTC(),
		Platforms: map[string]events.PackageRef{"linux/amd64": ref}}
	// A client out of a 10% rollout of v1.1.0, and one in it.
	var out, in string
	for i := 0; out == "" || in == ""; i++ {
		c := "c" + strings.Repeat("x", i%5) + string(rune('a'+i%26))
		if events.RingPosition("v1.1.0", c) < 10 {
			in = c
		} else {
			out = c
		}
	}
	for _, tc := range []struct {
		name    string
		edit    func(*events.Release)
		key     nkeys.KeyPair
		client  string
		running string
		failed  bool   // an update to v1.1.0 failed here before
		want    string // "" install, "-" nothing to do, else part of the refusal
	}{
		{name: "newer, signed, for this platform", want: ""},
		{name: "the running version", running: "v1.1.0", want: "-"},
		{name: "older", running: "v1.2.0", want: "older than the running v1.2.0"},
		{name: "older, marked rollback", running: "v1.2.0", edit: func(r *events.Release) { r.Rollback = true }, want: ""},
		{name: "signed by another key", key: other, want: "not a trusted key"},
		{name: "signed for another channel", edit: func(r *events.Release) { r.Channel = "beta" }, want: "signed for channel beta"},
		{name: "no binary for this platform", edit: func(r *events.Release) {
			r.Platforms = map[string]events.PackageRef{"windows/amd64": ref}
		}, want: "no binary for linux/amd64"},
		{name: "outside a 10% rollout", client: out, edit: func(r *events.Release) { r.Percent = 10 }, want: "-"},
		{name: "inside a 10% rollout", client: in, edit: func(r *events.Release) { r.Percent = 10 }, want: ""},
		{name: "from a dev build", running: "dev", want: ""},
		{name: "failed here before", failed: true, want: "-"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := base
			if tc.edit != nil {
				tc.edit(&r)
			}
			key := tc.key
			if key == nil {
				key = trusted
			}
			ev, err := events.NewRelease("ci", r)
			if err != nil {
				t.Fatal(err)
			}
			if err := events.Sign(&ev, key); err != nil {
				t.Fatal(err)
			}
			value, _ := json.Marshal(ev)
			client, running := tc.client, tc.running
			if client == "" {
				client = "ws1"
			}
			if running == "" {
				running = "v1.0.0"
			}
			s := &Service{cfg: Config{ClientID: client, StateDir: t.TempDir(), OS: "linux", Arch: "amd64", Version: running,
				Channel: "stable", ReleaseKeys: []string{pub}}}
			if tc.failed {
				if err := WriteUpdateRecord(s.cfg.StateDir, UpdateRecord{From: running, To: "v1.1.0", State: events.UpdateFailed}); err != nil {
					t.Fatal(err)
				}
			}
			_, err = s.checkRelease(value)
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("refused: %v, want it installed", err)
			case tc.want == "-" && !errors.Is(err, errNothingToDo):
				t.Fatalf("got %v, want nothing to do", err)
			case tc.want != "" && tc.want != "-" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("got %v, want a refusal saying %q", err, tc.want)
			}
		})
	}
}
