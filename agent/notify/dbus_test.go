//go:build !windows && !darwin

package notify_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/pcm-project/pcm/agent/notify"
	"github.com/pcm-project/pcm/testenv"
	"github.com/pcm-project/pcm/testenv/desktopbus"
)

const pageURL = "http://127.0.0.1:1/?token=secret"

// opener records the addresses a notifier opens.
type opener struct {
	mu   sync.Mutex
	urls []string
}

func (o *opener) open(_ context.Context, url string) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.urls = append(o.urls, url)
	return nil
}

// opened checks that the page was opened n times, each with pageURL.
func (o *opener) opened(t *testing.T, n int) {
	t.Helper()
	o.mu.Lock()
	defer o.mu.Unlock()
	if len(o.urls) != n || slices.ContainsFunc(o.urls, func(u string) bool { return u != pageURL }) {
		t.Fatalf("opened %q, want %d times %s", o.urls, n, pageURL)
	}
}

// settle checks that the notifier opened the page want times, each with
// pageURL, for the clicks the server played so far, then closes it. It
// plays a click on one more notification and waits for the page to open
// want+1 times: the notifier hears the server's signals in order and opens
// the page in order, so every click played before has been heard and its
// opening done by then (Close drops the openings still queued).
func settle(t *testing.T, n notify.NativeNotifier, srv *desktopbus.Server, o *opener, want int) {
	t.Helper()
	barrier := show(t, n, srv, notify.Notification{Title: "Barrier", Body: "after the clicks"})
	if err := srv.Click(barrier.ID, "default"); err != nil {
		t.Fatal(err)
	}
	testenv.CheckFor(t, 10*time.Second, 5*time.Millisecond, func() error {
		o.mu.Lock()
		defer o.mu.Unlock()
		if len(o.urls) < want+1 {
			return fmt.Errorf("the page opened %d times, want %d", len(o.urls), want+1)
		}
		return nil
	})
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	o.opened(t, want+1)
}

// show sends one notification and returns what the server recorded of it.
func show(t *testing.T, n notify.NativeNotifier, srv *desktopbus.Server, note notify.Notification) desktopbus.Notified {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	before := len(srv.Notified())
	if err := n.Notify(ctx, note); err != nil {
		t.Fatal(err)
	}
	seen := srv.Notified()
	if len(seen) != before+1 {
		t.Fatalf("the server saw %d notifications, want %d", len(seen), before+1)
	}
	return seen[len(seen)-1]
}

// TestClickOpensThePage sends notifications to a notification server on a
// private session bus (a real dbus-daemon) and plays the user clicking
// them: a click on a notification, or on its Open button, opens the
// session's page; a click on another application's notification, or on
// one already closed, does not.
func TestClickOpensThePage(t *testing.T) {
	bus := desktopbus.Start(t)
	srv := desktopbus.StartServer(t, bus)
	var o opener
	n := notify.Native(notify.Config{Bus: bus.Address, PageURL: pageURL, Open: o.open})
	t.Cleanup(func() { n.Close() })

	first := show(t, n, srv, notify.Notification{Title: "Installation required", Body: "job x starts in 5m", Urgent: true})
	if first.AppName != "pcm" || first.Summary != "Installation required" || first.Body != "job x starts in 5m" || first.Urgency != 2 ||
		!first.HasAction("default") || !first.HasAction("open") {
		t.Fatalf("the server was shown %+v", first)
	}
	// Signals come in order: the other application's click and the closed
	// notification's are heard before the click that opens the page.
	if err := srv.Click(first.ID+1000, "default"); err != nil {
		t.Fatal(err)
	}
	if err := srv.Close(first.ID, desktopbus.ClosedExpired); err != nil {
		t.Fatal(err)
	}
	if err := srv.Click(first.ID, "default"); err != nil {
		t.Fatal(err)
	}
	second := show(t, n, srv, notify.Notification{Title: "Installed", Body: "job y succeeded"})
	if second.Urgency != 1 {
		t.Fatalf("a notice that is not urgent has urgency %d", second.Urgency)
	}
	if err := srv.Click(second.ID, "default"); err != nil {
		t.Fatal(err)
	}
	third := show(t, n, srv, notify.Notification{Title: "Installed", Body: "job z succeeded"})
	if err := srv.Click(third.ID, "open"); err != nil {
		t.Fatal(err)
	}
	settle(t, n, srv, &o, 2)
}

