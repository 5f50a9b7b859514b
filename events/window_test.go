package events_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/pcm-project/pcm/events"
)

// TestParseWindow: windows as operators write them, and the ones that
// never open or name no known zone, refused with what to give.
func TestParseWindow(t *testing.T) {
	for _, tc := range []struct {
		spec string
		want string // String() of the window, or a part of the error
		err  error
	}{
		{"Mon-Fri 22:00-04:00 Europe/Berlin", "Mon-Fri 22:00-04:00 Europe/Berlin", nil},
		{"sat,SUN 00:00-24:00 UTC", "Sat,Sun 00:00-24:00 UTC", nil},
		{"Fri-Mon 01:00-02:00 UTC", "Mon,Fri,Sat,Sun 01:00-02:00 UTC", nil},
		{"daily 02:00-03:00 America/New_York", "daily 02:00-03:00 America/New_York", nil},
		{"2026-12-24 08:00-18:00 Europe/Berlin", "2026-12-24 08:00-18:00 Europe/Berlin", nil},
		{"Mon-Fri 22:00-22:00 UTC", "never opens", events.ErrWindow},
		{"Mon-Fri 22:00-04:00 Europe/Berln", `time zone "Europe/Berln" is unknown: give an IANA zone`, events.ErrWindow},
		{"Mon-Fri 22:00-04:00 Local", "is unknown", events.ErrWindow},
		{"Mon-Fri 22:00-04:00", "write a window as DAYS HH:MM-HH:MM ZONE", events.ErrWindow},
		{"Someday 22:00-04:00 UTC", `day "Someday": give days as Mon`, events.ErrWindow},
		{"Mon 25:00-04:00 UTC", `start "25:00": give a time of day as HH:MM`, events.ErrWindow},
		{"Mon 22:00-24:30 UTC", `end "24:30"`, events.ErrWindow},
		{"Mon 2200-0400 UTC", `start "2200": give a time of day as HH:MM`, events.ErrWindow},
		{"2026-13-40 08:00-18:00 UTC", "write a date as YYYY-MM-DD", events.ErrWindow},
	} {
		t.Run(tc.spec, func(t *testing.T) {
			w, err := events.ParseWindow(tc.spec)
			if tc.err != nil {
				if !errors.Is(err, tc.err) || !strings.Contains(err.Error(), tc.want) {
					t.Fatalf("got %v, want %v saying %q", err, tc.err, tc.want)
				}
				return
			}
			if err != nil || w.String() != tc.want {
				t.Fatalf("got %q, %v; want %q", w, err, tc.want)
			}
			if again, err := events.ParseWindow(w.String()); err != nil || again.String() != w.String() {
				t.Fatalf("does not read back: %q, %v", again, err)
			}
		})
	}
	for _, bad := range []events.Window{
		{Start: "22:00", End: "04:00", Zone: "UTC"},
		{Days: []string{"Mon"}, Date: "2026-12-24", Start: "22:00", End: "04:00", Zone: "UTC"},
		{Days: []string{"Mon"}, Start: "22:00", End: "04:00"},
	} {
		if err := bad.Validate(); !errors.Is(err, events.ErrWindow) {
			t.Errorf("%+v accepted: %v", bad, err)
		}
	}
}

