package packages_test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/pcm-project/pcm/events"
	"github.com/pcm-project/pcm/internal/archive"
	"github.com/pcm-project/pcm/packages"
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
	if err := os.Chmod(path, mode); err != nil { // whatever the umask
		t.Fatal(err)
	}
}

// getObject reads an object of PCM_PACKAGES.
func getObject(t *testing.T, js jetstream.JetStream, name string) ([]byte, *jetstream.ObjectInfo) {
	t.Helper()
	ctx := context.Background()
	obs, err := js.ObjectStore(ctx, events.BucketPackages)
	if err != nil {
		t.Fatal(err)
	}
	b, err := obs.GetBytes(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	info, err := obs.GetInfo(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	return b, info
}

func TestPushFileListResolveRemove(t *testing.T) {
	tb := testenv.StartBroker(t)
	ctx := t.Context()
	pk := packages.NewStore(tb.JS)
	path := filepath.Join(t.TempDir(), "setup.sh")
	body := "#!/bin/sh\necho installing\n"
	writeFile(t, path, body, 0o750)

	var lastSent, lastTotal int64
	info, err := pk.Push(ctx, path, packages.PushOptions{Name: "setup", Version: "1.0.0", PushedBy: "alice",
		Progress: func(sent, total int64) { lastSent, lastTotal = sent, total }})
	if err != nil {
		t.Fatalf("Push: %v", err)
	}
	want := packages.Info{Name: "setup", Version: "1.0.0", Size: int64(len(body)), SHA256: hexSum([]byte(body)),
		Format: events.PackageFormatFile, File: "setup.sh", PushedBy: "alice", PushedAt: info.PushedAt, Complete: true}
	if info != want {
		t.Fatalf("Push = %+v\nwant  %+v", info, want)
	}
	if lastSent != int64(len(body)) || lastTotal != int64(len(body)) {
		t.Fatalf("last progress %d/%d, want %d/%d", lastSent, lastTotal, len(body), len(body))
	}
	stored, oi := getObject(t, tb.JS, "setup@1.0.0")
	if string(stored) != body {
		t.Fatalf("stored %q, want %q", stored, body)
	}
	for k, v := range map[string]string{"pcm-sha256": want.SHA256, "pcm-format": "file", "pcm-file": "setup.sh", "pcm-mode": "0755", "pcm-pushed-by": "alice"} {
		if oi.Metadata[k] != v {
			t.Errorf("metadata %s = %q, want %q", k, oi.Metadata[k], v)
		}
	}

	ref, err := pk.Resolve(ctx, "setup@1.0.0")
	if err != nil || ref != (events.PackageRef{Name: "setup", Version: "1.0.0", SHA256: want.SHA256, Size: want.Size}) {
		t.Fatalf("Resolve = %+v, %v", ref, err)
	}

	// The same name and version is refused, unless forced.
	writeFile(t, path, body+"echo v2\n", 0o750)
	if _, err := pk.Push(ctx, path, packages.PushOptions{Name: "setup", Version: "1.0.0"}); !errors.Is(err, packages.ErrExists) {
		t.Fatalf("second Push = %v, want %v", err, packages.ErrExists)
	}
	if ref2, _ := pk.Resolve(ctx, "setup@1.0.0"); ref2 != ref {
		t.Fatal("a refused push changed the package")
	}
	forced, err := pk.Push(ctx, path, packages.PushOptions{Name: "setup", Version: "1.0.0", Force: true})
	if err != nil || forced.SHA256 == ref.SHA256 {
		t.Fatalf("forced Push = %+v, %v; want new content", forced, err)
	}
	if _, err := pk.Push(ctx, path, packages.PushOptions{Name: "setup", Version: "2.0"}); err != nil {
		t.Fatal(err)
	}
	if _, err := pk.Push(ctx, path, packages.PushOptions{Name: "agent", Version: "9"}); err != nil {
		t.Fatal(err)
	}

	list, err := pk.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var specs []string
	for _, p := range list {
		specs = append(specs, p.Spec())
		if !p.Complete || p.SHA256 == "" || p.PushedBy == "" {
			t.Errorf("listed %+v: want complete with sha256 and pusher", p)
		}
	}
	if len(specs) != 3 || specs[0] != "agent@9" || specs[1] != "setup@1.0.0" || specs[2] != "setup@2.0" {
		t.Fatalf("List = %v, want agent@9 setup@1.0.0 setup@2.0", specs)
	}

	if err := pk.Remove(ctx, "setup@1.0.0"); err != nil {
		t.Fatalf("Remove: %v", err)
	}
	if _, err := pk.Resolve(ctx, "setup@1.0.0"); !errors.Is(err, packages.ErrNotFound) {
		t.Fatalf("Resolve after Remove = %v, want %v", err, packages.ErrNotFound)
	}
	if err := pk.Remove(ctx, "setup@1.0.0"); !errors.Is(err, packages.ErrNotFound) {
		t.Fatalf("second Remove = %v, want %v", err, packages.ErrNotFound)
	}
}

func TestPushDirectoryIsDeterministic(t *testing.T) {
	tb := testenv.StartBroker(t)
	ctx := t.Context()
	pk := packages.NewStore(tb.JS)
	// Two copies of one tree, made in another order, with other times and
	// other permission bits beyond the executable ones.
	makeTree := func(root string, reverse bool, mtime time.Time) {
		files := []struct {
			path, body string
			mode       os.FileMode
		}{
			{"bin/run.sh", "#!/bin/sh\necho run\n", 0o755},
			{"data/b.txt", "b\n", 0o644},
			{"data/a.txt", "a\n", 0o600},
			{"README", "readme\n", 0o664},
		}
		if reverse {
			for i, j := 0, len(files)-1; i < j; i, j = i+1, j-1 {
				files[i], files[j] = files[j], files[i]
			}
		}
		for _, f := range files {
			mode := f.mode
			if reverse && mode&0o111 == 0 {
				mode = 0o640
			}
			writeFile(t, filepath.Join(root, f.path), f.body, mode)
			if err := os.Chtimes(filepath.Join(root, f.path), mtime, mtime); err != nil {
				t.Fatal(err)
			}
		}
		if err := os.Symlink("bin/run.sh", filepath.Join(root, "run")); err != nil {
			t.Fatal(err)
		}
	}
	one, two := filepath.Join(t.TempDir(), "pkg"), filepath.Join(t.TempDir(), "other")
	makeTree(one, false, time.Unix(1e9, 0))
	makeTree(two, true, time.Now())

	var a, b bytes.Buffer
	if err := archive.Pack(ctx, one, &a); err != nil {
		t.Fatal(err)
	}
	if err := archive.Pack(ctx, two, &b); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a.Bytes(), b.Bytes()) {
		t.Fatal("the same tree packed twice gives different bytes")
	}

	// The archive: no name or time in the gzip header; sorted entries,
	// zero times and owners, fixed modes.
	zr, err := gzip.NewReader(bytes.NewReader(a.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	if zr.Name != "" || !zr.ModTime.IsZero() {
		t.Fatalf("gzip header has name %q, time %v", zr.Name, zr.ModTime)
	}
	tr := tar.NewReader(zr)
	var names []string
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, hdr.Name)
		if hdr.ModTime.Unix() != 0 || hdr.Uid != 0 || hdr.Gid != 0 || hdr.Uname != "" || hdr.Gname != "" {
			t.Fatalf("%s: time %v, owner %d:%d %q:%q; want zeros", hdr.Name, hdr.ModTime, hdr.Uid, hdr.Gid, hdr.Uname, hdr.Gname)
		}
		wantMode := map[string]int64{"README": 0o644, "bin/": 0o755, "bin/run.sh": 0o755, "data/": 0o755, "data/a.txt": 0o644, "data/b.txt": 0o644, "run": 0o777}[hdr.Name]
		if hdr.Mode != wantMode {
			t.Fatalf("%s: mode %o, want %o", hdr.Name, hdr.Mode, wantMode)
		}
	}
	wantNames := []string{"README", "bin/", "bin/run.sh", "data/", "data/a.txt", "data/b.txt", "run"}
	if len(names) != len(wantNames) {
		t.Fatalf("entries %v, want %v", names, wantNames)
	}
	for i := range names {
		if names[i] != wantNames[i] {
			t.Fatalf("entries %v, want %v", names, wantNames)
		}
	}

	info, err := pk.Push(ctx, one, packages.PushOptions{Name: "tree", Version: "1"})
	if err != nil {
		t.Fatalf("Push of a directory: %v", err)
	}
	if info.Format != events.PackageFormatTarGz || info.SHA256 != hexSum(a.Bytes()) || info.Size != int64(a.Len()) {
		t.Fatalf("Push = %+v, want tar.gz of %d bytes with sha256 %s", info, a.Len(), hexSum(a.Bytes()))
	}
	again, err := pk.Push(ctx, two, packages.PushOptions{Name: "tree", Version: "1", Force: true})
	if err != nil || again.SHA256 != info.SHA256 {
		t.Fatalf("push of the same tree from elsewhere: %+v, %v; want sha256 %s", again, err, info.SHA256)
	}
}

func TestPushRefusals(t *testing.T) {
	tb := testenv.StartBroker(t)
	ctx := t.Context()
	pk := packages.NewStore(tb.JS)
	dir := t.TempDir()
	okFile := filepath.Join(dir, "ok")
	writeFile(t, okFile, "x", 0o644)
	escaping := filepath.Join(dir, "escaping")
	writeFile(t, filepath.Join(escaping, "f"), "x", 0o644)
	if err := os.Symlink("../../etc/passwd", filepath.Join(escaping, "link")); err != nil {
		t.Fatal(err)
	}
	absolute := filepath.Join(dir, "absolute")
	writeFile(t, filepath.Join(absolute, "f"), "x", 0o644)
	if err := os.Symlink("/etc/passwd", filepath.Join(absolute, "link")); err != nil {
		t.Fatal(err)
	}
	withSocket := filepath.Join(dir, "sock")
	writeFile(t, filepath.Join(withSocket, "f"), "x", 0o644)
	l, err := net.Listen("unix", filepath.Join(withSocket, "s"))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()

	cases := []struct {
		name    string
		path    string
		opts    packages.PushOptions
		wantErr error
	}{
		{"no name", okFile, packages.PushOptions{Version: "1"}, events.ErrInvalidPackage},
		{"no version", okFile, packages.PushOptions{Name: "a"}, events.ErrInvalidPackage},
		{"at sign in the name", okFile, packages.PushOptions{Name: "a@b", Version: "1"}, events.ErrInvalidPackage},
		{"slash in the version", okFile, packages.PushOptions{Name: "a", Version: "1/2"}, events.ErrInvalidPackage},
		{"missing path", filepath.Join(dir, "nope"), packages.PushOptions{Name: "a", Version: "1"}, packages.ErrInvalidContent},
		{"symlink out of the directory", escaping, packages.PushOptions{Name: "a", Version: "2"}, packages.ErrInvalidContent},
		{"absolute symlink", absolute, packages.PushOptions{Name: "a", Version: "3"}, packages.ErrInvalidContent},
		{"socket in the directory", withSocket, packages.PushOptions{Name: "a", Version: "4"}, packages.ErrInvalidContent},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := pk.Push(ctx, tc.path, tc.opts); !errors.Is(err, tc.wantErr) {
				t.Fatalf("Push = %v, want %v", err, tc.wantErr)
			}
		})
	}
	if list, err := pk.List(ctx); err != nil || len(list) != 0 {
		t.Fatalf("refused pushes left %+v (%v)", list, err)
	}

	t.Run("not provisioned", func(t *testing.T) {
		bare := testenv.StartBroker(t, testenv.WithoutProvision())
		_, err := packages.NewStore(bare.JS).Push(ctx, okFile, packages.PushOptions{Name: "a", Version: "1"})
		if !errors.Is(err, packages.ErrNotProvisioned) {
			t.Fatalf("Push without PCM_PACKAGES = %v, want %v", err, packages.ErrNotProvisioned)
		}
	})
}
