package publisher

import (
	"fmt"
	"strings"
	"time"
)

// ParseWhen reads an instant given as RFC 3339 ("2026-11-21T10:00:00Z") or
// relative to now as a signed Go duration ("+2h", "-24h", "+90s"). A bare
// duration without a sign is read as in the future. "now" is now.
func ParseWhen(s string, now time.Time) (time.Time, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return time.Time{}, fmt.Errorf("%w: empty: give RFC 3339 (2026-11-21T10:00:00Z) or a duration from now (+2h, -24h)", ErrInvalidTime)
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
	d, err := time.ParseDuration(rest)
	if err != nil || d < 0 || strings.HasPrefix(rest, "+") || strings.HasPrefix(rest, "-") {
		return time.Time{}, fmt.Errorf("%w: %q: give RFC 3339 (2026-11-21T10:00:00Z) or a duration from now (+2h, -24h)", ErrInvalidTime, s)
	}
	const maxRel = 100 * 365 * 24 * time.Hour
	if d > maxRel {
		return time.Time{}, fmt.Errorf("%w: %q is more than 100 years from now", ErrInvalidTime, s)
	}
	return now.Add(sign * d), nil
}
