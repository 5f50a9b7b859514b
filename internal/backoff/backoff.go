// Package backoff is pcm's one wait between retries: a capped, jittered
// exponential delay (Backoff) and a retry loop over it (Retry) bounded by the
// caller's context. It knows nothing of NATS: the caller says which errors
// are worth another attempt. It never logs and never sleeps past the
// context's end.
package backoff

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"
)

// Defaults of a zero Backoff.
const (
	// DefaultInitial is the first delay.
	DefaultInitial = 100 * time.Millisecond
	// DefaultMax caps the delay.
	DefaultMax = 5 * time.Second
	// DefaultJitter spreads each delay over [1-j, 1+j) of its nominal value.
	DefaultJitter = 0.5
)

// Backoff is a delay that doubles from Initial up to Max, each one spread by
// Jitter so that many clients retrying the same broker do not retry in step.
// The zero value uses the defaults. It is not safe for concurrent use.
type Backoff struct {
	// Initial is the first delay; default DefaultInitial.
	Initial time.Duration
	// Max caps the delay; default DefaultMax.
	Max time.Duration
	// Jitter in [0, 1]: each delay is its nominal value times a random
	// factor in [1-Jitter, 1+Jitter); default DefaultJitter; negative: none.
	Jitter float64

	n int // delays given since the last Reset
}

func (b *Backoff) defaults() (initial, maxDelay time.Duration, jitter float64) {
	initial, maxDelay, jitter = b.Initial, b.Max, b.Jitter
	if initial <= 0 {
		initial = DefaultInitial
	}
	if maxDelay <= 0 {
		maxDelay = DefaultMax
	}
	maxDelay = max(maxDelay, initial)
	switch {
	case jitter == 0:
		jitter = DefaultJitter
	case jitter < 0:
		jitter = 0
	case jitter > 1:
		jitter = 1
	}
	return initial, maxDelay, jitter
}

// Nth returns the delay after n failed attempts in a row (n = 0: the first
// delay): Initial doubled n times, capped at Max, jittered. It does not
// change b: it suits callbacks that are given the attempt count, such as
// nats.CustomReconnectDelay.
func (b Backoff) Nth(n int) time.Duration {
	d, _ := b.nominal(n)
	if _, _, jitter := b.defaults(); jitter > 0 {
		d = time.Duration(float64(d) * (1 - jitter + 2*jitter*rand.Float64()))
	}
	return d
}

// nominal is the unjittered delay after n failures, and whether it is
// capped at Max.
func (b *Backoff) nominal(n int) (time.Duration, bool) {
	initial, maxDelay, _ := b.defaults()
	d := initial
	for i := 0; i < n && d < maxDelay; i++ {
		d *= 2
	}
	return min(d, maxDelay), d >= maxDelay
}

// Next returns the next delay (the Nth of those given since the last
// Reset) and doubles the nominal one after it.
func (b *Backoff) Next() time.Duration {
	d := b.Nth(b.n)
	if _, capped := b.nominal(b.n); !capped {
		b.n++
	}
	return d
}

// Reset starts the delays again from Initial (after a success).
func (b *Backoff) Reset() { b.n = 0 }

// Wait sleeps for the next delay, or until ctx ends (then it returns
// ctx.Err()).
func (b *Backoff) Wait(ctx context.Context) error { return Sleep(ctx, b.Next()) }

// Sleep waits d, or until ctx ends (then it returns ctx.Err()).
func Sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// Policy says how Retry retries.
type Policy struct {
	// Backoff is the delay between attempts (copied: each Retry starts
	// from its Initial).
	Backoff Backoff
	// AttemptTimeout, when positive, bounds each attempt: op gets a
	// context that ends then (or when the caller's does, if sooner), so
	// that one unanswered request does not use up the whole deadline.
	AttemptTimeout time.Duration
	// Retryable says whether an attempt's error is worth another attempt;
	// nil retries every error. An error wrapped by Permanent is never
	// retried.
	Retryable func(error) bool
	// OnRetry, when set, hears each error that is retried and the delay
	// before the next attempt (to log it); it runs on Retry's goroutine.
	OnRetry func(err error, delay time.Duration)
}

// ErrGaveUp is wrapped, with the last attempt's error, by Retry when the
// caller's context ended before an attempt succeeded.
var ErrGaveUp = errors.New("gave up retrying")

// permanent marks an error not to retry.
type permanent struct{ err error }

func (p permanent) Error() string { return p.err.Error() }
func (p permanent) Unwrap() error { return p.err }

// Permanent wraps err so that Retry returns it at once (unwrapped).
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return permanent{err}
}

// Retry calls op until it returns nil, an error that is not retryable (or
// is Permanent: returned as op gave it), or ctx ends. Between attempts it
// waits p.Backoff. When ctx ends first, it returns an error wrapping
// ErrGaveUp and the last attempt's error (errors.Is works on both), naming
// how many attempts were made over how long.
func Retry(ctx context.Context, p Policy, op func(ctx context.Context) error) error {
	b := p.Backoff
	b.Reset()
	start := time.Now()
	for attempt := 1; ; attempt++ {
		err := attempt1(ctx, p.AttemptTimeout, op)
		if err == nil {
			return nil
		}
		var perm permanent
		if errors.As(err, &perm) {
			return perm.err
		}
		if p.Retryable != nil && !p.Retryable(err) {
			return err
		}
		if ctx.Err() == nil {
			d := b.Next()
			if p.OnRetry != nil {
				p.OnRetry(err, d)
			}
			if Sleep(ctx, d) == nil {
				continue
			}
		}
		return fmt.Errorf("%w after %d attempts over %s: %w", ErrGaveUp, attempt, time.Since(start).Round(time.Millisecond), err)
	}
}

// attempt1 runs one attempt under its own timeout.
func attempt1(ctx context.Context, timeout time.Duration, op func(ctx context.Context) error) error {
	if timeout <= 0 {
		return op(ctx)
	}
	actx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	return op(actx)
}
