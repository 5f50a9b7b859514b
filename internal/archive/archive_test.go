package archive_test

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/pcm-project/pcm/internal/archive"
)

// TestPackThenExtract: what Pack writes, Extract writes back, modes
// normalized, symlinks kept.
func TestPackThenExtract(t *testing.T) {
	src := t.TempDir()
	write := func(rel, body string, mode os.FileMode) {
		p := filepath.Join(src, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), mode); err != nil {
			t.Fatal(err)
		}
	}
	write("bin/run.sh", "#!/bin/sh\n", 0o700)
	write("data/a.txt", "a\n", 0o600)
	if err := os.Symlink("bin/run.sh", filepath.Join(src, "run")); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := archive.Pack(t.Context(), src, &buf); err != nil {
		t.Fatal(err)
	}
	dst := t.TempDir()
	if err := archive.Extract(t.Context(), &buf, dst); err != nil {
		t.Fatal(err)
	}
	for rel, want := range map[string]os.FileMode{"bin/run.sh": 0o755, "data/a.txt": 0o644} {
		fi, err := os.Stat(filepath.Join(dst, rel))
		if err != nil || fi.Mode().Perm() != want {
			t.Fatalf("%s: %v, %v; want mode %o", rel, fi, err, want)
		}
	}
	if target, err := os.Readlink(filepath.Join(dst, "run")); err != nil || target != filepath.FromSlash("bin/run.sh") {
		t.Fatalf("symlink run -> %q, %v", target, err)
	}
}

// TestOneRuleBothWays: a symlink leaving the package is refused when it
// is packed, and when an archive someone else made holds it.
func TestOneRuleBothWays(t *testing.T) {
	for name, target := range map[string]string{"escaping": "../outside", "absolute": "/etc/passwd"} {
		t.Run(name, func(t *testing.T) {
			src := t.TempDir()
			if err := os.Symlink(target, filepath.Join(src, "link")); err != nil {
				t.Fatal(err)
			}
			if err := archive.Pack(t.Context(), src, &bytes.Buffer{}); !errors.Is(err, archive.ErrRefused) {
				t.Fatalf("Pack = %v, want %v", err, archive.ErrRefused)
			}
		})
	}
	if err := archive.Extract(t.Context(), bytes.NewReader([]byte("plain text")), t.TempDir()); !errors.Is(err, archive.ErrRefused) {
		t.Fatalf("Extract of something that is not a tar.gz = %v, want %v", err, archive.ErrRefused)
	}
}