// TestClicksHeardForTheLastNotifications: the notifier keeps the ids of
// its last 64 notifications not closed, no more: a click on an older one
// opens nothing.
func TestClicksHeardForTheLastNotifications(t *testing.T) {
	bus := desktopbus.Start(t)
	srv := desktopbus.StartServer(t, bus)
	var o opener
	n := notify.Native(notify.Config{Bus: bus.Address, PageURL: pageURL, Open: o.open})
	t.Cleanup(func() { n.Close() })
	var ids []uint32
	for i := range 65 {
		ids = append(ids, show(t, n, srv, notify.Notification{Title: "Installed", Body: fmt.Sprintf("job %d succeeded", i)}).ID)
	}
	if err := srv.Click(ids[0], "default"); err != nil { // forgotten
		t.Fatal(err)
	}
	if err := srv.Click(ids[1], "default"); err != nil { // kept
		t.Fatal(err)
	}
	// Opened before the barrier of settle (a 66th notification) forgets it.
	testenv.CheckFor(t, 10*time.Second, 5*time.Millisecond, func() error {
		o.mu.Lock()
		defer o.mu.Unlock()
		if len(o.urls) == 0 {
			return errors.New("the page was not opened")
		}
		return nil
	})
	settle(t, n, srv, &o, 1)
}

// TestWithoutTheBus: with no session bus, no notification server on it,
// or once the bus went away, a notification is ErrUnavailable, saying why;
// it is shown again once a bus answers.
func TestWithoutTheBus(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	note := notify.Notification{Title: "Installed", Body: "job x succeeded"}

	n := notify.Native(notify.Config{Bus: "unix:path=" + t.TempDir() + "/no-bus", PageURL: pageURL})
	if err := n.Notify(ctx, note); !errors.Is(err, notify.ErrUnavailable) {
		t.Fatalf("no bus: %v, want ErrUnavailable", err)
	}
	n.Close()

	bus := desktopbus.Start(t)
	n = notify.Native(notify.Config{Bus: bus.Address, PageURL: pageURL})
	t.Cleanup(func() { n.Close() })
	if err := n.Notify(ctx, note); !errors.Is(err, notify.ErrUnavailable) {
		t.Fatalf("no notification server: %v, want ErrUnavailable", err)
	}
	srv := desktopbus.StartServer(t, bus)
	show(t, n, srv, note)

	bus.Stop()
	testenv.CheckFor(t, 10*time.Second, 10*time.Millisecond, func() error {
		if err := n.Notify(ctx, note); !errors.Is(err, notify.ErrUnavailable) {
			return fmt.Errorf("the bus stopped: %v, want ErrUnavailable", err)
		}
		return nil
	})
}

// within fails t unless done is closed within d: what a test waits for
// returns promptly.
func within(t *testing.T, d time.Duration, what string, done <-chan struct{}) {
	t.Helper()
	select {
	case <-done:
	case <-time.After(d):
		t.Fatalf("%s: still waiting after %s", what, d)
	}
}

