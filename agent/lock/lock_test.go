package lock_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/pcm-project/pcm/agent/lock"
	"github.com/pcm-project/pcm/events"
	"github.com/pcm-project/pcm/testenv"
)

// testTimeout bounds every test's own waits.
const testTimeout = 20 * time.Second

// env is one broker and its PCM_LOCKS bucket.
type env struct {
	b  *testenv.Broker
	kv jetstream.KeyValue
}

func startEnv(t *testing.T) *env {
	t.Helper()
	b := testenv.StartBroker(t)
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	kv, err := b.JS.KeyValue(ctx, events.BucketLocks)
	if err != nil {
		t.Fatalf("opening %s: %v", events.BucketLocks, err)
	}
	return &env{b: b, kv: kv}
}

// locker returns a Locker of client on its own connection.
func (e *env) locker(t *testing.T, client string, lease time.Duration, log *zap.Logger) *lock.Locker {
	t.Helper()
	_, js := e.b.Connect(t)
	if log == nil {
		log = zaptest.NewLogger(t)
	}
	l, err := lock.New(js, lock.Config{Client: client, Lease: lease, Logger: log})
	if err != nil {
		t.Fatalf("lock.New: %v", err)
	}
	return l
}

func testCtx(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	t.Cleanup(cancel)
	return ctx
}

// current reads the lock and fails the test on error.
func current(t *testing.T, l *lock.Locker) (events.LockInfo, uint64, bool) {
	t.Helper()
	info, rev, ok, err := l.Current(testCtx(t))
	if err != nil {
		t.Fatalf("Current: %v", err)
	}
	return info, rev, ok
}

func sameInfo(a, b events.LockInfo) bool {
	return a.Holder == b.Holder && a.PID == b.PID && a.User == b.User && a.Host == b.Host &&
		a.JobID == b.JobID && a.Since.Equal(b.Since)
}

func closed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name string
		cfg  lock.Config
		want []error
	}{
		{"defaults", lock.Config{Client: "pc-1"}, nil},
		{"whole seconds", lock.Config{Client: "pc_1", Lease: 2 * time.Second}, nil},
		{"no client", lock.Config{}, []error{lock.ErrInvalidConfig, events.ErrInvalidID}},
		{"client with a dot", lock.Config{Client: "pc.1"}, []error{lock.ErrInvalidConfig, events.ErrInvalidID}},
		{"lease under a second", lock.Config{Client: "pc", Lease: 500 * time.Millisecond}, []error{lock.ErrInvalidConfig}},
		{"lease not whole seconds", lock.Config{Client: "pc", Lease: 1500 * time.Millisecond}, []error{lock.ErrInvalidConfig}},
		{"negative lease", lock.Config{Client: "pc", Lease: -time.Second}, []error{lock.ErrInvalidConfig}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			if len(tt.want) == 0 && err != nil {
				t.Fatalf("Validate: %v, want nil", err)
			}
			for _, w := range tt.want {
				if !errors.Is(err, w) {
					t.Fatalf("Validate: %v, want %v", err, w)
				}
			}
		})
	}
	if _, err := lock.New(nil, lock.Config{Client: "pc"}); !errors.Is(err, lock.ErrInvalidConfig) {
		t.Fatalf("New(nil): %v, want ErrInvalidConfig", err)
	}
}

