package publisher

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// ParseWhen reads an instant given as RFC 3339 ("2026-11-21T10:00:00Z") or
// relative to now as a signed duration ("+2h", "-24h", "+7d", "+1d12h",
// "-2w"): Go's units (h, m, s, ms, us, ns) and d (24 hours) and w (7 days).
// A bare duration without a sign is read as in the future. "now" is now.
func ParseWhen(s string, now time.Time) (time.Time, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return time.Time{}, fmt.Errorf("%w: empty: give RFC 3339 (2026-11-21T10:00:00Z) or a duration from now (+2h, +7d, -24h)", ErrInvalidTime)
	}
	if s == "now" {
		return now, nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	sign := time.Duration(1)
	rest := s
	switch s[0] {
	case '+':
		rest = s[1:]
	case '-':
		sign, rest = -1, s[1:]
	}
	d, err := parseDays(rest)
	if err != nil {
		return time.Time{}, fmt.Errorf("%w: %q: give RFC 3339 (2026-11-21T10:00:00Z) or a duration from now (+2h, +7d, +1d12h, -24h)", ErrInvalidTime, s)
	}
	const maxRel = 100 * 365 * 24 * time.Hour
	if d > maxRel {
		return time.Time{}, fmt.Errorf("%w: %q is more than 100 years from now", ErrInvalidTime, s)
	}
	return now.Add(sign * d), nil
}

// dayPart is a number of days or weeks in a duration.
var dayPart = regexp.MustCompile(`([0-9]*\.?[0-9]+)([dw])`)

// parseDays reads an unsigned duration as time.ParseDuration does, with
// two more units: d (24 hours) and w (7 days), as in "7d", "1d12h", "2w".
func parseDays(s string) (time.Duration, error) {
	var bad error
	expanded := dayPart.ReplaceAllStringFunc(s, func(part string) string {
		m := dayPart.FindStringSubmatch(part)
		n, err := strconv.ParseFloat(m[1], 64)
		if err != nil || n > 100*366 {
			bad = fmt.Errorf("%q is not a number of days or weeks", part)
		}
		hours := n * 24
		if m[2] == "w" {
			hours *= 7
		}
		return strconv.FormatFloat(hours, 'f', -1, 64) + "h"
	})
	if bad != nil {
		return 0, bad
	}
	d, err := time.ParseDuration(expanded)
	if err != nil || d < 0 || strings.HasPrefix(expanded, "+") || strings.HasPrefix(expanded, "-") {
		return 0, fmt.Errorf("%q is not a duration", s)
	}
	return d, nil
}
