package runner

import (
	"fmt"
	"io"
	"os"
	"strings"
	"unicode/utf8"
)

// readTail returns at most limit bytes of the end of the file at path,
// starting no earlier than offset, as valid UTF-8. The run has already
// happened, so a read failure is reported inside the tail rather than as an
// error that would hide the run's result.
func readTail(path string, offset int64, limit int) string {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Sprintf("(output tail unavailable: %v)", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return fmt.Sprintf("(output tail unavailable: %v)", err)
	}
	end := fi.Size()
	start := max(offset, end-int64(limit))
	if start >= end {
		return ""
	}
	buf := make([]byte, end-start)
	n, err := f.ReadAt(buf, start)
	if err != nil && err != io.EOF {
		return fmt.Sprintf("(output tail unavailable: %v)", err)
	}
	return cleanTail(buf[:n], start > offset, limit)
}

// cleanTail makes b valid UTF-8 of at most limit bytes. When b was cut from
// a longer output (cut), the continuation bytes of a rune split by the cut
// are dropped; invalid bytes are replaced with U+FFFD, and if the
// replacements made the text longer than limit, whole runes are dropped from
// its front.
func cleanTail(b []byte, cut bool, limit int) string {
	if cut {
		for i := 0; i < utf8.UTFMax-1 && len(b) > 0 && !utf8.RuneStart(b[0]); i++ {
			b = b[1:]
		}
	}
	s := strings.ToValidUTF8(string(b), string(utf8.RuneError))
	for len(s) > limit {
		_, size := utf8.DecodeRuneInString(s)
		s = s[size:]
	}
	return s
}