func TestTryAcquireInvalidInfo(t *testing.T) {
	e := startEnv(t)
	l := e.locker(t, "invalid-info", time.Second, nil)
	tests := []struct {
		name string
		info events.LockInfo
		want []error
	}{
		{"no holder", events.LockInfo{}, []error{lock.ErrInvalidInfo}},
		{"unknown holder", events.LockInfo{Holder: "admin"}, []error{lock.ErrInvalidInfo}},
		{"negative pid", events.LockInfo{Holder: events.RunnerService, PID: -1}, []error{lock.ErrInvalidInfo}},
		{"bad job id", events.LockInfo{Holder: events.RunnerDesktop, JobID: "a job"}, []error{lock.ErrInvalidInfo, events.ErrInvalidID}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, acquire := range []func() error{
				func() error { _, err := l.TryAcquire(testCtx(t), tt.info); return err },
				func() error { _, err := l.Acquire(testCtx(t), tt.info, nil); return err },
			} {
				err := acquire()
				for _, w := range tt.want {
					if !errors.Is(err, w) {
						t.Fatalf("got %v, want %v", err, w)
					}
				}
			}
		})
	}
	if _, _, ok := current(t, l); ok {
		t.Fatal("an invalid info took the lock")
	}
}

func TestTryAcquireExclusive(t *testing.T) {
	e := startEnv(t)
	// First on a key never written, then on a released one (a delete marker).
	for _, round := range []string{"fresh key", "released key"} {
		t.Run(round, func(t *testing.T) { raceTryAcquire(t, e) })
	}
}

// raceTryAcquire has 20 goroutines race for the lock "race": exactly one
// takes it, and releases it.
func raceTryAcquire(t *testing.T, e *env) {
	const n = 20
	lockers := make([]*lock.Locker, n)
	for i := range lockers {
		lockers[i] = e.locker(t, "race", time.Second, nil)
	}
	var (
		start  = make(chan struct{})
		wg     sync.WaitGroup
		leases = make([]*lock.Lease, n)
		errs   = make([]error, n)
	)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			holder := events.RunnerService
			if i%2 == 1 {
				holder = events.RunnerDesktop
			}
			<-start
			leases[i], errs[i] = lockers[i].TryAcquire(testCtx(t), events.LockInfo{
				Holder: holder, PID: 1000 + i, User: "u" + strconv.Itoa(i), JobID: "job-" + strconv.Itoa(i),
			})
		}()
	}
	close(start)
	wg.Wait()

	var winner *lock.Lease
	for i, l := range leases {
		if errs[i] == nil {
			if winner != nil {
				t.Fatalf("two winners: pid %d and pid %d", winner.Info().PID, l.Info().PID)
			}
			winner = l
		}
	}
	if winner == nil {
		t.Fatalf("no winner: %v", errs)
	}
	for i, err := range errs {
		if err == nil {
			continue
		}
		var held *lock.HeldError
		if !errors.Is(err, lock.ErrHeld) || !errors.As(err, &held) {
			t.Fatalf("loser %d: %v, want a *HeldError matching ErrHeld", i, err)
		}
		if !sameInfo(held.Info, winner.Info()) {
			t.Fatalf("loser %d sees holder %+v, want the winner %+v", i, held.Info, winner.Info())
		}
	}
	info, rev, ok := current(t, lockers[0])
	if !ok || !sameInfo(info, winner.Info()) || rev != winner.Revision() {
		t.Fatalf("Current = %+v rev %d ok %v, want the winner %+v rev %d", info, rev, ok, winner.Info(), winner.Revision())
	}
	if err := winner.Release(testCtx(t)); err != nil {
		t.Fatalf("Release: %v", err)
	}
}

func TestRenewalKeepsLock(t *testing.T) {
	e := startEnv(t)
	const lease = time.Second
	l := e.locker(t, "renew", lease, nil)
	s, err := l.TryAcquire(testCtx(t), events.LockInfo{Holder: events.RunnerService, JobID: "j1"})
	if err != nil {
		t.Fatalf("TryAcquire: %v", err)
	}
	first := s.Revision()
	end := time.Now().Add(3*lease + lease/2)
	checks := 0
	testenv.WaitFor(t, testTimeout, "three leases to pass with the lock held throughout", func() bool {
		info, _, ok := current(t, l)
		if !ok || !sameInfo(info, s.Info()) {
			t.Fatalf("after %d checks the lock is %+v (held %v), want %+v", checks, info, ok, s.Info())
		}
		if closed(s.Lost()) {
			t.Fatalf("lease lost: %v", s.Err())
		}
		checks++
		return time.Now().After(end)
	})
	_, rev, _ := current(t, l)
	if rev <= first || rev < s.Revision()-1 {
		t.Fatalf("revision %d after 3 leases (first %d, lease says %d): want it to grow with renewals", rev, first, s.Revision())
	}
	if s.Revision() < first+6 {
		t.Fatalf("revision went from %d to %d in 3.5 leases: want a renewal every third of a lease", first, s.Revision())
	}
	if err := s.Release(testCtx(t)); err != nil {
		t.Fatalf("Release: %v", err)
	}
}

