package publisher_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/pcm-project/pcm/publisher"
)

// maxRelative mirrors ParseWhen's bound on a duration from now.
const maxRelative = 100 * 365 * 24 * time.Hour

// FuzzParseWhen feeds arbitrary text and clocks to ParseWhen, the reader of
// pcm publish's --offer-after, --mandatory-after and --expire-after. Run it
// with
//
//	go test -run '^$' -fuzz '^FuzzParseWhen$' -fuzztime 60s ./publisher/
//
// Nothing may panic; a refusal wraps ErrInvalidTime; an accepted instant is
// now for "now", the RFC 3339 instant written, or now moved by the signed
// duration written (at most 100 years), and it survives being written back
// as RFC 3339 (what a job file or the audit shows) and read again.
func FuzzParseWhen(f *testing.F) {
	for _, s := range []string{
		"now", " now ", "+2h", "-24h", "+7d", "+1d12h", "-2w", "1.5d", "+d", "+7dd", "90s", "+1h30m", "+0", "-0s", "2026-11-21T10:00:00Z",
		"2026-11-21T10:00:00.123456789+02:00", "+876000h", "+876001h", "++1h", "+-1h", "-",
		"+", "", "tomorrow", "+9223372036854775807ns", "-9223372036854775808ns", "1e3s",
		"2026-13-01T00:00:00Z", "0000-01-01T00:00:00Z", "9999-12-31T23:59:59.999999999Z",
	} {
		f.Add(s, int64(1795000000), int32(0))
	}
	f.Add("-876000h", int64(0), int32(-1))
	f.Add("+876000h", int64(7258118400), int32(999999999))

	f.Fuzz(func(t *testing.T, s string, sec int64, nsec int32) {
		// A clock between 1970 and 2200, as a machine running pcm has.
		const span = int64(230 * 365 * 24 * 3600)
		sec %= span
		if sec < 0 {
			sec += span
		}
		now := time.Unix(sec, int64(nsec)%int64(time.Second)).UTC()
		got, err := publisher.ParseWhen(s, now)
		if err != nil {
			if !errors.Is(err, publisher.ErrInvalidTime) {
				t.Fatalf("ParseWhen(%q) error does not wrap ErrInvalidTime: %v", s, err)
			}
			if got != (time.Time{}) {
				t.Fatalf("ParseWhen(%q) returned %s with its error", s, got)
			}
			return
		}
		trimmed := strings.TrimSpace(s)
		abs, perr := time.Parse(time.RFC3339Nano, trimmed)
		switch {
		case trimmed == "now":
			if !got.Equal(now) {
				t.Fatalf("now is %s, ParseWhen says %s", now, got)
			}
		case perr == nil:
			if !got.Equal(abs) {
				t.Fatalf("ParseWhen(%q) = %s, RFC 3339 says %s", s, got, abs)
			}
		default:
			d := got.Sub(now)
			if d > maxRelative || d < -maxRelative {
				t.Fatalf("ParseWhen(%q) is %s from now: beyond 100 years", s, d)
			}
			rest := strings.TrimLeft(trimmed, "+-")
			if strings.ContainsAny(rest, "dw") {
				return // days and weeks: pcm's own units, checked by TestParseWhen
			}
			want, err := time.ParseDuration(rest)
			if err != nil {
				t.Fatalf("ParseWhen(%q) accepted a duration Go does not read: %v", s, err)
			}
			if strings.HasPrefix(trimmed, "-") {
				want = -want
			}
			if d != want {
				t.Fatalf("ParseWhen(%q) moved now by %s, want %s", s, d, want)
			}
		}
		if y := got.Year(); y < 0 || y > 9999 {
			return // RFC 3339 cannot write it; the job's validation refuses it later
		}
		back, err := publisher.ParseWhen(got.Format(time.RFC3339Nano), now.Add(time.Hour))
		if err != nil || !back.Equal(got) {
			t.Fatalf("%s written as RFC 3339 reads back as %s (%v)", got, back, err)
		}
	})
}