// TestWindowsNext: when a job that needs a window of a given length may
// start: open now with enough left, closed, too short for the timeout, and
// across the daylight saving changes of the window's zone.
func TestWindowsNext(t *testing.T) {
	berlin, err := time.LoadLocation("Europe/Berlin")
	if err != nil {
		t.Fatal(err)
	}
	at := func(y int, m time.Month, d, h, min int) time.Time { return time.Date(y, m, d, h, min, 0, 0, berlin) }
	parse := func(specs ...string) events.Windows {
		var ws events.Windows
		for _, s := range specs {
			w, err := events.ParseWindow(s)
			if err != nil {
				t.Fatal(err)
			}
			ws = append(ws, w)
		}
		return ws
	}
	nights := parse("Mon-Fri 22:00-04:00 Europe/Berlin")
	for _, tc := range []struct {
		name       string
		ws         events.Windows
		now        time.Time
		need       time.Duration
		start, end time.Time // zero start: none
		open       bool
	}{
		// 2026-03-02 is a Monday.
		{"open: Monday 23:00, an hour's job fits", nights, at(2026, 3, 2, 23, 0), time.Hour, at(2026, 3, 2, 22, 0), at(2026, 3, 3, 4, 0), true},
		{"open past midnight: Tuesday 01:00 is Monday's night", nights, at(2026, 3, 3, 1, 0), time.Hour, at(2026, 3, 2, 22, 0), at(2026, 3, 3, 4, 0), true},
		{"closed: Monday noon, opens at 22:00", nights, at(2026, 3, 2, 12, 0), time.Hour, at(2026, 3, 2, 22, 0), at(2026, 3, 3, 4, 0), false},
		{"too short: 03:30 with an hour's timeout waits for the next night", nights, at(2026, 3, 3, 3, 30), time.Hour, at(2026, 3, 3, 22, 0), at(2026, 3, 4, 4, 0), false},
		{"closed for the weekend: Saturday waits for Monday night", nights, at(2026, 3, 7, 12, 0), time.Hour, at(2026, 3, 9, 22, 0), at(2026, 3, 10, 4, 0), false},
		{"Friday night runs into Saturday", nights, at(2026, 3, 7, 2, 0), time.Hour, at(2026, 3, 6, 22, 0), at(2026, 3, 7, 4, 0), true},
		{"never long enough: a 7h job in 6h windows", nights, at(2026, 3, 2, 12, 0), 7 * time.Hour, time.Time{}, time.Time{}, false},
		{"the shortest of two windows that fits first", append(parse("daily 12:00-12:30 Europe/Berlin"), nights...), at(2026, 3, 2, 11, 0), 20 * time.Minute,
			at(2026, 3, 2, 12, 0), at(2026, 3, 2, 12, 30), false},
		{"one-off date ahead", parse("2026-12-24 08:00-18:00 Europe/Berlin"), at(2026, 3, 2, 12, 0), time.Hour, at(2026, 12, 24, 8, 0), at(2026, 12, 24, 18, 0), false},
		{"one-off date passed: never again", parse("2026-01-01 08:00-18:00 Europe/Berlin"), at(2026, 3, 2, 12, 0), time.Hour, time.Time{}, time.Time{}, false},
		// Daylight saving in Europe/Berlin: 2026-03-29 02:00 -> 03:00 (the
		// night of Saturday to Sunday is an hour shorter), 2026-10-25
		// 03:00 -> 02:00 (an hour longer).
		{"spring forward: Sun 01:00-04:00 lasts 2h, a 2h30 job waits a week", parse("Sun 01:00-04:00 Europe/Berlin"), at(2026, 3, 27, 12, 0), 150 * time.Minute,
			at(2026, 4, 5, 1, 0), at(2026, 4, 5, 4, 0), false},
		{"spring forward: a 2h job fits the short night", parse("Sun 01:00-04:00 Europe/Berlin"), at(2026, 3, 28, 12, 0), 2 * time.Hour,
			at(2026, 3, 29, 1, 0), at(2026, 3, 29, 4, 0), false},
		{"fall back: Sun 01:00-04:00 lasts 4h, a 3h30 job fits", parse("Sun 01:00-04:00 Europe/Berlin"), at(2026, 10, 24, 12, 0), 210 * time.Minute,
			at(2026, 10, 25, 1, 0), at(2026, 10, 25, 4, 0), false},
		{"fall back: after the change, 2h45 are left at the second 01:15", parse("Sun 00:00-04:00 Europe/Berlin"), at(2026, 10, 25, 1, 15).Add(time.Hour), 165 * time.Minute,
			at(2026, 10, 25, 0, 0), at(2026, 10, 25, 4, 0), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o, ok := tc.ws.Next(tc.now, tc.need)
			if tc.start.IsZero() {
				if ok {
					t.Fatalf("Next = %v, want none", o)
				}
				return
			}
			if !ok || !o.Start.Equal(tc.start) || !o.End.Equal(tc.end) {
				t.Fatalf("Next = %v (%v), want %s to %s", o, ok, tc.start, tc.end)
			}
			if _, open := tc.ws.Open(tc.now, tc.need); open != tc.open {
				t.Fatalf("Open = %v, want %v", open, tc.open)
			}
		})
	}
	if got := events.WindowKeysOf("ws-1", []string{"lab", "lab", "eu"}); strings.Join(got, " ") != "client.ws-1 group.lab group.eu all" {
		t.Fatalf("keys %v", got)
	}
	for _, k := range []string{"client.ws-1", "group.lab", "all"} {
		if tg, ok := events.WindowTarget(k); !ok || events.WindowKey(tg) != k {
			t.Fatalf("key %s does not read back", k)
		}
	}
	if _, ok := events.WindowTarget("group.a.b"); ok {
		t.Fatal("a key with a bad name reads as a target")
	}
}
