package pkgcache_test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	"github.com/pcm-project/pcm/agent/pkgcache"
	"github.com/pcm-project/pcm/events"
)

// entry is one member of a test archive.
type entry struct {
	name, link, body string
	typ              byte
	mode             int64
}

func file(name, body string, mode int64) entry {
	return entry{name: name, body: body, typ: tar.TypeReg, mode: mode}
}
func dir(name string) entry { return entry{name: name, typ: tar.TypeDir, mode: 0o755} }
func symlink(name, to string) entry {
	return entry{name: name, link: to, typ: tar.TypeSymlink, mode: 0o777}
}
func other(name string, t byte) entry { return entry{name: name, typ: t, mode: 0o644} }

// archive writes entries as a tar.gz cache entry and returns it.
func archive(t *testing.T, entries ...entry) pkgcache.Entry {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	for _, e := range entries {
		hdr := &tar.Header{Name: e.name, Typeflag: e.typ, Mode: e.mode, Linkname: e.link, Size: int64(len(e.body))}
		if e.typ != tar.TypeReg {
			hdr.Size = 0
		}
		if err := tw.WriteHeader(hdr); err != nil {
			t.Fatal(err)
		}
		if e.typ == tar.TypeReg {
			if _, err := tw.Write([]byte(e.body)); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return rawEntry(t, buf.Bytes(), events.PackageFormatTarGz)
}

func rawEntry(t *testing.T, content []byte, format string) pkgcache.Entry {
	t.Helper()
	path := filepath.Join(t.TempDir(), "content")
	if err := os.WriteFile(path, content, 0o600); err != nil {
		t.Fatal(err)
	}
	return pkgcache.Entry{Name: "test", Version: "1", Format: format, Path: path, Size: int64(len(content))}
}

func TestUnpackTarGz(t *testing.T) {
	e := archive(t,
		dir("bin/"),
		file("bin/run.sh", "#!/bin/sh\necho hi\n", 0o4775), // setuid and group-write dropped
		file("data/v1/table.csv", "a,b\n", 0o600),
		symlink("data/current", "v1"),
		symlink("run", "bin/run.sh"),
		file("./top.txt", "top\n", 0o644),
	)
	out := filepath.Join(t.TempDir(), "work")
	if err := pkgcache.Unpack(t.Context(), e, out); err != nil {
		t.Fatalf("Unpack: %v", err)
	}
	checks := []struct {
		path string
		body string
		mode fs.FileMode
	}{
		{"bin/run.sh", "#!/bin/sh\necho hi\n", 0o755},
		{"data/v1/table.csv", "a,b\n", 0o600},
		{"data/current/table.csv", "a,b\n", 0o600},
		{"run", "#!/bin/sh\necho hi\n", 0o755},
		{"top.txt", "top\n", 0o644},
	}
	for _, c := range checks {
		b, err := os.ReadFile(filepath.Join(out, c.path))
		if err != nil || string(b) != c.body {
			t.Fatalf("%s: %q, %v; want %q", c.path, b, err, c.body)
		}
		fi, err := os.Stat(filepath.Join(out, c.path))
		if err != nil || fi.Mode().Perm() != c.mode {
			t.Fatalf("%s: mode %v, %v; want %v", c.path, fi.Mode().Perm(), err, c.mode)
		}
	}
}

func TestUnpackRefusesUnsafeArchives(t *testing.T) {
	cases := []struct {
		name    string
		entries []entry
	}{
		{"absolute path", []entry{file("/tmp/pcm-evil", "x", 0o644)}},
		{"dot-dot", []entry{file("../evil", "x", 0o644)}},
		{"dot-dot inside", []entry{file("a/../../evil", "x", 0o644)}},
		{"symlink to an absolute path", []entry{symlink("etc", "/etc")}},
		{"symlink out", []entry{symlink("up", "../..")}},
		{"symlink out from a subdirectory", []entry{dir("a/"), symlink("a/up", "../../x")}},
		{"write through a symlink", []entry{dir("sub/"), symlink("l", "sub"), file("l/f", "x", 0o644)}},
		{"symlinks that chain out", []entry{symlink("t", "."), symlink("s", "t/..")}},
		{"dangling symlink", []entry{symlink("nowhere", "missing/file")}},
		{"duplicate file", []entry{file("f", "1", 0o644), file("f", "2", 0o644)}},
		{"file over a symlink", []entry{symlink("f", "."), file("f", "x", 0o644)}},
		{"hard link", []entry{file("f", "x", 0o644), {name: "h", link: "f", typ: tar.TypeLink}}},
		{"fifo", []entry{other("p", tar.TypeFifo)}},
		{"device", []entry{other("d", tar.TypeChar)}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			out := filepath.Join(root, "jobs", "j", "work")
			err := pkgcache.Unpack(t.Context(), archive(t, tc.entries...), out)
			if !errors.Is(err, pkgcache.ErrUnsafeArchive) || !pkgcache.Permanent(err) {
				t.Fatalf("Unpack = %v, want %v", err, pkgcache.ErrUnsafeArchive)
			}
			t.Logf("refused: %v", err)
			// Nothing was written next to the work directory.
			des, _ := os.ReadDir(filepath.Join(root, "jobs", "j"))
			for _, de := range des {
				if de.Name() != "work" {
					t.Fatalf("Unpack wrote %s outside the work directory", de.Name())
				}
			}
			if _, err := os.Lstat("/tmp/pcm-evil"); err == nil {
				t.Fatal("Unpack wrote /tmp/pcm-evil")
			}
		})
	}

	t.Run("not gzip", func(t *testing.T) {
		err := pkgcache.Unpack(t.Context(), rawEntry(t, []byte("plain text"), events.PackageFormatTarGz), t.TempDir())
		if !errors.Is(err, pkgcache.ErrUnsafeArchive) {
			t.Fatalf("Unpack = %v, want %v", err, pkgcache.ErrUnsafeArchive)
		}
	})
}

func TestUnpackFile(t *testing.T) {
	e := rawEntry(t, []byte("#!/bin/sh\nexit 0\n"), events.PackageFormatFile)
	e.File, e.Mode = "setup.sh", 0o755
	out := t.TempDir()
	// A symlink planted where the file goes is replaced, not followed.
	victim := filepath.Join(t.TempDir(), "victim")
	if err := os.WriteFile(victim, []byte("untouched"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(victim, filepath.Join(out, "setup.sh")); err != nil {
		t.Fatal(err)
	}
	if err := pkgcache.Unpack(t.Context(), e, out); err != nil {
		t.Fatalf("Unpack: %v", err)
	}
	fi, err := os.Lstat(filepath.Join(out, "setup.sh"))
	if err != nil || !fi.Mode().IsRegular() || fi.Mode().Perm() != 0o755 {
		t.Fatalf("setup.sh: %v, %v; want a regular file with mode 0755", fi.Mode(), err)
	}
	if b, _ := os.ReadFile(victim); string(b) != "untouched" {
		t.Fatal("Unpack wrote through a planted symlink")
	}

	// A file name that is not a plain name falls back to the package name.
	e.File = "../escape"
	if err := pkgcache.Unpack(t.Context(), e, out); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(out, "test")); err != nil {
		t.Fatalf("unsafe file name not replaced by the package name: %v", err)
	}
}
