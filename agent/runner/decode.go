package runner

import (
	"strconv"
	"strings"
	"unicode"
	"unicode/utf16"
	"unicode/utf8"

	"golang.org/x/text/encoding"
	"golang.org/x/text/encoding/charmap"
	"golang.org/x/text/encoding/japanese"
	"golang.org/x/text/encoding/korean"
	"golang.org/x/text/encoding/simplifiedchinese"
	"golang.org/x/text/encoding/traditionalchinese"
)

// The encodings an output tail may be decoded from, as Result.OutputEncoding
// names them. UTF-8 is named by the empty string: it is the default and no
// status mentions it. A legacy code page is named "cp" and its number
// (cp437, cp850, cp1252, ...).
const (
	EncodingUTF16LE = "utf-16le"
	EncodingUTF16BE = "utf-16be"
)

// codePages are the system's legacy code pages, tried when an output is
// neither UTF-16 nor valid UTF-8: the OEM code page (what console programs
// such as cmd.exe write when their output is redirected) and the ANSI code
// page (what GUI-era programs write). Zero means none: off Windows, output
// that is not UTF-8 keeps its invalid bytes replaced by U+FFFD.
type codePages struct {
	OEM, ANSI int
}

// codePageEncodings are the code pages Windows uses as OEM or ANSI code
// pages that golang.org/x/text can decode.
var codePageEncodings = map[int]encoding.Encoding{
	437: charmap.CodePage437, 850: charmap.CodePage850, 852: charmap.CodePage852,
	855: charmap.CodePage855, 858: charmap.CodePage858, 860: charmap.CodePage860,
	862: charmap.CodePage862, 863: charmap.CodePage863, 865: charmap.CodePage865,
	866: charmap.CodePage866, 874: charmap.Windows874,
	1250: charmap.Windows1250, 1251: charmap.Windows1251, 1252: charmap.Windows1252,
	1253: charmap.Windows1253, 1254: charmap.Windows1254, 1255: charmap.Windows1255,
	1256: charmap.Windows1256, 1257: charmap.Windows1257, 1258: charmap.Windows1258,
	932: japanese.ShiftJIS, 936: simplifiedchinese.GBK, 949: korean.EUCKR, 950: traditionalchinese.Big5,
	20866: charmap.KOI8R, 21866: charmap.KOI8U, 28591: charmap.ISO8859_1,
}

// decodeOutput turns raw output bytes into UTF-8 text and names the
// encoding it decoded from ("" for UTF-8). b starts at byte from of the
// run's output (more than 0 when it was cut from a longer output); bom is
// the first bytes of the run's output, where a byte-order mark would be.
// The rules, in order:
//
//  1. a UTF-16 byte-order mark, or the NUL pattern of UTF-16 (a zero byte in
//     every other position for mostly-ASCII text): UTF-16;
//  2. valid UTF-8 (a rune split by the cut aside): UTF-8;
//  3. with known code pages: the OEM or the ANSI code page, whichever reads
//     as more plausible text (letters inside words count, box drawing and
//     control characters count against; a tie goes to the OEM code page,
//     what console programs write);
//  4. otherwise UTF-8 with each invalid byte replaced by U+FFFD.
//
// The result is at most limit bytes: whole runes are dropped from its front.
func decodeOutput(b, bom []byte, from int64, cp codePages, limit int) (text, enc string) {
	units := b
	if from%2 == 1 && len(units) > 0 {
		units = units[1:] // the second byte of a UTF-16 code unit
	}
	if le, ok := utf16Order(units, bom); ok {
		text, enc = decodeUTF16(units, le, from == 0), EncodingUTF16BE
		if le {
			enc = EncodingUTF16LE
		}
		return trimFront(text, limit), enc
	}
	if from > 0 {
		for i := 0; i < utf8.UTFMax-1 && len(b) > 0 && !utf8.RuneStart(b[0]); i++ {
			b = b[1:]
		}
	}
	if !validUTF8(b) {
		if text, enc, ok := decodeCodePage(b, cp); ok {
			return trimFront(text, limit), enc
		}
	}
	return trimFront(strings.ToValidUTF8(string(b), string(utf8.RuneError)), limit), ""
}

