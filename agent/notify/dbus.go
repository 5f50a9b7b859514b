//go:build !windows && !darwin

package notify

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/godbus/dbus/v5"
	"go.uber.org/zap"
)

// The freedesktop notification service (Desktop Notifications
// Specification 1.2) on the session bus.
const (
	serviceName = "org.freedesktop.Notifications"
	servicePath = dbus.ObjectPath("/org/freedesktop/Notifications")
	serviceIntf = "org.freedesktop.Notifications"
)

// The actions a notification offers when a click opens the page: the
// default one (a click on the notification) and an Open button.
var openActions = []string{"default", "Open Self Service", "open", "Open"}

const (
	// keptIDs bounds the notifications whose clicks are heard: the last
	// ones sent and not yet closed.
	keptIDs = 64
	// keptEarly bounds the clicks heard while a Notify call is in flight,
	// kept until its id is known.
	keptEarly = 8
	// queuedOpens bounds the clicks waiting for the page to open: more
	// clicks meanwhile open nothing more.
	queuedOpens = 4
	// openFor bounds one opening of the page.
	openFor = 30 * time.Second
)

// connectFor bounds one connection to the bus: the dial, the
// authentication and the first queries. A connection that takes longer has
// hung: the callers waiting for it give up (ErrUnavailable) and later ones
// fail at once until it ends.
const connectFor = 15 * time.Second

// bus is the notifier on the freedesktop notification service. It
// connects on the first notification (and again after the bus went away),
// one connection at a time and outside b.mu (dialing), hears which of its
// notifications the user clicks (ActionInvoked) and which close
// (NotificationClosed) on one goroutine per connection, and opens the page
// for each click, in order, on another (opener).
type bus struct {
	cfg       Config
	ctx       context.Context    // the notifier's life: done once Close starts
	stop      context.CancelFunc // ends ctx
	listeners sync.WaitGroup
	opens     chan struct{} // a click each, to opener
	openerEnd chan struct{} // closed when opener returns

	mu       sync.Mutex
	conn     *dbus.Conn
	actions  bool            // the server shows actions
	dialing  *dialing        // the connection being made; nil when none
	sent     map[uint32]bool // ids of the notifications sent and not closed
	order    []uint32        // sent's ids, oldest first
	inFlight int             // Notify calls not answered yet
	early    []uint32        // ids clicked while a Notify call was in flight
	opensEnd bool            // opens is closed
	lostWhy  error           // why the last connection ended
	warned   bool            // the bus going away was logged
	closed   bool
}

// dialing is a connection to the bus being made (bus.dial): there is at
// most one, which every Notify call needing the bus waits for.
type dialing struct {
	addr  string
	since time.Time
	done  chan struct{} // closed once it is installed, or failed
	err   error         // why it failed; read once done is closed
}

func newNative(cfg Config) NativeNotifier {
	ctx, stop := context.WithCancel(context.Background())
	b := &bus{cfg: cfg, ctx: ctx, stop: stop, sent: map[uint32]bool{}, opens: make(chan struct{}, queuedOpens), openerEnd: make(chan struct{})}
	go b.opener()
	return b
}

// Notify sends n to the notification service and returns once it has it.
func (b *bus) Notify(ctx context.Context, n Notification) error {
	conn, actions, err := b.connect(ctx)
	if err != nil {
		return err
	}
	var acts []string
	if actions && b.cfg.PageURL != "" {
		acts = openActions
	}
	urgency := byte(1)
	if n.Urgent {
		urgency = 2
	}
	hints := map[string]dbus.Variant{"urgency": dbus.MakeVariant(urgency)}
	b.mu.Lock()
	b.inFlight++
	b.mu.Unlock()
	var id uint32
	err = conn.Object(serviceName, servicePath).CallWithContext(ctx, serviceIntf+".Notify", 0,
		"pcm", uint32(0), "", n.Title, n.Body, acts, hints, int32(-1)).Store(&id)
	b.mu.Lock()
	defer b.mu.Unlock()
	b.inFlight--
	if err == nil && acts != nil && b.conn == conn {
		b.keep(id)
	}
	// The clicks heard early may be on the notifications of the calls still
	// in flight (a failed call has none): kept until the last is answered.
	if b.inFlight == 0 {
		b.early = b.early[:0]
	}
	if err != nil {
		return callErr(conn, "Notify", err)
	}
	return nil
}

// keep remembers id, forgetting the oldest beyond keptIDs, and opens the
// page if it was clicked already. b.mu is held.
func (b *bus) keep(id uint32) {
	b.sent[id] = true
	b.order = append(b.order, id)
	if len(b.order) > keptIDs {
		delete(b.sent, b.order[0])
		b.order = slices.Delete(b.order, 0, 1)
	}
	if i := slices.Index(b.early, id); i >= 0 {
		b.early = slices.Delete(b.early, i, i+1)
		b.open()
	}
}

