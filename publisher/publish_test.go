package publisher_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/pcm-project/pcm/events"
	"github.com/pcm-project/pcm/packages"
	"github.com/pcm-project/pcm/publisher"
	"github.com/pcm-project/pcm/testenv"
)

func hexSum(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func writeFile(t *testing.T, path, body string, mode os.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(body), mode); err != nil {
		t.Fatal(err)
	}
}

// TestPublishPinsThePackage: a job naming a package gets its sha256 pinned;
// a missing, incomplete or mismatching package is refused before anything
// is sent.
func TestPublishPinsThePackage(t *testing.T) {
	tb := testenv.StartBroker(t)
	ctx := t.Context()
	pk := packages.NewStore(tb.JS)
	p, err := publisher.New(tb.JS, publisher.Config{Name: "test"})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "tool")
	writeFile(t, path, "tool v1", 0o755)
	info, err := pk.Push(ctx, path, packages.PushOptions{Name: "tool", Version: "1"})
	if err != nil {
		t.Fatal(err)
	}
	// An incomplete push: content stored without its recorded sha256.
	obs, err := tb.JS.ObjectStore(ctx, events.BucketPackages)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := obs.Put(ctx, jetstream.ObjectMeta{Name: "tool@half", Metadata: map[string]string{"pcm-name": "tool", "pcm-version": "half"}}, bytes.NewReader([]byte("x"))); err != nil {
		t.Fatal(err)
	}

	job := func(ref *events.PackageRef) events.JobOffered {
		return events.JobOffered{
			Package: ref,
			Command: events.CommandLine{Argv: []string{"./tool"}, Automated: true},
			Targets: []events.Target{{Kind: events.TargetClient, Name: "c1"}},
		}
	}
	prepared, err := p.Prepare(ctx, job(&events.PackageRef{Name: "tool", Version: "1"}))
	if err != nil {
		t.Fatalf("Prepare: %v", err)
	}
	if *prepared.Package != info.Ref() {
		t.Fatalf("prepared package %+v, want %+v", *prepared.Package, info.Ref())
	}
	if _, err := p.Publish(ctx, job(&events.PackageRef{Name: "tool", Version: "1", SHA256: info.SHA256})); err != nil {
		t.Fatalf("Publish with the right sha256: %v", err)
	}

	cases := []struct {
		name    string
		ref     events.PackageRef
		wantErr error
	}{
		{"missing package", events.PackageRef{Name: "missing", Version: "1"}, packages.ErrNotFound},
		{"incomplete push", events.PackageRef{Name: "tool", Version: "half"}, packages.ErrNotFound},
		{"other sha256", events.PackageRef{Name: "tool", Version: "1", SHA256: hexSum([]byte("other"))}, packages.ErrMismatch},
		{"other size", events.PackageRef{Name: "tool", Version: "1", Size: 1}, packages.ErrMismatch},
		{"bad version", events.PackageRef{Name: "tool", Version: "1 2"}, publisher.ErrInvalidJob},
		{"bad sha256", events.PackageRef{Name: "tool", Version: "1", SHA256: "xyz"}, publisher.ErrInvalidJob},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ref := tc.ref
			if _, err := p.Publish(ctx, job(&ref)); !errors.Is(err, tc.wantErr) {
				t.Fatalf("Publish = %v, want %v", err, tc.wantErr)
			}
		})
	}
	s, err := tb.JS.Stream(ctx, events.StreamJobs)
	if err != nil {
		t.Fatal(err)
	}
	if n := s.CachedInfo().State.Msgs; n != 1 {
		t.Fatalf("PCM_JOBS holds %d offers, want only the one with a good package", n)
	}
}
