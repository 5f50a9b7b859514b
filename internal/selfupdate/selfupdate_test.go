package selfupdate

import (
	"os"
	"path/filepath"
	"testing"
)

func TestSwapAndRestore(t *testing.T) {
	dir := t.TempDir()
	exe, next := filepath.Join(dir, "pcm"), filepath.Join(dir, "download")
	if err := os.WriteFile(exe, []byte("old"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(next, []byte("new"), 0o644); err != nil {
		t.Fatal(err)
	}
	prev, err := Swap(exe, next)
	if err != nil {
		t.Fatal(err)
	}
	read := func(p string) string {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	if read(exe) != "new" || read(prev) != "old" || read(next) != "new" {
		t.Fatalf("after the swap: exe %q, previous %q, download %q", read(exe), read(prev), read(next))
	}
	if fi, _ := os.Stat(exe); fi.Mode().Perm()&0o100 == 0 {
		t.Fatalf("the new binary is not executable: %v", fi.Mode())
	}
	if err := Restore(exe, prev); err != nil {
		t.Fatal(err)
	}
	if read(exe) != "old" {
		t.Fatalf("after the restore: exe %q", read(exe))
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 3 {
		t.Fatalf("left in the directory: %v (want pcm, pcm.previous, download)", entries)
	}
}

func TestPreviousPath(t *testing.T) {
	for in, want := range map[string]string{
		"/usr/local/bin/pcm":           "/usr/local/bin/pcm.previous",
		`C:\Program Files\pcm\pcm.exe`: `C:\Program Files\pcm\pcm.previous.exe`,
		"/opt/pcm/pcm.EXE":             "/opt/pcm/pcm.previous.EXE",
	} {
		if got := PreviousPath(in); got != want {
			t.Errorf("PreviousPath(%q) = %q, want %q", in, got, want)
		}
	}
}