// forget drops id (its notification closed). b.mu is held.
func (b *bus) forget(id uint32) {
	if b.sent[id] {
		delete(b.sent, id)
		b.order = slices.DeleteFunc(b.order, func(k uint32) bool { return k == id })
	}
}

// callErr is the error of a call on conn: ErrUnavailable when the bus or
// the notification service is gone.
func callErr(conn *dbus.Conn, method string, err error) error {
	var derr dbus.Error
	switch {
	case !conn.Connected():
		return fmt.Errorf("%w: the D-Bus session bus went away: %w", ErrUnavailable, err)
	case errors.As(err, &derr) && (derr.Name == "org.freedesktop.DBus.Error.ServiceUnknown" || derr.Name == "org.freedesktop.DBus.Error.NameHasNoOwner"):
		return fmt.Errorf("%w: no notification service (%s) on the D-Bus session bus: %w", ErrUnavailable, serviceName, err)
	}
	return fmt.Errorf("%s.%s: %w", serviceIntf, method, err)
}

// connect returns the connection to the session bus, and whether the
// notification service shows actions. When there is none (the first
// time, or after the bus went away) it starts one (dial) unless one is
// being made already, and waits for it within ctx; a connection being made
// for longer than connectFor has hung: it fails at once.
func (b *bus) connect(ctx context.Context) (*dbus.Conn, bool, error) {
	for {
		b.mu.Lock()
		if b.closed {
			b.mu.Unlock()
			return nil, false, errClosed
		}
		if b.conn != nil {
			conn, actions := b.conn, b.actions
			b.mu.Unlock()
			return conn, actions, nil
		}
		d := b.dialing
		if d == nil {
			addr, err := sessionBus(b.cfg.Bus)
			if err != nil {
				b.mu.Unlock()
				return nil, false, fmt.Errorf("%w: %w", ErrUnavailable, err)
			}
			d = &dialing{addr: addr, since: time.Now(), done: make(chan struct{})}
			b.dialing = d
			go b.dial(d)
		}
		b.mu.Unlock()
		wait, cancel := context.WithDeadline(ctx, d.since.Add(connectFor))
		select {
		case <-d.done:
		case <-wait.Done():
		}
		cancel()
		select {
		case <-d.done:
			if d.err != nil {
				return nil, false, d.err
			}
			continue // installed: take it (or connect again if it went away already)
		default:
		}
		if err := ctx.Err(); err != nil {
			return nil, false, fmt.Errorf("%w: connecting to the D-Bus session bus at %s: %w", ErrUnavailable, d.addr, err)
		}
		return nil, false, fmt.Errorf("%w: connecting to the D-Bus session bus at %s has hung for %s", ErrUnavailable, d.addr, time.Since(d.since).Round(time.Second))
	}
}

// dial makes the connection of d and installs it as b.conn with its
// listener, or says in d.err why it could not. It holds b.mu only to
// install it. Close ends it (b.ctx): the authentication and the queries
// are cancelled, and a connection made after Close is closed.
func (b *bus) dial(d *dialing) {
	ctx, cancel := context.WithDeadline(b.ctx, d.since.Add(connectFor))
	defer cancel()
	conn, signals, actions, err := b.handshake(ctx, d.addr)
	b.mu.Lock()
	defer b.mu.Unlock()
	defer close(d.done)
	b.dialing = nil
	if err == nil && b.closed {
		conn.Close()
		err = errClosed
	}
	if err != nil {
		if b.lostWhy != nil {
			err = fmt.Errorf("%w (before: %w)", err, b.lostWhy)
		}
		d.err = err
		return
	}
	b.conn, b.actions, b.lostWhy = conn, actions, nil
	b.listeners.Go(func() { b.listen(conn, signals) })
}

// handshake connects to the bus at addr (authenticated, named; b.ctx
// closes the connection), listens to the notification service's signals
// and asks whether it shows actions, within ctx. Only the dial itself (a
// socket's connect) has no deadline; the rest ends with ctx.
func (b *bus) handshake(ctx context.Context, addr string) (*dbus.Conn, <-chan *dbus.Signal, bool, error) {
	conn, err := dbus.Dial(addr, dbus.WithContext(b.ctx))
	if err == nil {
		// What dbus.Connect does, where closing conn ends a bus that does
		// not answer.
		stop := context.AfterFunc(ctx, func() { conn.Close() })
		err = conn.Auth(nil)
		if err == nil {
			err = conn.Hello()
		}
		if !stop() { // ctx ended first: conn is closed
			err = ctx.Err()
		}
		if err != nil {
			conn.Close()
		}
	}
	if err != nil {
		return nil, nil, false, fmt.Errorf("%w: no D-Bus session bus at %s: %w", ErrUnavailable, addr, err)
	}
	signals := make(chan *dbus.Signal, 64)
	conn.Signal(signals)
	match := []dbus.MatchOption{dbus.WithMatchSender(serviceName), dbus.WithMatchObjectPath(servicePath), dbus.WithMatchInterface(serviceIntf)}
	if err := conn.AddMatchSignalContext(ctx, match...); err != nil {
		conn.Close()
		return nil, nil, false, fmt.Errorf("%w: listening to the notification service: %w", ErrUnavailable, err)
	}
	var caps []string
	if err := conn.Object(serviceName, servicePath).CallWithContext(ctx, serviceIntf+".GetCapabilities", 0).Store(&caps); err != nil {
		err = callErr(conn, "GetCapabilities", err)
		conn.Close()
		if !errors.Is(err, ErrUnavailable) && ctx.Err() != nil {
			err = fmt.Errorf("%w: %w", ErrUnavailable, err)
		}
		return nil, nil, false, err
	}
	var name, vendor, version, spec string
	if err := conn.Object(serviceName, servicePath).CallWithContext(ctx, serviceIntf+".GetServerInformation", 0).Store(&name, &vendor, &version, &spec); err == nil {
		b.cfg.Logger.Debug("notification service", zap.String("name", name), zap.String("vendor", vendor), zap.String("version", version),
			zap.String("spec", spec), zap.Strings("capabilities", caps))
	}
	return conn, signals, slices.Contains(caps, "actions"), nil
}

