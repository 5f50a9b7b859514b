package runner

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestCleanTail(t *testing.T) {
	tests := []struct {
		name  string
		in    string
		cut   bool
		limit int
		want  string
	}{
		{"ascii", "hello", false, 10, "hello"},
		{"cut inside 2-byte rune", "\xa9\xc3\xa9", true, 3, "é"},
		{"cut inside 4-byte rune", "\x9f\x98\x80ok", true, 5, "ok"},
		{"not cut keeps leading invalid byte as replacement", "\xa9ok", false, 10, "\uFFFDok"},
		{"invalid byte replaced", "a\xffb", false, 10, "a\uFFFDb"},
		{"truncated rune at end replaced", "ok\xc3", false, 10, "ok\uFFFD"},
		// "\xff\xff" becomes one U+FFFD (3 bytes): 5 bytes > 4, so the
		// whole replacement rune is dropped from the front.
		{"replacement growth trimmed to limit", "\xff\xffab", false, 4, "ab"},
		{"empty", "", true, 10, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := cleanTail([]byte(tt.in), tt.cut, tt.limit)
			if !utf8.ValidString(got) || len(got) > tt.limit {
				t.Fatalf("cleanTail(%q) = %q: invalid UTF-8 or longer than %d", tt.in, got, tt.limit)
			}
			if got != tt.want {
				t.Fatalf("cleanTail(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

func TestReadTailFromOffset(t *testing.T) {
	path := filepath.Join(t.TempDir(), "log")
	if err := os.WriteFile(path, []byte("previous run\nthis run\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	offset := int64(len("previous run\n"))
	if got := readTail(path, offset, 100); got != "this run\n" {
		t.Fatalf("readTail = %q, want %q", got, "this run\n")
	}
	if got := readTail(path, offset, 4); got != "run\n" {
		t.Fatalf("readTail limit 4 = %q, want %q", got, "run\n")
	}
	if got := readTail(path, offset+int64(len("this run\n")), 100); got != "" {
		t.Fatalf("readTail with no new output = %q, want empty", got)
	}
	if got := readTail(filepath.Join(t.TempDir(), "missing"), 0, 100); !strings.Contains(got, "unavailable") {
		t.Fatalf("readTail of a missing file = %q, want a note saying it is unavailable", got)
	}
}
