package desktopbus

import (
	"fmt"
	"slices"
	"sync"
	"testing"

	"github.com/godbus/dbus/v5"
)

// The freedesktop notification service's names.
const (
	name = "org.freedesktop.Notifications"
	path = dbus.ObjectPath("/org/freedesktop/Notifications")
	intf = "org.freedesktop.Notifications"
)

// Reasons a notification closed (NotificationClosed), per the
// specification.
const (
	ClosedExpired   uint32 = 1
	ClosedDismissed uint32 = 2
	ClosedByCall    uint32 = 3
)

// Notified is one Notify call the server answered.
type Notified struct {
	ID      uint32
	AppName string
	Summary string
	Body    string
	// Actions are the action keys and labels, in pairs.
	Actions []string
	// Urgency is the urgency hint (0 low, 1 normal, 2 critical), -1 when
	// absent.
	Urgency int
}

// HasAction reports whether the notification offers the action key.
func (n Notified) HasAction(key string) bool {
	for i := 0; i+1 < len(n.Actions); i += 2 {
		if n.Actions[i] == key {
			return true
		}
	}
	return false
}

// Server is a notification server on a bus: it owns
// org.freedesktop.Notifications and shows nothing.
type Server struct {
	conn *dbus.Conn
	mu   sync.Mutex
	last uint32
	seen []Notified
	// onNotify and onCaps play a server that is slow or refuses (OnNotify,
	// OnGetCapabilities).
	onNotify func(Notified) error
	onCaps   func()
}

// OnNotify has f called on each Notify call, once it is recorded and
// before it is answered (on the call's goroutine; the call is answered
// when f returns): f may click the notification before its id is
// known, hold the call, or refuse it (an error). nil: none.
func (s *Server) OnNotify(f func(Notified) error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.onNotify = f
}

// OnGetCapabilities has f called on each GetCapabilities call before it is
// answered: f may hold it, as a server that hangs. nil: none.
func (s *Server) OnGetCapabilities(f func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.onCaps = f
}

// StartServer starts a notification server on bus for t, with the
// capabilities a desktop's has (actions, body), stopped at cleanup.
func StartServer(t testing.TB, bus *Bus) *Server {
	t.Helper()
	conn, err := dbus.Connect(bus.Address)
	if err != nil {
		t.Fatalf("connecting the notification server to %s: %v", bus.Address, err)
	}
	t.Cleanup(func() { conn.Close() })
	s := &Server{conn: conn}
	if err := conn.Export(methods{s}, path, intf); err != nil {
		t.Fatal(err)
	}
	reply, err := conn.RequestName(name, dbus.NameFlagDoNotQueue)
	if err != nil || reply != dbus.RequestNameReplyPrimaryOwner {
		t.Fatalf("owning %s: %v %v", name, reply, err)
	}
	return s
}

// Notified returns the notifications the server was asked to show, in
// order.
func (s *Server) Notified() []Notified {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.seen)
}

// Click plays a user clicking action key (a click on the notification
// itself is "default") of notification id: ActionInvoked, then
// NotificationClosed (dismissed).
func (s *Server) Click(id uint32, key string) error {
	if err := s.conn.Emit(path, intf+".ActionInvoked", id, key); err != nil {
		return fmt.Errorf("emitting ActionInvoked: %w", err)
	}
	return s.Close(id, ClosedDismissed)
}

// Close emits NotificationClosed for id with reason.
func (s *Server) Close(id, reason uint32) error {
	if err := s.conn.Emit(path, intf+".NotificationClosed", id, reason); err != nil {
		return fmt.Errorf("emitting NotificationClosed: %w", err)
	}
	return nil
}

// methods are the server's D-Bus methods.
type methods struct{ s *Server }

// GetCapabilities answers what the server can show.
func (m methods) GetCapabilities() ([]string, *dbus.Error) {
	m.s.mu.Lock()
	f := m.s.onCaps
	m.s.mu.Unlock()
	if f != nil {
		f()
	}
	return []string{"actions", "body"}, nil
}

// GetServerInformation names the server.
func (m methods) GetServerInformation() (string, string, string, string, *dbus.Error) {
	return "pcm-test", "pcm", "1", "1.2", nil
}

// Notify records a notification and returns its id.
func (m methods) Notify(app string, replaces uint32, icon, summary, body string, actions []string,
	hints map[string]dbus.Variant, timeout int32) (uint32, *dbus.Error) {
	s := m.s
	s.mu.Lock()
	id := replaces
	if id == 0 {
		s.last++
		id = s.last
	}
	urgency := -1
	if v, ok := hints["urgency"]; ok {
		if u, ok := v.Value().(byte); ok {
			urgency = int(u)
		}
	}
	n := Notified{ID: id, AppName: app, Summary: summary, Body: body, Actions: actions, Urgency: urgency}
	s.seen = append(s.seen, n)
	f := s.onNotify
	s.mu.Unlock()
	if f != nil {
		if err := f(n); err != nil {
			return 0, dbus.MakeFailedError(err)
		}
	}
	return id, nil
}

// CloseNotification closes a notification (NotificationClosed, by call).
func (m methods) CloseNotification(id uint32) *dbus.Error {
	if err := m.s.Close(id, ClosedByCall); err != nil {
		return dbus.MakeFailedError(err)
	}
	return nil
}
