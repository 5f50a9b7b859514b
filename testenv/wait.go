package testenv

import (
	"errors"
	"testing"
	"time"
)

// pollInterval is how often WaitFor checks its condition.
const pollInterval = 10 * time.Millisecond

// CheckFor calls check every interval until it returns nil, and fails the
// test with check's last error if it has not after timeout, as
// nats-server's checkFor does: the error says what was still wrong.
func CheckFor(t testing.TB, timeout, interval time.Duration, check func() error) {
	t.Helper()
	if err := Poll(timeout, interval, check); err != nil {
		t.Fatalf("still failing after %s: %v", timeout, err)
	}
}

// WaitFor polls cond every ~10ms until it returns true, and fails the test
// with "timed out waiting for <what>" if it has not after timeout. A
// condition that can say why it does not hold yet is better checked with
// CheckFor.
func WaitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	err := Poll(timeout, pollInterval, func() error {
		if cond() {
			return nil
		}
		return errNotYet
	})
	if err != nil {
		t.Fatalf("timed out waiting for %s (after %s)", what, timeout)
	}
}

// errNotYet is WaitFor's error while its condition does not hold.
var errNotYet = errors.New("not yet")

// Poll is CheckFor without the test: it returns nil as soon as check does,
// or check's last error once timeout has passed (check is always called
// at least once). It does not use a testing.TB, so it may run on any
// goroutine.
func Poll(timeout, interval time.Duration, check func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := check()
		if err == nil || time.Now().After(deadline) {
			return err
		}
		time.Sleep(interval)
	}
}