func TestRenewedLockExpiresWhenRenewalsStop(t *testing.T) {
	e := startEnv(t)
	const lease = time.Second
	l := e.locker(t, "dead-holder", lease, nil)
	s, err := l.TryAcquire(testCtx(t), events.LockInfo{Holder: events.RunnerDesktop})
	if err != nil {
		t.Fatalf("TryAcquire: %v", err)
	}
	first := s.Revision()
	testenv.WaitFor(t, 3*lease, "two renewals", func() bool { return s.Revision() >= first+2 })
	lock.StopRenewing(s)
	stopped := time.Now()
	testenv.WaitFor(t, lease+time.Second, "the renewed key to expire", func() bool {
		_, _, ok := current(t, l)
		return !ok
	})
	t.Logf("key gone %s after renewals stopped", time.Since(stopped).Round(time.Millisecond))
	if err := s.Release(testCtx(t)); !errors.Is(err, lock.ErrNotHeld) {
		t.Fatalf("Release of an expired lease: %v, want ErrNotHeld", err)
	}
}

// TestHelperProcess is the child process of TestSIGKILLFreesLock: it takes the
// lock and prints "held", then renews it until it is killed.
func TestHelperProcess(t *testing.T) {
	if os.Getenv("PCM_LOCK_HELPER") != "1" {
		t.Skip("helper process for TestSIGKILLFreesLock")
	}
	lease, _ := time.ParseDuration(os.Getenv("PCM_LOCK_LEASE"))
	nc, err := nats.Connect(os.Getenv("PCM_URL"))
	if err != nil {
		fmt.Println("error", err)
		os.Exit(2)
	}
	js, _ := jetstream.New(nc)
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	l, err := lock.New(js, lock.Config{Client: os.Getenv("PCM_CLIENT"), Lease: lease})
	if err != nil {
		fmt.Println("error", err)
		os.Exit(2)
	}
	s, err := l.TryAcquire(ctx, events.LockInfo{Holder: events.RunnerService, JobID: "child"})
	if err != nil {
		fmt.Println("error", err)
		os.Exit(2)
	}
	fmt.Println("held", s.Revision())
	<-s.Lost() // renews until killed
	os.Exit(3)
}

func TestSIGKILLFreesLock(t *testing.T) {
	e := startEnv(t)
	const lease = 2 * time.Second
	l := e.locker(t, "killed", lease, nil)
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperProcess$", "-test.count=1")
	cmd.Env = append(os.Environ(), "PCM_LOCK_HELPER=1", "PCM_URL="+e.b.URL, "PCM_CLIENT=killed", "PCM_LOCK_LEASE="+lease.String())
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting the helper: %v", err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	lines := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if strings.HasPrefix(sc.Text(), "held") || strings.HasPrefix(sc.Text(), "error") {
				lines <- sc.Text()
				return
			}
		}
		close(lines)
	}()
	select {
	case line := <-lines:
		if !strings.HasPrefix(line, "held") {
			t.Fatalf("helper: %q", line)
		}
	case <-time.After(testTimeout):
		t.Fatal("the helper did not take the lock")
	}
	info, rev, ok := current(t, l)
	if !ok || info.PID != cmd.Process.Pid || info.Holder != events.RunnerService {
		t.Fatalf("Current = %+v ok %v, want the helper (pid %d)", info, ok, cmd.Process.Pid)
	}
	// Let it renew once so that the test covers a renewed key.
	testenv.WaitFor(t, lease, "the helper to renew", func() bool {
		_, r, ok := current(t, l)
		return ok && r > rev
	})
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatalf("SIGKILL: %v", err)
	}
	killed := time.Now()
	_ = cmd.Wait()
	testenv.WaitFor(t, lease+time.Second, "the killed holder's lock to expire", func() bool {
		_, _, ok := current(t, l)
		return !ok
	})
	t.Logf("lock free %s after SIGKILL", time.Since(killed).Round(time.Millisecond))
	if _, err := l.TryAcquire(testCtx(t), events.LockInfo{Holder: events.RunnerDesktop}); err != nil {
		t.Fatalf("TryAcquire after the holder died: %v", err)
	}
}

