package events

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
	"unicode/utf16"
)

// CanonicalJSON returns the canonical form of the JSON text b, as RFC 8785
// (JSON Canonicalization Scheme) defines it: no insignificant whitespace,
// object members sorted by their names' UTF-16 code units, numbers written
// as ECMAScript writes a double (1, 1.5, 1e+21), strings with only the
// escapes JSON requires (\" \\ \b \f \n \r \t, other control characters as
// \u00xx) and every other character as itself. Two JSON texts with the same
// value have the same canonical form, however they were spaced, ordered or
// escaped: what a relay that re-serialises an event cannot change. It
// refuses (ErrMalformed) what is not one JSON value, an object with a
// member named twice, and a number beyond the range of a double.
func CanonicalJSON(b []byte) ([]byte, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var out bytes.Buffer
	if err := writeCanonical(&out, dec); err != nil {
		return nil, fmt.Errorf("%w: canonical JSON: %v", ErrMalformed, err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("%w: canonical JSON: more than one JSON value", ErrMalformed)
	}
	return out.Bytes(), nil
}

// writeCanonical writes the next JSON value of dec in canonical form.
func writeCanonical(w *bytes.Buffer, dec *json.Decoder) error {
	tok, err := dec.Token()
	if err != nil {
		return err
	}
	switch v := tok.(type) {
	case json.Delim:
		switch v {
		case '{':
			return writeCanonicalObject(w, dec)
		case '[':
			w.WriteByte('[')
			for i := 0; dec.More(); i++ {
				if i > 0 {
					w.WriteByte(',')
				}
				if err := writeCanonical(w, dec); err != nil {
					return err
				}
			}
			_, err := dec.Token() // ]
			w.WriteByte(']')
			return err
		}
		return fmt.Errorf("unexpected %q", v)
	case string:
		writeCanonicalString(w, v)
	case json.Number:
		s, err := canonicalNumber(v)
		if err != nil {
			return err
		}
		w.WriteString(s)
	case bool:
		w.WriteString(strconv.FormatBool(v))
	case nil:
		w.WriteString("null")
	}
	return nil
}

// writeCanonicalObject writes the members of an object whose { was read.
func writeCanonicalObject(w *bytes.Buffer, dec *json.Decoder) error {
	type member struct {
		key   []uint16
		name  string
		value []byte
	}
	var members []member
	seen := map[string]bool{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return err
		}
		name, _ := tok.(string)
		if seen[name] {
			return fmt.Errorf("member %q appears twice in one object", name)
		}
		seen[name] = true
		var v bytes.Buffer
		if err := writeCanonical(&v, dec); err != nil {
			return err
		}
		members = append(members, member{key: utf16.Encode([]rune(name)), name: name, value: v.Bytes()})
	}
	if _, err := dec.Token(); err != nil { // }
		return err
	}
	slices.SortFunc(members, func(a, b member) int { return slices.Compare(a.key, b.key) })
	w.WriteByte('{')
	for i, m := range members {
		if i > 0 {
			w.WriteByte(',')
		}
		writeCanonicalString(w, m.name)
		w.WriteByte(':')
		w.Write(m.value)
	}
	w.WriteByte('}')
	return nil
}

// writeCanonicalString writes s as a JSON string with only the escapes
// JSON requires.
func writeCanonicalString(w *bytes.Buffer, s string) {
	w.WriteByte('"')
	for _, r := range s {
		switch r {
		case '"':
			w.WriteString(`\"`)
		case '\\':
			w.WriteString(`\\`)
		case '\b':
			w.WriteString(`\b`)
		case '\f':
			w.WriteString(`\f`)
		case '\n':
			w.WriteString(`\n`)
		case '\r':
			w.WriteString(`\r`)
		case '\t':
			w.WriteString(`\t`)
		default:
			if r < 0x20 {
				fmt.Fprintf(w, `\u%04x`, r)
			} else {
				w.WriteRune(r)
			}
		}
	}
	w.WriteByte('"')
}

// canonicalNumber writes a JSON number as ECMAScript's Number.prototype.
// toString writes the double it denotes.
func canonicalNumber(n json.Number) (string, error) {
	f, err := strconv.ParseFloat(string(n), 64)
	if err != nil {
		return "", fmt.Errorf("number %s is beyond the range of a double", n)
	}
	if f == 0 {
		return "0", nil // -0 too
	}
	if abs := math.Abs(f); abs >= 1e-6 && abs < 1e21 {
		return strconv.FormatFloat(f, 'f', -1, 64), nil
	}
	mantissa, exp, _ := strings.Cut(strconv.FormatFloat(f, 'e', -1, 64), "e")
	return mantissa + "e" + exp[:1] + strings.TrimLeft(exp[1:], "0"), nil
}