// validUTF8 reports whether b is UTF-8, allowing a rune cut at its end (the
// process may still have been writing it).
func validUTF8(b []byte) bool {
	for i := len(b) - 1; i >= 0 && i >= len(b)-(utf8.UTFMax-1); i-- {
		if utf8.RuneStart(b[i]) {
			if !utf8.FullRune(b[i:]) {
				b = b[:i]
			}
			break
		}
	}
	return utf8.Valid(b)
}

// utf16Order reports whether b is UTF-16 and in which byte order: a
// byte-order mark at the start of the run's output, or else the NUL
// pattern (at least 8 code units, most of them with a zero high byte and a
// non-zero low byte).
func utf16Order(b, bom []byte) (littleEndian, ok bool) {
	switch {
	case len(bom) >= 2 && bom[0] == 0xFF && bom[1] == 0xFE:
		return true, true
	case len(bom) >= 2 && bom[0] == 0xFE && bom[1] == 0xFF:
		return false, true
	}
	units := len(b) / 2
	if units < 8 {
		return false, false
	}
	var zeroOdd, zeroEven int
	for i := 0; i+1 < len(b); i += 2 {
		if b[i] == 0 {
			zeroEven++
		}
		if b[i+1] == 0 {
			zeroOdd++
		}
	}
	switch {
	case zeroOdd*4 >= units*3 && zeroEven*8 < units:
		return true, true
	case zeroEven*4 >= units*3 && zeroOdd*8 < units:
		return false, true
	}
	return false, false
}

// decodeUTF16 decodes b as UTF-16 in the given byte order, dropping an odd
// last byte, and a byte-order mark when b is the start of the output
// (first); an unpaired surrogate (a pair split by a cut) becomes U+FFFD.
func decodeUTF16(b []byte, littleEndian, first bool) string {
	units := make([]uint16, 0, len(b)/2)
	for i := 0; i+1 < len(b); i += 2 {
		u := uint16(b[i])<<8 | uint16(b[i+1])
		if littleEndian {
			u = uint16(b[i+1])<<8 | uint16(b[i])
		}
		units = append(units, u)
	}
	if first && len(units) > 0 && units[0] == 0xFEFF {
		units = units[1:]
	}
	return string(utf16.Decode(units))
}

// decodeCodePage decodes b with the OEM or the ANSI code page of cp,
// whichever reads as more plausible text; ok is false when neither is
// known.
func decodeCodePage(b []byte, cp codePages) (text, enc string, ok bool) {
	best := -1 << 31
	for _, page := range []int{cp.OEM, cp.ANSI} {
		e, known := codePageEncodings[page]
		if !known {
			continue
		}
		s, err := e.NewDecoder().String(string(b))
		if err != nil {
			continue
		}
		if score := plausibility(s); score > best {
			best, text, enc, ok = score, s, "cp"+strconv.Itoa(page), true
		}
	}
	return text, enc, ok
}

// plausibility scores decoded text: each non-ASCII letter counts (a Latin
// one more, one between ASCII lower-case letters more again, as é in
// "héllo"), each box-drawing, control or replacement character counts
// against.
func plausibility(s string) int {
	score := 0
	runes := []rune(s)
	for i, r := range runes {
		if r < utf8.RuneSelf {
			continue
		}
		switch {
		case unicode.IsLetter(r):
			score++
			if unicode.Is(unicode.Latin, r) {
				score++
			}
			if unicode.IsLower(r) && (i > 0 && isASCIILower(runes[i-1]) || i+1 < len(runes) && isASCIILower(runes[i+1])) {
				score++
			}
		case r == utf8.RuneError, unicode.IsControl(r), r >= 0x2500 && r <= 0x259F:
			score--
		}
	}
	return score
}

func isASCIILower(r rune) bool { return r >= 'a' && r <= 'z' }

// trimFront drops whole runes from the front of s until it is at most
// limit bytes long.
func trimFront(s string, limit int) string {
	for len(s) > limit {
		_, size := utf8.DecodeRuneInString(s)
		s = s[size:]
	}
	return s
}
