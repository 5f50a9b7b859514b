package publisher_test

import (
	"errors"
	"testing"
	"time"

	"github.com/pcm-project/pcm/publisher"
)

// TestParseWhen: RFC 3339, now, and durations from now with Go's units and
// days and weeks, signed or not; anything else is ErrInvalidTime.
func TestParseWhen(t *testing.T) {
	now := time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		in   string
		want time.Duration // from now
	}{
		{"now", 0},
		{"+2h", 2 * time.Hour},
		{"-24h", -24 * time.Hour},
		{"90m", 90 * time.Minute},
		{"+7d", 7 * 24 * time.Hour},
		{"-1d", -24 * time.Hour},
		{"+1d12h", 36 * time.Hour},
		{"+2w", 14 * 24 * time.Hour},
		{"+1w2d3h", (7+2)*24*time.Hour + 3*time.Hour},
		{"1.5d", 36 * time.Hour},
		{"+0", 0},
		{"2026-11-22T10:00:00Z", 24 * time.Hour},
	} {
		got, err := publisher.ParseWhen(tc.in, now)
		if err != nil || !got.Equal(now.Add(tc.want)) {
			t.Errorf("ParseWhen(%q) = %s, %v; want now%+v", tc.in, got, err, tc.want)
		}
	}
	for _, bad := range []string{"", "tomorrow", "+d", "7 days", "+1d-2h", "++1d", "+7dd", "+40000w", "1y"} {
		if _, err := publisher.ParseWhen(bad, now); !errors.Is(err, publisher.ErrInvalidTime) {
			t.Errorf("ParseWhen(%q): want ErrInvalidTime, got %v", bad, err)
		}
	}
}
