package console

import (
	"bufio"
	"context"
	"embed"
	"encoding/json"
	"errors"
	"io/fs"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/pcm-project/pcm/audit"
	"github.com/pcm-project/pcm/events"
	"github.com/pcm-project/pcm/fleet"
	"github.com/pcm-project/pcm/internal/httpserve"
	"github.com/pcm-project/pcm/metrics"
	"github.com/pcm-project/pcm/publisher"
	"github.com/pcm-project/pcm/rollout"
)

//go:embed assets
var assets embed.FS

// actionHeader must accompany every action: a browser sends it only from
// the console's own scripts (another site's form cannot set it), so a
// logged-in operator's cookie cannot be used by another page.
const actionHeader = "X-PCM-Console"

// requestTimeout bounds the broker reads of one API request.
const requestTimeout = 30 * time.Second

// Handler serves the console: its pages, its API, /metrics, /healthz and
// /readyz (the last two without authentication).
func (c *Console) Handler() http.Handler {
	mux := http.NewServeMux()
	httpserve.Health(mux, c.Ready)
	static, _ := fs.Sub(assets, "assets")
	files := http.FileServerFS(static)
	page := func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		http.ServeFileFS(w, r, static, "index.html")
	}
	app := http.NewServeMux()
	for _, p := range []string{"GET /{$}", "GET /jobs/{id}", "GET /fleet", "GET /fleet/{client}", "GET /audit"} {
		app.HandleFunc(p, page)
	}
	app.Handle("GET /assets/", http.StripPrefix("/assets/", files))
	app.Handle("GET /metrics", metrics.Handler(c.cfg.Registry))
	app.HandleFunc("GET /api/me", c.me)
	app.HandleFunc("GET /api/jobs", c.jobs)
	app.HandleFunc("GET /api/jobs/events", c.jobsEvents)
	app.HandleFunc("GET /api/jobs/{id}", c.job)
	app.HandleFunc("GET /api/jobs/{id}/events", c.jobEvents)
	app.HandleFunc("POST /api/jobs/{id}/{action}", c.act)
	app.HandleFunc("GET /api/fleet", c.fleet)
	app.HandleFunc("GET /api/fleet/{client}", c.client)
	app.HandleFunc("GET /api/audit", c.audit)
	app.HandleFunc("GET /api/audit/download", c.auditDownload)
	mux.HandleFunc("GET /login", c.login)
	mux.Handle("/", c.authenticated(app))
	return securityHeaders(mux)
}

// securityHeaders keeps the pages to their own origin.
func securityHeaders(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; style-src 'self'; frame-ancestors 'none'")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		w.Header().Set("Referrer-Policy", "no-referrer")
		h.ServeHTTP(w, r)
	})
}

type userKey struct{}

// authenticated lets through the requests of known users.
func (c *Console) authenticated(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u, ok := c.cfg.Users.authenticate(r)
		if !ok {
			w.Header().Set("WWW-Authenticate", `Basic realm="pcm console"`)
			http.Error(w, "authentication required: basic auth (name and token), a bearer token, or /login?token=TOKEN", http.StatusUnauthorized)
			return
		}
		h.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), userKey{}, u)))
	})
}

func userOf(r *http.Request) User {
	u, _ := r.Context().Value(userKey{}).(User)
	return u
}

// login takes a token in the query, sets it as a cookie and goes to the
// jobs page.
func (c *Console) login(w http.ResponseWriter, r *http.Request) {
	tok := r.URL.Query().Get("token")
	if c.cfg.Users == nil {
		http.Redirect(w, r, "/", http.StatusSeeOther)
		return
	}
	if _, ok := c.cfg.Users.byToken(tok); !ok {
		http.Error(w, "unknown token", http.StatusUnauthorized)
		return
	}
	http.SetCookie(w, &http.Cookie{Name: cookieName, Value: tok, Path: "/", HttpOnly: true, SameSite: http.SameSiteStrictMode,
		Secure: r.TLS != nil})
	http.Redirect(w, r, "/", http.StatusSeeOther)
}

// canAct reports whether u may act through this console.
func (c *Console) canAct(u User) bool { return c.CanAct() && u.Role == RoleOperator }

// Me is who the console's user is and what it may do.
type Me struct {
	User   string `json:"user"`
	Role   Role   `json:"role"`
	CanAct bool   `json:"can_act"`
	// Why says why the user may not act, when it may not.
	Why string `json:"why,omitempty"`
}

