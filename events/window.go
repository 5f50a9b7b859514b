package events

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Maintenance windows: when the jobs that require one (in_window) may start
// on a client, and when the restarts they ask for may happen. Operators set
// them per client, per group and for every client in the PCM_WINDOWS
// bucket (pcm window set); a client's windows are all of those that apply
// to it (its own, its groups' and every client's): a job may start in any
// of them.

// WindowKey is the PCM_WINDOWS key of the windows of target t: client.<id>,
// group.<name> or all. t must be valid (see Target.Validate).
func WindowKey(t Target) string {
	if t.Kind == TargetAll {
		return string(TargetAll)
	}
	return string(t.Kind) + "." + t.Name
}

// WindowTarget reverses WindowKey; ok is false for a key that is not one.
func WindowTarget(key string) (t Target, ok bool) {
	if key == string(TargetAll) {
		return Target{Kind: TargetAll}, true
	}
	kind, name, found := strings.Cut(key, ".")
	t = Target{Kind: TargetKind(kind), Name: name}
	if !found || (t.Kind != TargetClient && t.Kind != TargetGroup) || t.Validate() != nil {
		return Target{}, false
	}
	return t, true
}

// WindowKeysOf are the PCM_WINDOWS keys whose windows apply to a client in
// groups: its own, each of its groups', and every client's.
func WindowKeysOf(client string, groups []string) []string {
	keys := []string{WindowKey(Target{Kind: TargetClient, Name: client})}
	seen := map[string]bool{}
	for _, g := range groups {
		if !seen[g] {
			seen[g] = true
			keys = append(keys, WindowKey(Target{Kind: TargetGroup, Name: g}))
		}
	}
	return append(keys, WindowKey(Target{Kind: TargetAll}))
}

// Window is one maintenance window: recurring on days of the week, or once
// on a date, from Start to End in the time zone Zone. An End not after
// Start ends on the next day (22:00-04:00).
type Window struct {
	// Days are the days of the week it opens on (Mon, Tue, ... Sun), for a
	// recurring window.
	Days []string `json:"days,omitempty"`
	// Date is the day it opens on (2026-12-24), for a one-off window.
	Date string `json:"date,omitempty"`
	// Start and End are times of day, HH:MM (End may be 24:00).
	Start string `json:"start"`
	End   string `json:"end"`
	// Zone is an IANA time zone (Europe/Berlin, UTC): the window follows its
	// daylight saving changes.
	Zone string `json:"zone"`
}

// WindowSet is the value of a key of PCM_WINDOWS: the windows of one
// client, group or every client.
type WindowSet struct {
	Windows []Window `json:"windows"`
	// UpdatedBy and UpdatedAt say who set them, and when.
	UpdatedBy string    `json:"updated_by,omitempty"`
	UpdatedAt time.Time `json:"updated_at"`
}

// ParseWindowSet reads a value of PCM_WINDOWS and checks every window.
func ParseWindowSet(b []byte) (WindowSet, error) {
	var ws WindowSet
	if err := json.Unmarshal(b, &ws); err != nil {
		return ws, fmt.Errorf("%w: not a set of windows: %v", ErrWindow, err)
	}
	for _, w := range ws.Windows {
		if err := w.Validate(); err != nil {
			return ws, err
		}
	}
	return ws, nil
}

var weekdays = []string{"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"}

// dayIndex reads a day name, abbreviated or whole, in any case (Mon,
// monday), as a time.Weekday.
func dayIndex(s string) (int, bool) {
	s = strings.ToLower(strings.TrimSpace(s))
	for i, d := range weekdays {
		if s == strings.ToLower(d) || s == strings.ToLower(time.Weekday(i).String()) {
			return i, true
		}
	}
	return 0, false
}

// parseDays reads "Mon-Fri", "Sat,Sun", "Mon,Wed-Fri", "Fri-Mon" or
// "daily" into day names, Monday first.
func parseDays(spec string) ([]string, error) {
	if strings.EqualFold(spec, "daily") {
		return []string{"Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"}, nil
	}
	set := map[int]bool{}
	for _, part := range strings.Split(spec, ",") {
		from, to, isRange := strings.Cut(part, "-")
		a, ok := dayIndex(from)
		if !ok {
			return nil, fmt.Errorf("%w: day %q: give days as Mon, Tue, ... Sun, ranges as Mon-Fri, lists as Sat,Sun, or daily", ErrWindow, from)
		}
		b := a
		if isRange {
			if b, ok = dayIndex(to); !ok {
				return nil, fmt.Errorf("%w: day %q: give days as Mon, Tue, ... Sun, ranges as Mon-Fri, lists as Sat,Sun, or daily", ErrWindow, to)
			}
		}
		for i := a; ; i = (i + 1) % 7 {
			set[i] = true
			if i == b {
				break
			}
		}
	}
	var out []string
	for i := 1; i <= 7; i++ {
		if set[i%7] {
			out = append(out, weekdays[i%7])
		}
	}
	return out, nil
}