// sessionBus is the address of the session bus: addr, else
// DBUS_SESSION_BUS_ADDRESS, else $XDG_RUNTIME_DIR/bus (systemd's). It
// never starts a bus (no autolaunch).
func sessionBus(addr string) (string, error) {
	if addr != "" {
		return addr, nil
	}
	if a := os.Getenv("DBUS_SESSION_BUS_ADDRESS"); a != "" && a != "autolaunch:" {
		return a, nil
	}
	if dir := os.Getenv("XDG_RUNTIME_DIR"); dir != "" {
		p := filepath.Join(dir, "bus")
		if fi, err := os.Stat(p); err == nil && fi.Mode()&os.ModeSocket != 0 {
			return "unix:path=" + dbus.EscapeBusAddressValue(p), nil
		}
	}
	return "", errors.New("no D-Bus session bus: DBUS_SESSION_BUS_ADDRESS is not set and there is no $XDG_RUNTIME_DIR/bus")
}

// listen hears conn's signals until it closes: a click on one of the
// notifications sent opens the page, a notification closed is forgotten.
// When conn closes without Close, the bus went away: it says so once.
func (b *bus) listen(conn *dbus.Conn, signals <-chan *dbus.Signal) {
	for s := range signals {
		b.heard(s)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.conn != conn {
		return
	}
	b.conn, b.lostWhy = nil, errors.New("the D-Bus session bus went away")
	clear(b.sent)
	b.order, b.early = b.order[:0], b.early[:0]
	if !b.closed && !b.warned {
		b.warned = true
		b.cfg.Logger.Warn("the D-Bus session bus went away: no notifications until it is back")
	}
}

// heard takes one signal of the notification service.
func (b *bus) heard(s *dbus.Signal) {
	if s.Path != servicePath || len(s.Body) < 1 {
		return
	}
	id, ok := s.Body[0].(uint32)
	if !ok {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	switch s.Name {
	case serviceIntf + ".ActionInvoked":
		key, _ := s.Body[len(s.Body)-1].(string)
		if len(s.Body) != 2 || (key != "default" && key != "open") {
			return
		}
		switch {
		case b.sent[id]:
			b.open()
		case b.inFlight > 0 && len(b.early) < keptEarly:
			b.early = append(b.early, id)
		}
	case serviceIntf + ".NotificationClosed":
		b.forget(id)
	}
}

// open asks opener to open the page, unless queuedOpens clicks wait
// already. b.mu is held.
func (b *bus) open() {
	if b.opensEnd || b.cfg.PageURL == "" {
		return
	}
	select {
	case b.opens <- struct{}{}:
	default:
		b.cfg.Logger.Debug("a click on a notification while the page opens: ignored")
	}
}

// opener opens the page once for each click, until Close, within b.ctx:
// Close cancels the opening under way and drops the clicks queued.
func (b *bus) opener() {
	defer close(b.openerEnd)
	for range b.opens {
		if b.ctx.Err() != nil {
			continue // closing: the page is going away too
		}
		ctx, cancel := context.WithTimeout(b.ctx, openFor)
		if err := b.cfg.Open(ctx, b.cfg.PageURL); err != nil && b.ctx.Err() == nil {
			b.cfg.Logger.Warn("a notification was clicked, but the Self Service page cannot be opened", zap.Error(err))
		}
		cancel()
	}
}

// Close disconnects from the bus and returns promptly: a connection being
// made is abandoned, the page opening under way is cancelled and the
// clicks still queued open nothing (the session, and its page, are
// ending).
func (b *bus) Close() error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil
	}
	b.closed = true
	conn := b.conn
	b.mu.Unlock()
	b.stop()
	var err error
	if conn != nil {
		err = conn.Close() // the listener hears what was received, then ends
	}
	b.listeners.Wait()
	b.mu.Lock()
	b.conn, b.opensEnd = nil, true
	close(b.opens)
	b.mu.Unlock()
	<-b.openerEnd
	return err
}