func TestRelease(t *testing.T) {
	e := startEnv(t)
	t.Run("deletes and is idempotent", func(t *testing.T) {
		l := e.locker(t, "release-1", time.Second, nil)
		s, err := l.TryAcquire(testCtx(t), events.LockInfo{Holder: events.RunnerService})
		if err != nil {
			t.Fatalf("TryAcquire: %v", err)
		}
		for i := range 3 {
			if err := s.Release(testCtx(t)); err != nil {
				t.Fatalf("Release #%d: %v", i+1, err)
			}
		}
		if _, _, ok := current(t, l); ok {
			t.Fatal("the key is still there after Release")
		}
		if closed(s.Lost()) {
			t.Fatal("Release closed Lost")
		}
	})
	t.Run("never deletes another holder's key", func(t *testing.T) {
		l := e.locker(t, "release-2", 3*time.Second, nil)
		a, err := l.TryAcquire(testCtx(t), events.LockInfo{Holder: events.RunnerService})
		if err != nil {
			t.Fatalf("TryAcquire: %v", err)
		}
		// The key vanishes under A (an operator purge) and B takes it at once.
		if err := e.kv.Purge(testCtx(t), "release-2"); err != nil {
			t.Fatalf("Purge: %v", err)
		}
		b, err := l.TryAcquire(testCtx(t), events.LockInfo{Holder: events.RunnerDesktop})
		if err != nil {
			t.Fatalf("TryAcquire by B: %v", err)
		}
		for i := range 2 {
			if err := a.Release(testCtx(t)); !errors.Is(err, lock.ErrNotHeld) || !errors.Is(err, lock.ErrLockChanged) {
				t.Fatalf("A's Release #%d: %v, want ErrNotHeld and ErrLockChanged", i+1, err)
			}
		}
		if !closed(a.Lost()) {
			t.Fatal("A's Lost is not closed")
		}
		info, rev, ok := current(t, l)
		if !ok || info.Holder != events.RunnerDesktop || rev != b.Revision() {
			t.Fatalf("after A's Release the lock is %+v rev %d (held %v), want B's at rev %d", info, rev, ok, b.Revision())
		}
		if err := b.Release(testCtx(t)); err != nil {
			t.Fatalf("B's Release: %v", err)
		}
	})
	t.Run("lost when the key changes under the holder", func(t *testing.T) {
		l := e.locker(t, "release-3", time.Second, nil)
		s, err := l.TryAcquire(testCtx(t), events.LockInfo{Holder: events.RunnerService})
		if err != nil {
			t.Fatalf("TryAcquire: %v", err)
		}
		if err := e.kv.Delete(testCtx(t), "release-3"); err != nil {
			t.Fatalf("Delete: %v", err)
		}
		testenv.WaitFor(t, time.Second, "Lost to close after the key was deleted", func() bool { return closed(s.Lost()) })
		if !errors.Is(s.Err(), lock.ErrLockChanged) {
			t.Fatalf("Err = %v, want ErrLockChanged", s.Err())
		}
		if err := s.Release(testCtx(t)); !errors.Is(err, lock.ErrNotHeld) {
			t.Fatalf("Release: %v, want ErrNotHeld", err)
		}
	})
}