// ParseWindow reads a window written as "DAYS HH:MM-HH:MM ZONE" (Mon-Fri
// 22:00-04:00 Europe/Berlin, Sat,Sun 00:00-24:00 UTC, daily 02:00-03:00
// UTC) or "DATE HH:MM-HH:MM ZONE" (2026-12-24 08:00-18:00 Europe/Berlin), and
// checks it (Validate).
func ParseWindow(spec string) (Window, error) {
	f := strings.Fields(spec)
	if len(f) != 3 {
		return Window{}, fmt.Errorf("%w: %q: write a window as DAYS HH:MM-HH:MM ZONE (Mon-Fri 22:00-04:00 Europe/Berlin) or DATE HH:MM-HH:MM ZONE (2026-12-24 08:00-18:00 UTC)", ErrWindow, spec)
	}
	var w Window
	if _, err := time.Parse(time.DateOnly, f[0]); err == nil {
		w.Date = f[0]
	} else if strings.ContainsAny(f[0], "0123456789") {
		return Window{}, fmt.Errorf("%w: date %q: write a date as YYYY-MM-DD (2026-12-24)", ErrWindow, f[0])
	} else {
		days, err := parseDays(f[0])
		if err != nil {
			return Window{}, err
		}
		w.Days = days
	}
	var ok bool
	if w.Start, w.End, ok = strings.Cut(f[1], "-"); !ok {
		return Window{}, fmt.Errorf("%w: %q: write the times as HH:MM-HH:MM (22:00-04:00)", ErrWindow, f[1])
	}
	w.Zone = f[2]
	return w, w.Validate()
}

// String writes w as ParseWindow reads it.
func (w Window) String() string {
	when := w.Date
	if when == "" {
		when = strings.Join(w.Days, ",")
		if when == "Mon,Tue,Wed,Thu,Fri,Sat,Sun" {
			when = "daily"
		} else if when == "Mon,Tue,Wed,Thu,Fri" {
			when = "Mon-Fri"
		}
	}
	return when + " " + w.Start + "-" + w.End + " " + w.Zone
}

// clock reads a time of day HH:MM as minutes after midnight; 24:00 only
// as an end.
func clock(s string, end bool) (int, bool) {
	h, m, ok := strings.Cut(s, ":")
	if !ok || len(h) != 2 || len(m) != 2 {
		return 0, false
	}
	hh, err1 := strconv.Atoi(h)
	mm, err2 := strconv.Atoi(m)
	switch {
	case err1 != nil || err2 != nil || mm < 0 || mm > 59 || hh < 0:
		return 0, false
	case hh == 24 && mm == 0 && end:
		return 24 * 60, true
	case hh > 23:
		return 0, false
	}
	return hh*60 + mm, true
}

// Validate checks a window: its days or date, its times and its zone, and
// that it opens at all (a start equal to its end never does). Every
// failure wraps ErrWindow and says what to give.
func (w Window) Validate() error {
	_, err := w.parts()
	return err
}

// windowParts is a window read: its days (by time.Weekday) or date, its
// times in minutes and its location.
type windowParts struct {
	days       [7]bool
	date       time.Time // zero for a recurring window
	start, end int
	loc        *time.Location
}

