package testenv

import (
	"testing"
	"time"
)

// pollInterval is how often WaitFor checks its condition.
const pollInterval = 10 * time.Millisecond

// WaitFor polls cond every ~10ms until it returns true, and fails the test
// with "timed out waiting for <what>" if it has not after timeout.
func WaitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	if !poll(timeout, cond) {
		t.Fatalf("timed out waiting for %s (after %s)", what, timeout)
	}
}

// poll is WaitFor without the test: it reports whether cond became true.
func poll(timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(pollInterval)
	}
}

// CheckFor polls check every ~10ms until it returns nil, and fails the test
// with "timed out waiting for <what>" and the last error check returned if
// it has not after timeout.
func CheckFor(t testing.TB, timeout time.Duration, what string, check func() error) {
	t.Helper()
	var last error
	if !poll(timeout, func() bool { last = check(); return last == nil }) {
		t.Fatalf("timed out waiting for %s (after %s): %v", what, timeout, last)
	}
}