func (c *Console) me(w http.ResponseWriter, r *http.Request) {
	u := userOf(r)
	m := Me{User: u.Name, Role: u.Role, CanAct: c.canAct(u)}
	switch {
	case !c.CanAct():
		m.Why = "the console has no publisher credentials (read-only)"
	case u.Role != RoleOperator:
		m.Why = "viewers do not act"
	}
	writeJSON(w, m)
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_ = json.NewEncoder(w).Encode(v)
}

// httpError answers err with the status its sentinel means.
func httpError(w http.ResponseWriter, err error) {
	code := http.StatusBadGateway
	switch {
	case errors.Is(err, rollout.ErrJobNotFound), errors.Is(err, fleet.ErrUnknownClient):
		code = http.StatusNotFound
	case errors.Is(err, rollout.ErrInvalidJobID), errors.Is(err, audit.ErrInvalidFilter), errors.Is(err, errBadQuery):
		code = http.StatusBadRequest
	case errors.Is(err, ErrReadOnly):
		code = http.StatusForbidden
	}
	http.Error(w, err.Error(), code)
}

var errBadQuery = errors.New("bad query")

// jobs lists the jobs, newest first, filtered by the query: group, state
// (a client in that state), publisher, since (RFC 3339 or -24h).
func (c *Console) jobs(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	var since time.Time
	if s := q.Get("since"); s != "" {
		t, err := publisher.ParseWhen(s, time.Now())
		if err != nil {
			httpError(w, errors.Join(errBadQuery, err))
			return
		}
		since = t
	}
	out := []JobSummary{}
	for _, j := range c.hub.jobs(0) {
		if keep(j, q.Get("group"), q.Get("state"), q.Get("publisher"), since) {
			out = append(out, j)
		}
	}
	writeJSON(w, out)
}

// keep applies the jobs list's filters.
func keep(j JobSummary, group, state, pub string, since time.Time) bool {
	if group != "" && !contains(j.Groups, group) {
		return false
	}
	if state != "" && j.Counts[state] == 0 {
		return false
	}
	if pub != "" && j.Publisher != pub {
		return false
	}
	return since.IsZero() || !j.OfferedAt.Before(since)
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// stream serves one viewer's event stream until the request ends, the
// console stops, or ended is closed.
func (c *Console) stream(w http.ResponseWriter, r *http.Request, v *viewer, ended <-chan struct{}) {
	fl, ok := httpserve.EventStream(w)
	if !ok {
		return
	}
	keepAlive := time.NewTicker(25 * time.Second)
	defer keepAlive.Stop()
	for {
		select {
		case <-r.Context().Done():
			return
		case <-c.runCtx.Done():
			return
		case <-ended:
			// What the feed sent last is sent before the stream ends.
			select {
			case msg := <-v.ch:
				_, _ = w.Write(msg)
				fl.Flush()
			default:
			}
			return
		case msg := <-v.ch:
			if _, err := w.Write(msg); err != nil {
				return
			}
			fl.Flush()
		case <-keepAlive.C:
			if _, err := w.Write([]byte(": keep-alive\n\n")); err != nil {
				return
			}
			fl.Flush()
		}
	}
}

// jobsEvents streams the jobs list each time it changes.
func (c *Console) jobsEvents(w http.ResponseWriter, r *http.Request) {
	v := newViewer()
	c.hub.list.join(v)
	defer c.hub.list.leave(v)
	if len(v.ch) == 0 {
		if b, err := json.Marshal(c.hub.jobs(c.cfg.MaxJobs)); err == nil {
			v.offer(sseMessage("jobs", b))
		}
	}
	c.stream(w, r, v, nil)
}

// job answers one job's page once.
func (c *Console) job(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), requestTimeout)
	defer cancel()
	ro, err := rollout.Read(ctx, c.cfg.JS, r.PathValue("id"))
	if err != nil {
		httpError(w, err)
		return
	}
	v := viewOf(ro)
	writeJSON(w, v)
}