// TestCloseWhileConnecting: while the notification server hangs in the
// first queries of a connection, a notification with a short deadline
// fails at once (ErrUnavailable) without connecting again, and Close
// returns promptly, failing the notification waiting for the connection.
func TestCloseWhileConnecting(t *testing.T) {
	bus := desktopbus.Start(t)
	srv := desktopbus.StartServer(t, bus)
	asked, release := make(chan struct{}), make(chan struct{})
	var askedOnce sync.Once
	var mu sync.Mutex
	calls := 0
	srv.OnGetCapabilities(func() {
		mu.Lock()
		calls++
		mu.Unlock()
		askedOnce.Do(func() { close(asked) })
		<-release
	})
	t.Cleanup(func() { close(release) })
	n := notify.Native(notify.Config{Bus: bus.Address, PageURL: pageURL})
	t.Cleanup(func() { n.Close() })
	note := notify.Notification{Title: "Installed", Body: "job x succeeded"}

	first := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		first <- n.Notify(ctx, note)
	}()
	within(t, 10*time.Second, "GetCapabilities", asked)

	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := n.Notify(ctx, note); !errors.Is(err, notify.ErrUnavailable) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("a notification while connecting: %v, want ErrUnavailable (its deadline)", err)
	}

	closed := make(chan struct{})
	go func() {
		n.Close()
		close(closed)
	}()
	within(t, 5*time.Second, "Close", closed)
	select {
	case err := <-first:
		if !errors.Is(err, notify.ErrUnavailable) {
			t.Fatalf("the notification waiting for the connection: %v, want ErrUnavailable", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the notification waiting for the connection did not end with Close")
	}
	mu.Lock()
	defer mu.Unlock()
	if calls != 1 {
		t.Fatalf("%d connections queried the server, want 1", calls)
	}
}

// TestHungBusOneDial: a bus that accepts connections and never answers
// (authentication hangs) is dialled once, however many notifications time
// out meanwhile; Close ends that dial.
func TestHungBusOneDial(t *testing.T) {
	sock := t.TempDir() + "/bus"
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	var mu sync.Mutex
	accepted, ended := 0, 0
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			accepted++
			mu.Unlock()
			go func() { // reads what the client says, answers nothing
				_, _ = io.Copy(io.Discard, c)
				c.Close()
				mu.Lock()
				ended++
				mu.Unlock()
			}()
		}
	}()
	count := func() (int, int) {
		mu.Lock()
		defer mu.Unlock()
		return accepted, ended
	}
	n := notify.Native(notify.Config{Bus: "unix:path=" + sock, PageURL: pageURL})
	t.Cleanup(func() { n.Close() })
	note := notify.Notification{Title: "Installed", Body: "job x succeeded"}
	for i := range 5 {
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		err := n.Notify(ctx, note)
		cancel()
		if !errors.Is(err, notify.ErrUnavailable) {
			t.Fatalf("notification %d on a hung bus: %v, want ErrUnavailable", i, err)
		}
		if i == 0 {
			testenv.CheckFor(t, 10*time.Second, 5*time.Millisecond, func() error {
				if a, _ := count(); a != 1 {
					return fmt.Errorf("%d connections accepted, want 1", a)
				}
				return nil
			})
		}
	}
	if a, _ := count(); a != 1 {
		t.Fatalf("%d connections to the hung bus, want 1", a)
	}
	n.Close()
	testenv.CheckFor(t, 10*time.Second, 5*time.Millisecond, func() error {
		if _, e := count(); e != 1 {
			return fmt.Errorf("%d connections ended, want 1", e)
		}
		return nil
	})
}

// TestCloseDropsQueuedOpenings: Close cancels the page opening under way
// and opens nothing for the clicks still queued: the session's page is
// going away.
func TestCloseDropsQueuedOpenings(t *testing.T) {
	bus := desktopbus.Start(t)
	srv := desktopbus.StartServer(t, bus)
	started := make(chan struct{}, 10)
	var mu sync.Mutex
	var errs []error
	open := func(ctx context.Context, _ string) error {
		started <- struct{}{}
		<-ctx.Done() // a browser that takes its time
		mu.Lock()
		errs = append(errs, ctx.Err())
		mu.Unlock()
		return ctx.Err()
	}
	n := notify.Native(notify.Config{Bus: bus.Address, PageURL: pageURL, Open: open})
	t.Cleanup(func() { n.Close() })
	var ids []uint32
	for i := range 3 {
		ids = append(ids, show(t, n, srv, notify.Notification{Title: "Installed", Body: fmt.Sprintf("job %d succeeded", i)}).ID)
	}
	if err := srv.Click(ids[0], "default"); err != nil {
		t.Fatal(err)
	}
	select {
	case <-started:
	case <-time.After(10 * time.Second):
		t.Fatal("the page was not opened")
	}
	for _, id := range ids[1:] {
		if err := srv.Click(id, "default"); err != nil {
			t.Fatal(err)
		}
	}
	show(t, n, srv, notify.Notification{Title: "Barrier", Body: "after the clicks"})
	closed := make(chan struct{})
	go func() {
		n.Close()
		close(closed)
	}()
	within(t, 5*time.Second, "Close", closed)
	mu.Lock()
	defer mu.Unlock()
	if len(errs) != 1 || !errors.Is(errs[0], context.Canceled) || len(started) != 0 {
		t.Fatalf("openings ended with %v (%d more started), want one, cancelled", errs, len(started))
	}
}