// waiter runs Acquire in the background.
type waiter struct {
	busy  atomic.Int32
	info  atomic.Pointer[events.LockInfo]
	done  chan struct{}
	lease *lock.Lease
	err   error
	at    time.Time
}

func startWaiter(ctx context.Context, l *lock.Locker, info events.LockInfo) *waiter {
	w := &waiter{done: make(chan struct{})}
	go func() {
		defer close(w.done)
		w.lease, w.err = l.Acquire(ctx, info, func(i events.LockInfo) {
			w.busy.Add(1)
			w.info.Store(&i)
		})
		w.at = time.Now()
	}()
	return w
}

func (w *waiter) returned() bool { return closed(w.done) }

func TestAcquireWaits(t *testing.T) {
	e := startEnv(t)
	const lease = time.Second
	desktop := events.LockInfo{Holder: events.RunnerDesktop, User: "alice", JobID: "job-d"}

	t.Run("free", func(t *testing.T) {
		l := e.locker(t, "wait-free", lease, nil)
		s, err := l.Acquire(testCtx(t), desktop, func(events.LockInfo) { t.Error("onBusy called on a free lock") })
		if err != nil {
			t.Fatalf("Acquire: %v", err)
		}
		if err := s.Release(testCtx(t)); err != nil {
			t.Fatalf("Release: %v", err)
		}
	})

	for _, end := range []string{"release", "expiry"} {
		t.Run("until "+end, func(t *testing.T) {
			client := "wait-" + end
			hl := e.locker(t, client, lease, nil)
			holder, err := hl.TryAcquire(testCtx(t), events.LockInfo{Holder: events.RunnerService, JobID: "job-s"})
			if err != nil {
				t.Fatalf("TryAcquire: %v", err)
			}
			wl := e.locker(t, client, lease, nil)
			w := startWaiter(testCtx(t), wl, desktop)
			testenv.WaitFor(t, 2*time.Second, "onBusy", func() bool { return w.busy.Load() > 0 })
			if got := w.info.Load(); !sameInfo(*got, holder.Info()) {
				t.Fatalf("onBusy got %+v, want the holder %+v", *got, holder.Info())
			}
			// The holder renews for two leases: the waiter keeps waiting,
			// says nothing more and does not poll.
			attempts := lock.Attempts(wl)
			rev := holder.Revision()
			testenv.WaitFor(t, 3*lease, "six renewals", func() bool { return holder.Revision() >= rev+6 })
			if w.returned() {
				t.Fatalf("Acquire returned while the lock was held: %v", w.err)
			}
			if n := w.busy.Load(); n != 1 {
				t.Fatalf("onBusy called %d times for one holder, want 1", n)
			}
			if n := lock.Attempts(wl) - attempts; n != 0 {
				t.Fatalf("the waiter tried %d times while the lock was held: it polls", n)
			}

			var freed time.Time
			if end == "release" {
				if err := holder.Release(testCtx(t)); err != nil {
					t.Fatalf("Release: %v", err)
				}
				freed = time.Now()
			} else {
				// See the expiry on a watch of our own: it is a purge entry
				// (the server's marker, Nats-Marker-Reason: MaxAge).
				kw, err := e.kv.Watch(testCtx(t), client, jetstream.UpdatesOnly())
				if err != nil {
					t.Fatalf("Watch: %v", err)
				}
				defer func() { _ = kw.Stop() }()
				lock.StopRenewing(holder)
				stopped := time.Now()
				for freed.IsZero() {
					select {
					case u := <-kw.Updates():
						if u != nil && u.Operation() == jetstream.KeyValuePurge {
							freed = time.Now()
						}
					case <-time.After(lease + time.Second):
						t.Fatal("the holder's key did not expire within lease + 1s")
					}
				}
				t.Logf("key expired %s after renewals stopped", freed.Sub(stopped).Round(time.Millisecond))
			}
			select {
			case <-w.done:
			case <-time.After(time.Until(freed.Add(time.Second))):
				t.Fatalf("Acquire still waiting 1s after the lock was freed by %s", end)
			}
			if w.err != nil {
				t.Fatalf("Acquire: %v", w.err)
			}
			t.Logf("Acquire returned %s after the %s", w.at.Sub(freed).Round(time.Millisecond), end)
			if n := lock.Attempts(wl) - attempts; n > 2 {
				t.Fatalf("the waiter tried %d times to take a freed lock: want 1 (2 at worst)", n)
			}
			if w.busy.Load() != 1 {
				t.Fatalf("onBusy called %d times, want 1", w.busy.Load())
			}
			info, r, ok := current(t, hl)
			if !ok || !sameInfo(info, w.lease.Info()) || r != w.lease.Revision() {
				t.Fatalf("Current = %+v rev %d ok %v, want the waiter's lease", info, r, ok)
			}
			if err := w.lease.Release(testCtx(t)); err != nil {
				t.Fatalf("Release: %v", err)
			}
		})
	}

	t.Run("onBusy again for a new holder", func(t *testing.T) {
		hl := e.locker(t, "wait-two", 3*time.Second, nil)
		first, err := hl.TryAcquire(testCtx(t), events.LockInfo{Holder: events.RunnerService, JobID: "job-1"})
		if err != nil {
			t.Fatalf("TryAcquire: %v", err)
		}
		w := startWaiter(testCtx(t), e.locker(t, "wait-two", lease, nil), desktop)
		testenv.WaitFor(t, 2*time.Second, "onBusy", func() bool { return w.busy.Load() == 1 })
		// The lock passes straight to a second holder (a compare-and-set
		// write over the first one's revision, never free in between).
		second := events.LockInfo{Holder: events.RunnerService, PID: 4242, JobID: "job-2", Since: time.Now().UTC()}
		data, _ := json.Marshal(second)
		rev, err := e.kv.Update(testCtx(t), "wait-two", data, first.Revision())
		if err != nil {
			t.Fatalf("Update: %v", err)
		}
		testenv.WaitFor(t, 2*time.Second, "onBusy for the second holder", func() bool { return w.busy.Load() == 2 })
		if got := w.info.Load(); !sameInfo(*got, second) {
			t.Fatalf("onBusy got %+v, want the second holder %+v", *got, second)
		}
		testenv.WaitFor(t, 2*time.Second, "the first holder to see it lost the lock", func() bool { return closed(first.Lost()) })
		if w.returned() {
			t.Fatalf("Acquire returned while the second holder held the lock: %v", w.err)
		}
		if err := e.kv.Delete(testCtx(t), "wait-two", jetstream.LastRevision(rev)); err != nil {
			t.Fatalf("Delete: %v", err)
		}
		testenv.WaitFor(t, time.Second, "the waiter to take the lock", w.returned)
		if w.err != nil || w.busy.Load() != 2 {
			t.Fatalf("Acquire: %v after %d onBusy calls, want nil after 2", w.err, w.busy.Load())
		}
		_ = w.lease.Release(testCtx(t))
	})

	t.Run("across a broker restart", func(t *testing.T) {
		hl := e.locker(t, "wait-restart", 3*time.Second, nil)
		holder, err := hl.TryAcquire(testCtx(t), events.LockInfo{Holder: events.RunnerService})
		if err != nil {
			t.Fatalf("TryAcquire: %v", err)
		}
		w := startWaiter(testCtx(t), e.locker(t, "wait-restart", lease, nil), desktop)
		testenv.WaitFor(t, 2*time.Second, "onBusy", func() bool { return w.busy.Load() == 1 })
		e.b.Restart(t)
		if err := holder.Release(testCtx(t)); err != nil {
			t.Fatalf("Release: %v", err)
		}
		released := time.Now()
		testenv.WaitFor(t, 2*time.Second, "the waiter to take the lock", w.returned)
		t.Logf("Acquire returned %s after the release", w.at.Sub(released).Round(time.Millisecond))
		if w.err != nil {
			t.Fatalf("Acquire: %v", w.err)
		}
		_ = w.lease.Release(testCtx(t))
	})

	t.Run("returns on ctx end only", func(t *testing.T) {
		hl := e.locker(t, "wait-ctx", lease, nil)
		holder, err := hl.TryAcquire(testCtx(t), events.LockInfo{Holder: events.RunnerService})
		if err != nil {
			t.Fatalf("TryAcquire: %v", err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*lease)
		defer cancel()
		calls := 0
		_, err = e.locker(t, "wait-ctx", lease, nil).Acquire(ctx, desktop, func(events.LockInfo) { calls++ })
		if !errors.Is(err, context.DeadlineExceeded) || calls != 1 {
			t.Fatalf("Acquire: %v with %d onBusy calls, want DeadlineExceeded after 1", err, calls)
		}
		if err := holder.Release(testCtx(t)); err != nil {
			t.Fatalf("Release: %v", err)
		}
	})
}

func TestLease(t *testing.T) {
	e := startEnv(t)
	t.Run("survives a short broker outage", func(t *testing.T) {
		const lease = 3 * time.Second
		l := e.locker(t, "outage-short", lease, nil)
		s, err := l.TryAcquire(testCtx(t), events.LockInfo{Holder: events.RunnerService})
		if err != nil {
			t.Fatalf("TryAcquire: %v", err)
		}
		e.b.Stop()
		testenv.WaitFor(t, lease, "a renewal to fail", func() bool { return s.FailedRenewals() > 0 })
		e.b.Restart(t)
		rev := s.Revision()
		testenv.WaitFor(t, lease, "a renewal after the restart", func() bool { return s.Revision() > rev })
		if closed(s.Lost()) {
			t.Fatalf("lease lost across a short outage: %v", s.Err())
		}
		if info, r, ok := current(t, l); !ok || !sameInfo(info, s.Info()) || r != s.Revision() {
			t.Fatalf("Current = %+v rev %d ok %v, want our lease at rev %d", info, r, ok, s.Revision())
		}
		if err := s.Release(testCtx(t)); err != nil {
			t.Fatalf("Release: %v", err)
		}
	})
	t.Run("lost when the broker is down longer than the lease", func(t *testing.T) {
		const lease = time.Second
		l := e.locker(t, "outage-long", lease, nil)
		s, err := l.TryAcquire(testCtx(t), events.LockInfo{Holder: events.RunnerService})
		if err != nil {
			t.Fatalf("TryAcquire: %v", err)
		}
		e.b.Stop()
		stopped := time.Now()
		testenv.WaitFor(t, lease+time.Second, "Lost to close", func() bool { return closed(s.Lost()) })
		t.Logf("lease lost %s after the broker stopped", time.Since(stopped).Round(time.Millisecond))
		if !errors.Is(s.Err(), lock.ErrLeaseExpired) {
			t.Fatalf("Err = %v, want ErrLeaseExpired", s.Err())
		}
		if s.FailedRenewals() == 0 {
			t.Fatal("the lease was lost without a failed renewal")
		}
		e.b.Restart(t)
		if err := s.Release(testCtx(t)); !errors.Is(err, lock.ErrNotHeld) {
			t.Fatalf("Release: %v, want ErrNotHeld", err)
		}
		testenv.WaitFor(t, 2*lease, "the lost lock to be free", func() bool {
			_, _, ok := current(t, l)
			return !ok
		})
	})
}
