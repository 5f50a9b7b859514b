package events_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nkeys"

	"github.com/pcm-project/pcm/events"
)

func TestCompareReleaseVersions(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		want int
	}{
		{"v1.2.3", "v1.2.3", 0},
		{"1.2.3", "v1.2.3", 0},
		{"v1.2.3", "v1.2.4", -1},
		{"v1.10.0", "v1.9.9", 1},
		{"v2.0.0", "v10.0.0", -1},
		{"v1.0.0-rc.1", "v1.0.0", -1},
		{"v1.0.0-rc.2", "v1.0.0-rc.10", -1},
		{"v1.0.0-alpha", "v1.0.0-1", 1},
		{"v1.0.0-rc.1", "v1.0.0-rc.1.1", -1},
		{"dev", "v0.0.1", -1},
		{"v0.0.1", "dev", 1},
	} {
		if got := events.CompareReleaseVersions(tc.a, tc.b); got != tc.want {
			t.Errorf("CompareReleaseVersions(%q, %q) = %d, want %d", tc.a, tc.b, got, tc.want)
		}
	}
}

func TestValidReleaseVersion(t *testing.T) {
	for _, v := range []string{"v1.0.0", "1.0.0", "v0.10.3-rc.1"} {
		if err := events.ValidReleaseVersion(v); err != nil {
			t.Errorf("%q: %v", v, err)
		}
	}
	for _, v := range []string{"", "dev", "v1.0", "v01.0.0", "v1.0.0+build", "v1.0.0-", "1.0.0 "} {
		if err := events.ValidReleaseVersion(v); !errors.Is(err, events.ErrInvalidRelease) {
			t.Errorf("%q: %v, want ErrInvalidRelease", v, err)
		}
	}
}

func testRelease() events.Release {
	return events.Release{Version: "v1.1.0", Channel: "stable", PublishedAt: time.Now().UTC(),
		Platforms: map[string]events.PackageRef{"linux/amd64": {Name: "pcm-linux-amd64", Version: "v1.1.0", SHA256: strings.Repeat("a", 64), Size: 10}}}
}

func TestReleaseSignedRoundTrip(t *testing.T) {
	kp, _ := nkeys.CreateUser()
	pub, _ := kp.PublicKey()
	ev, err := events.NewRelease("ci", testRelease())
	if err != nil {
		t.Fatal(err)
	}
	if err := events.Sign(&ev, kp); err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(ev)
	got, r, err := events.ParseRelease(b)
	if err != nil {
		t.Fatal(err)
	}
	if r.Version != "v1.1.0" || r.Channel != "stable" {
		t.Fatalf("parsed %+v", r)
	}
	if _, err := events.Verify(got, []string{pub}); err != nil {
		t.Fatalf("verify: %v", err)
	}
	// A manifest whose channel is rewritten after signing fails to verify.
	tampered := strings.Replace(string(b), `\"channel\":\"stable\"`, `\"channel\":\"beta\"`, 1)
	tampered = strings.Replace(tampered, `"channel":"stable"`, `"channel":"beta"`, 1)
	if tampered == string(b) {
		t.Fatal("the channel was not found in the manifest")
	}
	evT, rT, err := events.ParseRelease([]byte(tampered))
	if err != nil {
		t.Fatal(err)
	}
	if rT.Channel != "beta" {
		t.Fatalf("tampered channel %q", rT.Channel)
	}
	if _, err := events.Verify(evT, []string{pub}); !errors.Is(err, events.ErrBadSignature) {
		t.Fatalf("verify of a tampered manifest: %v, want ErrBadSignature", err)
	}
}

func TestReleaseValidate(t *testing.T) {
	for name, edit := range map[string]func(*events.Release){
		"bad version": func(r *events.Release) { r.Version = "latest" },
		"bad channel": func(r *events.Release) { r.Channel = "st able" },
		"no binary":   func(r *events.Release) { r.Platforms = nil },
		"bad platform": func(r *events.Release) {
			r.Platforms = map[string]events.PackageRef{"linux": r.Platforms["linux/amd64"]}
		},
		"wildcard": func(r *events.Release) {
			r.Platforms = map[string]events.PackageRef{"linux/*": r.Platforms["linux/amd64"]}
		},
		"percent":       func(r *events.Release) { r.Percent = 101 },
		"bad reference": func(r *events.Release) { r.Platforms = map[string]events.PackageRef{"linux/amd64": {Name: "pcm"}} },
	} {
		r := testRelease()
		edit(&r)
		if err := r.Validate(); !errors.Is(err, events.ErrInvalidRelease) && !errors.Is(err, events.ErrInvalidPackage) {
			t.Errorf("%s: %v, want ErrInvalidRelease", name, err)
		}
	}
}

func TestInRelease(t *testing.T) {
	r := testRelease()
	counts := map[int]int{}
	for i := range 2000 {
		client := fmt.Sprintf("client-%d", i)
		for _, p := range []int{0, 10, 50, 100} {
			r.Percent = p
			if r.InRelease(client) {
				counts[p]++
			}
		}
		// Stable, and monotonic in the percentage.
		r.Percent = 10
		in10 := r.InRelease(client)
		r.Percent = 50
		if in10 && !r.InRelease(client) {
			t.Fatalf("%s is in at 10%% but not at 50%%", client)
		}
		if events.RingPosition(r.Version, client) != events.RingPosition(r.Version, client) {
			t.Fatal("the position is not stable")
		}
	}
	if counts[0] != 2000 || counts[100] != 2000 {
		t.Fatalf("0%% and 100%% offer to every client: %v", counts)
	}
	if counts[10] < 140 || counts[10] > 260 || counts[50] < 900 || counts[50] > 1100 {
		t.Fatalf("out of 2000 clients, %d at 10%% and %d at 50%%", counts[10], counts[50])
	}
}
