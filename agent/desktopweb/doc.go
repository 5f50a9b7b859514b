// Package desktopweb is the desktop face's Self Service page: a small web
// application, served on loopback only for the user of one desktop session,
// that lists the jobs the user may run (Available), the mandatory ones with
// their countdown and deferrals (Required) and what ran here (History),
// shows a banner while a background installation holds the machine, and
// streams changes to the page with server-sent events.
//
// Who may use it: the page is reachable on 127.0.0.1 (or ::1) only, and
// answers only a request that carries the session's secret, given once in
// the URL (then kept in an HttpOnly, SameSite=Strict cookie) or as a bearer
// token (a native tray application); a request whose Host is not the
// loopback address and port (DNS rebinding) or whose Origin is another
// site is refused. The HTTP API is documented in docs/desktop-api.md.
//
// What feeds it: the desktop face (agent.Desktop) through the Face
// interface: its reads of the client's offers and statuses, its
// subscription to the client's statuses, its notices. One refresher per
// server reads the broker when something changed; browsers never poll.
// It never runs a job itself: Install asks the desktop face, which decides.
package desktopweb
