// Package clock is the time pcm's time rules read: when a job is due, when
// a deferral or a grace period ends, when a maintenance window opens or a
// restart comes. It is the system clock, or, for tests, a Scaled clock
// that reads a given instant at a given moment and runs faster, so that
// hours of rules pass in seconds with real agent processes (PCM_TEST_CLOCK).
//
// It never changes what timeouts, leases, heartbeats and acks wait: those
// are real time.
package clock

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Clock is the time of the time rules.
type Clock interface {
	// Now is the current time.
	Now() time.Time
	// Real is how long, on the system clock, a span d of this clock lasts:
	// what a timer waits for it.
	Real(d time.Duration) time.Duration
}

// System is the system clock.
var System Clock = system{}

type system struct{}

func (system) Now() time.Time                     { return time.Now() }
func (system) Real(d time.Duration) time.Duration { return d }

// Until is how long the system clock waits until c reads t (0 when t has
// passed).
func Until(c Clock, t time.Time) time.Duration { return max(c.Real(t.Sub(c.Now())), 0) }

// SleepUntil waits until c reads t, or ctx ends; it reports whether t
// came.
func SleepUntil(ctx context.Context, c Clock, t time.Time) bool {
	timer := time.NewTimer(Until(c, t))
	defer timer.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-timer.C:
		return true
	}
}

// Scaled is a clock for tests: it read At at the real instant Since, and
// runs Speed times as fast as the system clock.
type Scaled struct {
	At    time.Time
	Since time.Time
	Speed float64
}

// NewScaled returns a clock that reads at now and runs speed times as fast
// as the system clock.
func NewScaled(at time.Time, speed float64) Scaled {
	return Scaled{At: at, Since: time.Now(), Speed: speed}
}

// Now is At plus the real time since Since, Speed times over.
func (s Scaled) Now() time.Time {
	return s.At.Add(time.Duration(float64(time.Since(s.Since)) * s.Speed))
}

// Real is d divided by Speed.
func (s Scaled) Real(d time.Duration) time.Duration { return time.Duration(float64(d) / s.Speed) }

// Env is the variable that gives a pcm process a Scaled clock (tests
// only): its value is what Scaled.String writes.
const Env = "PCM_TEST_CLOCK"

// String writes the clock as Parse reads it:
// at=<RFC 3339>,since=<RFC 3339>,speed=<factor>.
func (s Scaled) String() string {
	return "at=" + s.At.Format(time.RFC3339Nano) + ",since=" + s.Since.Format(time.RFC3339Nano) +
		",speed=" + strconv.FormatFloat(s.Speed, 'g', -1, 64)
}

// ErrInvalid: a clock's spec cannot be read.
var ErrInvalid = errors.New("invalid test clock")

// Parse reads a Scaled clock written by Scaled.String.
func Parse(spec string) (Scaled, error) {
	var s Scaled
	var err error
	for _, kv := range strings.Split(spec, ",") {
		k, v, _ := strings.Cut(kv, "=")
		switch k {
		case "at":
			s.At, err = time.Parse(time.RFC3339Nano, v)
		case "since":
			s.Since, err = time.Parse(time.RFC3339Nano, v)
		case "speed":
			s.Speed, err = strconv.ParseFloat(v, 64)
		default:
			err = fmt.Errorf("unknown field %q", k)
		}
		if err != nil {
			return Scaled{}, fmt.Errorf("%w: %q: %v: write at=<RFC 3339>,since=<RFC 3339>,speed=<factor>", ErrInvalid, spec, err)
		}
	}
	if s.At.IsZero() || s.Since.IsZero() || s.Speed <= 0 {
		return Scaled{}, fmt.Errorf("%w: %q: give at, since and a positive speed", ErrInvalid, spec)
	}
	return s, nil
}