func (w Window) parts() (windowParts, error) {
	var p windowParts
	switch {
	case w.Date != "" && len(w.Days) > 0:
		return p, fmt.Errorf("%w: window %q has both days and a date: give days for a recurring window, or a date for a one-off one", ErrWindow, w)
	case w.Date != "":
		d, err := time.Parse(time.DateOnly, w.Date)
		if err != nil {
			return p, fmt.Errorf("%w: date %q: write a date as YYYY-MM-DD (2026-12-24)", ErrWindow, w.Date)
		}
		p.date = d
	case len(w.Days) == 0:
		return p, fmt.Errorf("%w: window %q has no days and no date, so it never opens: give days (Mon-Fri, Sat,Sun, daily) or a date (2026-12-24)", ErrWindow, w)
	}
	for _, d := range w.Days {
		i, ok := dayIndex(d)
		if !ok {
			return p, fmt.Errorf("%w: day %q: give days as Mon, Tue, ... Sun", ErrWindow, d)
		}
		p.days[i] = true
	}
	var ok bool
	if p.start, ok = clock(w.Start, false); !ok {
		return p, fmt.Errorf("%w: start %q: give a time of day as HH:MM, 00:00 to 23:59", ErrWindow, w.Start)
	}
	if p.end, ok = clock(w.End, true); !ok {
		return p, fmt.Errorf("%w: end %q: give a time of day as HH:MM, 00:00 to 24:00", ErrWindow, w.End)
	}
	if p.start == p.end%(24*60) && p.end != 24*60 {
		return p, fmt.Errorf("%w: window %q never opens: its start and its end are the same time; give an end after the start (one before it, as in 22:00-04:00, ends the next day)", ErrWindow, w)
	}
	if w.Zone == "" {
		return p, fmt.Errorf("%w: window %q has no time zone: give an IANA zone such as Europe/Berlin, America/New_York or UTC", ErrWindow, w)
	}
	loc, err := time.LoadLocation(w.Zone)
	if err != nil || strings.EqualFold(w.Zone, "local") {
		return p, fmt.Errorf("%w: time zone %q is unknown: give an IANA zone such as Europe/Berlin, America/New_York or UTC", ErrWindow, w.Zone)
	}
	p.loc = loc
	return p, nil
}

// occurrence is when the window opened or opens on day (a date in its
// zone), and when it closes then.
func (p windowParts) occurrence(y int, m time.Month, d int) (start, end time.Time) {
	start = time.Date(y, m, d, p.start/60, p.start%60, 0, 0, p.loc)
	endDay := d
	if p.end <= p.start {
		endDay++ // ends the next day
	}
	end = time.Date(y, m, endDay, p.end/60, p.end%60, 0, 0, p.loc)
	return start, end
}

// Opening is one occurrence of a window: when it opens and closes.
type Opening struct {
	Start, End time.Time
}

// Windows are the maintenance windows of a client.
type Windows []Window

// String lists the windows, comma-separated.
func (ws Windows) String() string {
	s := make([]string, len(ws))
	for i, w := range ws {
		s[i] = w.String()
	}
	return strings.Join(s, ", ")
}

// Next returns the first opening of any of the windows, at or after now,
// in which need fits: one open now with at least need left (its Start is
// then at or before now), else the first to open that lasts at least need.
// ok is false when none does within a year (a one-off date passed, or
// every window is shorter than need). Windows that do not validate are
// skipped.
func (ws Windows) Next(now time.Time, need time.Duration) (o Opening, ok bool) {
	for _, w := range ws {
		p, err := w.parts()
		if err != nil {
			continue
		}
		if c, found := p.next(now, need); found && (!ok || c.Start.Before(o.Start)) {
			o, ok = c, true
		}
	}
	return o, ok
}

// Open reports the opening of ws that holds now with at least need left.
func (ws Windows) Open(now time.Time, need time.Duration) (Opening, bool) {
	o, ok := ws.Next(now, need)
	return o, ok && !o.Start.After(now)
}

// searchDays is how far ahead a recurring window is searched: more than a
// week, so that every day of the week is seen, and a year for one that is
// too short on most days (a daylight saving change).
const searchDays = 370

// next is the first opening of one window at or after now in which need
// fits (see Windows.Next).
func (p windowParts) next(now time.Time, need time.Duration) (Opening, bool) {
	fits := func(start, end time.Time) (Opening, bool) {
		from := start
		if from.Before(now) {
			from = now
		}
		return Opening{Start: start, End: end}, end.After(from) && end.Sub(from) >= need
	}
	if !p.date.IsZero() {
		return fits(p.occurrence(p.date.Year(), p.date.Month(), p.date.Day()))
	}
	local := now.In(p.loc)
	for k := -1; k <= searchDays; k++ {
		day := time.Date(local.Year(), local.Month(), local.Day()+k, 12, 0, 0, 0, p.loc)
		if !p.days[day.Weekday()] {
			continue
		}
		if o, ok := fits(p.occurrence(day.Year(), day.Month(), day.Day())); ok {
			return o, true
		}
	}
	return Opening{}, false
}