// jobEvents streams one job's page each time it changes, from the job's
// one shared watch.
func (c *Console) jobEvents(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if err := events.ValidID("job id", id); err != nil {
		httpError(w, errors.Join(rollout.ErrInvalidJobID, err))
		return
	}
	select {
	case <-c.started:
	case <-r.Context().Done():
		return
	}
	v := newViewer()
	ended, err := c.join(r.Context(), id, v)
	if err != nil {
		httpError(w, err)
		return
	}
	defer c.leave(id, v)
	c.stream(w, r, v, ended)
}

// act cancels, halts or resumes a job.
func (c *Console) act(w http.ResponseWriter, r *http.Request) {
	action, id := r.PathValue("action"), r.PathValue("id")
	if action != "cancel" && action != "halt" && action != "resume" {
		http.NotFound(w, r)
		return
	}
	u := userOf(r)
	switch {
	case !c.CanAct():
		c.actions.WithLabelValues(action, "refused").Inc()
		httpError(w, errors.Join(ErrReadOnly, errors.New("the console has no publisher credentials")))
		return
	case u.Role != RoleOperator:
		c.actions.WithLabelValues(action, "refused").Inc()
		httpError(w, errors.Join(ErrReadOnly, errors.New(u.Name+" is a viewer")))
		return
	case r.Header.Get(actionHeader) == "":
		c.actions.WithLabelValues(action, "refused").Inc()
		httpError(w, errors.Join(ErrReadOnly, errors.New("actions come from the console's pages (header "+actionHeader+")")))
		return
	}
	if err := events.ValidID("job id", id); err != nil {
		httpError(w, errors.Join(rollout.ErrInvalidJobID, err))
		return
	}
	var body struct {
		Reason string `json:"reason"`
	}
	_ = json.NewDecoder(http.MaxBytesReader(w, r.Body, 4096)).Decode(&body)
	reason := strings.TrimSpace(body.Reason)
	if reason == "" {
		reason = action + " from the console by " + u.Name
	}
	ctx, cancel := context.WithTimeout(r.Context(), requestTimeout)
	defer cancel()
	p := c.cfg.Publisher
	var err error
	switch action {
	case "cancel":
		err = p.Cancel(ctx, id, reason)
	case "halt":
		_, err = p.Halt(ctx, events.JobHalted{JobID: id, Reason: reason})
	case "resume":
		_, err = p.Resume(ctx, id, reason)
	}
	if err != nil {
		c.actions.WithLabelValues(action, "failed").Inc()
		httpError(w, err)
		return
	}
	c.actions.WithLabelValues(action, "done").Inc()
	writeJSON(w, map[string]string{"done": action, "job": id})
}

// FleetRow is a client as the fleet page shows it.
type FleetRow struct {
	Client   string         `json:"client"`
	Liveness fleet.Liveness `json:"liveness"`
	Version  string         `json:"version,omitempty"`
	Platform string         `json:"platform,omitempty"`
	Host     string         `json:"host,omitempty"`
	Groups   []string       `json:"groups,omitempty"`
	LastSeen string         `json:"last_seen,omitempty"`
	Running  string         `json:"running,omitempty"`
	Lock     string         `json:"lock,omitempty"`
}

func (c *Console) fleet(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), requestTimeout)
	defer cancel()
	list, err := fleet.Inventory(ctx, c.cfg.JS, time.Now())
	if err != nil {
		httpError(w, err)
		return
	}
	out := make([]FleetRow, 0, len(list))
	for _, a := range list {
		row := FleetRow{Client: a.Client, Liveness: a.Liveness, Groups: a.Groups()}
		if i := a.Info; i != nil {
			row.Version, row.Platform, row.Host, row.Running = i.Version, i.OS+"/"+i.Arch, i.Host, i.CurrentJob
			row.LastSeen = rfc3339(i.LastSeen)
		}
		if l := a.Lock; l != nil {
			row.Lock = string(l.Holder)
		}
		out = append(out, row)
	}
	writeJSON(w, out)
}

func (c *Console) client(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), requestTimeout)
	defer cancel()
	d, err := fleet.ShowAgent(ctx, c.cfg.JS, r.PathValue("client"), 0, time.Now())
	if err != nil {
		httpError(w, err)
		return
	}
	writeJSON(w, d)
}

// AuditRow is one stored event on the audit page.
type AuditRow struct {
	Stream  string          `json:"stream"`
	Seq     uint64          `json:"seq"`
	Stored  string          `json:"stored"`
	Type    string          `json:"type"`
	Subject string          `json:"subject"`
	Source  string          `json:"source,omitempty"`
	Job     string          `json:"job,omitempty"`
	Summary string          `json:"summary,omitempty"`
	Event   json.RawMessage `json:"event"`
}

