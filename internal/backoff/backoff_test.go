package backoff_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/pcm-project/pcm/internal/backoff"
)

func TestBackoffDoublesWithinJitterUpToMax(t *testing.T) {
	b := backoff.Backoff{Initial: 10 * time.Millisecond, Max: 80 * time.Millisecond, Jitter: 0.5}
	nominal := []time.Duration{10, 20, 40, 80, 80, 80}
	for i, n := range nominal {
		n *= time.Millisecond
		d := b.Next()
		if d < n/2 || d >= n*3/2 {
			t.Fatalf("delay %d: %s, want in [%s, %s)", i, d, n/2, n*3/2)
		}
	}
	b.Reset()
	if d := b.Next(); d >= 15*time.Millisecond {
		t.Fatalf("after Reset: %s, want about 10ms", d)
	}
	exact := backoff.Backoff{Initial: time.Millisecond, Max: 4 * time.Millisecond, Jitter: -1}
	for i, want := range []time.Duration{1, 2, 4, 4} {
		if d := exact.Next(); d != want*time.Millisecond {
			t.Fatalf("without jitter, delay %d: %s, want %s", i, d, want*time.Millisecond)
		}
	}
}

func TestRetry(t *testing.T) {
	transient := errors.New("transient")
	fatal := errors.New("fatal")
	fast := backoff.Backoff{Initial: time.Millisecond, Max: 2 * time.Millisecond}
	retryable := func(err error) bool { return errors.Is(err, transient) }
	for _, tc := range []struct {
		name     string
		fails    []error // errors of the first attempts, then success
		timeout  time.Duration
		want     []error
		attempts int
	}{
		{"success at once", nil, time.Second, nil, 1},
		{"transient errors retried", []error{transient, transient}, time.Second, nil, 3},
		{"a non-retryable error ends at once", []error{transient, fatal}, time.Second, []error{fatal}, 2},
		{"a permanent error ends at once, unwrapped", []error{backoff.Permanent(transient)}, time.Second, []error{transient}, 1},
		{"the deadline ends the retries with the last error", make([]error, 1000), 30 * time.Millisecond, []error{backoff.ErrGaveUp, transient}, -1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for i := range tc.fails {
				if tc.fails[i] == nil {
					tc.fails[i] = transient
				}
			}
			ctx, cancel := context.WithTimeout(context.Background(), tc.timeout)
			defer cancel()
			n := 0
			err := backoff.Retry(ctx, backoff.Policy{Backoff: fast, Retryable: retryable}, func(context.Context) error {
				n++
				if n <= len(tc.fails) {
					return tc.fails[n-1]
				}
				return nil
			})
			for _, w := range tc.want {
				if !errors.Is(err, w) {
					t.Fatalf("got %v, want %v", err, w)
				}
			}
			if tc.want == nil && err != nil {
				t.Fatalf("got %v", err)
			}
			if errors.Is(err, transient) && !errors.Is(err, backoff.ErrGaveUp) && tc.name != "a permanent error ends at once, unwrapped" {
				t.Fatalf("a transient error returned before the deadline: %v", err)
			}
			if tc.attempts > 0 && n != tc.attempts {
				t.Fatalf("%d attempts, want %d", n, tc.attempts)
			}
		})
	}
	t.Run("each attempt has its own timeout", func(t *testing.T) {
		n := 0
		err := backoff.Retry(context.Background(), backoff.Policy{Backoff: fast, AttemptTimeout: 5 * time.Millisecond}, func(ctx context.Context) error {
			n++
			if n == 1 {
				<-ctx.Done() // a request nobody answers
				return ctx.Err()
			}
			return nil
		})
		if err != nil || n != 2 {
			t.Fatalf("got %v after %d attempts, want success at the second", err, n)
		}
	})
}

func TestNthIsTheDelayAfterNFailures(t *testing.T) {
	b := backoff.Backoff{Initial: time.Millisecond, Max: 8 * time.Millisecond, Jitter: -1}
	for n, want := range []time.Duration{1, 2, 4, 8, 8, 8} {
		if d := b.Nth(n); d != want*time.Millisecond {
			t.Fatalf("Nth(%d) = %s, want %s", n, d, want*time.Millisecond)
		}
	}
	if d := b.Nth(1 << 20); d != 8*time.Millisecond {
		t.Fatalf("Nth of a large count = %s, want the cap", d)
	}
	jittered := backoff.Backoff{Initial: 100 * time.Millisecond, Max: 5 * time.Second}
	if d := jittered.Nth(30); d < 2500*time.Millisecond || d >= 7500*time.Millisecond {
		t.Fatalf("jittered Nth(30) = %s, want in [2.5s, 7.5s)", d)
	}
}

func TestRetryTellsOnRetry(t *testing.T) {
	transient := errors.New("transient")
	var heard []error
	n := 0
	err := backoff.Retry(context.Background(), backoff.Policy{
		Backoff: backoff.Backoff{Initial: time.Millisecond, Jitter: -1},
		OnRetry: func(err error, d time.Duration) {
			if d <= 0 {
				t.Errorf("OnRetry told a delay of %s", d)
			}
			heard = append(heard, err)
		},
	}, func(context.Context) error {
		if n++; n < 3 {
			return transient
		}
		return nil
	})
	if err != nil || len(heard) != 2 || !errors.Is(heard[0], transient) {
		t.Fatalf("Retry = %v after hearing %v, want success after two retries heard", err, heard)
	}
}
