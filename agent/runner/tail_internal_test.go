package runner

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"unicode/utf16"
	"unicode/utf8"
)

// utf16le encodes s as UTF-16LE, with a byte-order mark when bom is set:
// what cmd /u and PowerShell's Out-File write.
func utf16le(s string, bom bool) []byte {
	var b []byte
	if bom {
		b = append(b, 0xFF, 0xFE)
	}
	for _, u := range utf16.Encode([]rune(s)) {
		b = append(b, byte(u), byte(u>>8))
	}
	return b
}

func utf16be(s string) []byte {
	b := []byte{0xFE, 0xFF}
	for _, u := range utf16.Encode([]rune(s)) {
		b = append(b, byte(u>>8), byte(u))
	}
	return b
}

// The byte fixtures below are what Windows programs write for
// "héllo-wörld" and friends: cmd.exe's echo in the OEM code page (437 in
// the US, 850 in Western Europe), a GUI-era program in the ANSI code page
// (1252), cmd /u in UTF-16LE.
func TestDecodeOutput(t *testing.T) {
	western := codePages{OEM: 850, ANSI: 1252}
	us := codePages{OEM: 437, ANSI: 1252}
	tests := []struct {
		name     string
		in       []byte
		cp       codePages
		want     string
		wantEnc  string
		fromByte int64
	}{
		{"utf-8", []byte("héllo-wörld-€-日本\r\n"), us, "héllo-wörld-€-日本\r\n", "", 0},
		{"utf-8 never taken for a code page", []byte("naïve"), western, "naïve", "", 0},
		{"utf-16le with bom", utf16le("héllo-wörld-€-日本\r\n", true), us, "héllo-wörld-€-日本\r\n", EncodingUTF16LE, 0},
		{"utf-16le without bom", utf16le("héllo-wörld-€\r\n", false), us, "héllo-wörld-€\r\n", EncodingUTF16LE, 0},
		{"utf-16le without bom off windows", utf16le("dir listing done\r\n", false), codePages{}, "dir listing done\r\n", EncodingUTF16LE, 0},
		{"utf-16be with bom", utf16be("héllo\n"), us, "héllo\n", EncodingUTF16BE, 0},
		{"cp437", []byte("h\x82llo-w\x94rld-\x9c5\r\n"), us, "héllo-wörld-£5\r\n", "cp437", 0},
		{"cp850", []byte("S\xc6o Paulo, h\x82llo-w\x94rld\r\n"), western, "São Paulo, héllo-wörld\r\n", "cp850", 0},
		{"cp1252 when the OEM page reads worse", []byte("h\xe9llo-w\xf6rld-\x80\r\n"), us, "héllo-wörld-€\r\n", "cp1252", 0},
		{"cp1252 under a western OEM page", []byte("caf\xe9 cr\xe8me\r\n"), western, "café crème\r\n", "cp1252", 0},
		{"no code page known: replacement", []byte("a\xffb"), codePages{}, "a\uFFFDb", "", 0},
		{"utf-8 cut inside a rune", []byte("\xa9\xc3\xa9"), us, "é", "", 5},
		{"utf-8 rune still being written at the end", []byte("ok\xc3"), us, "ok\uFFFD", "", 0},
		// The cut falls on the second byte of a code unit: it is dropped.
		{"utf-16le cut at an odd byte", utf16le("xhéllo-wörld-done", false)[1:], us, "héllo-wörld-done", EncodingUTF16LE, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			bom := tt.in
			if tt.fromByte > 0 {
				bom = nil
			}
			got, enc := decodeOutput(tt.in, bom, tt.fromByte, tt.cp, 4096)
			if got != tt.want || enc != tt.wantEnc {
				t.Fatalf("decodeOutput(% x) = %q (%q), want %q (%q)", tt.in, got, enc, tt.want, tt.wantEnc)
			}
		})
	}
}

// A tail decoded from a code page may be longer in UTF-8 than the bytes
// it came from: it is cut to the limit at a rune boundary.
func TestDecodeOutputLimit(t *testing.T) {
	got, enc := decodeOutput([]byte("\x82\x82\x82ab"), []byte("\x82\x82"), 0, codePages{OEM: 437}, 5)
	if !utf8.ValidString(got) || len(got) > 5 || got != "éab" || enc != "cp437" {
		t.Fatalf("decodeOutput = %q (%q), want %q (cp437), at most 5 bytes", got, enc, "éab")
	}
	got, _ = decodeOutput([]byte("\xff\xffab"), []byte("\xff\xff"), 0, codePages{}, 4)
	if got != "ab" {
		t.Fatalf("replacement growth: got %q, want %q", got, "ab")
	}
}

func TestReadTailFromOffset(t *testing.T) {
	path := filepath.Join(t.TempDir(), "log")
	if err := os.WriteFile(path, []byte("previous run\nthis run\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	offset := int64(len("previous run\n"))
	if got, _ := readTail(path, offset, 100); got != "this run\n" {
		t.Fatalf("readTail = %q, want %q", got, "this run\n")
	}
	if got, _ := readTail(path, offset, 4); got != "run\n" {
		t.Fatalf("readTail limit 4 = %q, want %q", got, "run\n")
	}
	if got, _ := readTail(path, offset+int64(len("this run\n")), 100); got != "" {
		t.Fatalf("readTail with no new output = %q, want empty", got)
	}
	if got, _ := readTail(filepath.Join(t.TempDir(), "missing"), 0, 100); !strings.Contains(got, "unavailable") {
		t.Fatalf("readTail of a missing file = %q, want a note saying it is unavailable", got)
	}
}

// The byte-order mark at the start of a run's output is found even when
// the tail was cut from further on, and the raw bytes stay in the log.
func TestReadTailUTF16AfterCut(t *testing.T) {
	path := filepath.Join(t.TempDir(), "log")
	prev := []byte("earlier run\n")
	run := utf16le(strings.Repeat("ligne ", 20)+"terminée\r\n", true)
	if err := os.WriteFile(path, append(prev, run...), 0o600); err != nil {
		t.Fatal(err)
	}
	got, enc := readTail(path, int64(len(prev)), 31)
	if enc != EncodingUTF16LE || !strings.HasSuffix(got, "terminée\r\n") || strings.Contains(got, "\x00") {
		t.Fatalf("readTail = %q (%q), want the end of the UTF-16LE text decoded", got, enc)
	}
	raw, _ := os.ReadFile(path)
	if len(raw) != len(prev)+len(run) {
		t.Fatal("the log was changed")
	}
}