// auditFilter reads the audit page's query: job, client, type
// (comma-separated), since, until.
func auditFilter(r *http.Request) (audit.Filter, error) {
	q := r.URL.Query()
	f := audit.Filter{JobID: q.Get("job"), Client: q.Get("client")}
	now := time.Now()
	for _, k := range []struct {
		name string
		t    *time.Time
	}{{"since", &f.Since}, {"until", &f.Until}} {
		if s := q.Get(k.name); s != "" {
			t, err := publisher.ParseWhen(s, now)
			if err != nil {
				return f, errors.Join(errBadQuery, err)
			}
			*k.t = t
		}
	}
	for _, t := range strings.Split(q.Get("type"), ",") {
		if t = strings.TrimSpace(t); t != "" {
			f.Types = append(f.Types, t)
		}
	}
	return f, f.Validate()
}

// audit lists the newest events of the filter (at most AuditLimit, or the
// query's limit), newest first.
func (c *Console) audit(w http.ResponseWriter, r *http.Request) {
	f, err := auditFilter(r)
	if err != nil {
		httpError(w, err)
		return
	}
	limit := c.cfg.AuditLimit
	if n, err := strconv.Atoi(r.URL.Query().Get("limit")); err == nil && n > 0 && n < limit {
		limit = n
	}
	ring := make([]AuditRow, 0, limit)
	start := 0
	err = audit.Replay(r.Context(), c.cfg.JS, f, func(e audit.Event) error {
		row := rowOf(e)
		if len(ring) < limit {
			ring = append(ring, row)
		} else {
			ring[start] = row
			start = (start + 1) % limit
		}
		return nil
	})
	if err != nil {
		httpError(w, err)
		return
	}
	out := make([]AuditRow, 0, len(ring))
	for i := len(ring) - 1; i >= 0; i-- {
		out = append(out, ring[(start+i)%len(ring)])
	}
	writeJSON(w, out)
}

// rowOf is a stored event as the audit page lists it.
func rowOf(e audit.Event) AuditRow {
	raw := e.JSON()
	row := AuditRow{Stream: e.Stream, Seq: e.Seq, Stored: rfc3339(e.Stored), Subject: e.Subject}
	if json.Valid(raw) {
		row.Event = append(json.RawMessage(nil), raw...)
	} else {
		b, _ := json.Marshal(string(raw))
		row.Event = b
	}
	ev, err := e.Decode()
	if err != nil {
		row.Type = "undecodable"
		row.Summary = err.Error()
		return row
	}
	row.Type, row.Source, row.Job = audit.ShortType(ev.Type()), ev.Source(), ev.Subject()
	switch ev.Type() {
	case events.TypeJobStatus:
		if st, err := events.ParseJobStatus(ev); err == nil {
			row.Summary = st.ClientID + ": " + string(st.State)
			if st.Reason != "" {
				row.Summary += " (" + st.Reason + ")"
			}
		}
	case events.TypeJobOffered:
		if j, err := events.ParseJobOffered(ev); err == nil {
			row.Summary = commandText(j.Command)
		}
	case events.TypeJobCancelled:
		if cl, err := events.ParseJobCancelled(ev); err == nil {
			row.Summary = cl.Reason
		}
	}
	return row
}

// auditDownload streams the filter's events as CloudEvents JSON lines,
// oldest first.
func (c *Console) auditDownload(w http.ResponseWriter, r *http.Request) {
	f, err := auditFilter(r)
	if err != nil {
		httpError(w, err)
		return
	}
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.Header().Set("Content-Disposition", `attachment; filename="pcm-audit.jsonl"`)
	bw := bufio.NewWriter(w)
	err = audit.Replay(r.Context(), c.cfg.JS, f, func(e audit.Event) error {
		if _, err := bw.Write(e.JSON()); err != nil {
			return err
		}
		return bw.WriteByte('\n')
	})
	if err != nil {
		// The status is sent; the download ends short, with the error as
		// its last line (not JSON: a reader notices).
		_, _ = bw.WriteString("error: " + err.Error() + "\n")
	}
	_ = bw.Flush()
}
