package desktopweb

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"embed"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/pcm-project/pcm/agent"
	"github.com/pcm-project/pcm/events"
)

//go:embed assets
var assets embed.FS

// Face is what the page needs of the desktop face; *agent.Desktop is one.
type Face interface {
	List(ctx context.Context) ([]agent.Listed, error)
	Run(ctx context.Context, jobID string) (events.JobStatus, error)
	Defer(ctx context.Context, jobID string) (events.JobStatus, error)
	History(ctx context.Context) ([]agent.Ran, error)
	Holder(ctx context.Context) (events.LockInfo, bool, error)
	HearStatuses(fn func(events.JobStatus)) (stop func(), err error)
	OutputPath(jobID string) string
	Background(ctx context.Context, jobID string) string
}

// Config configures the page.
type Config struct {
	// Face is the desktop face the page shows and drives.
	Face Face
	// Client is the client's id, shown in the title.
	Client string
	// Addr is the loopback address to listen on; 127.0.0.1:0 (a random
	// port) by default.
	Addr string
	// Recheck is how often, while the banner shows, the lock is read again
	// (its holder may have died without a word); 2s by default.
	Recheck time.Duration
	// Logger logs; nil logs nothing.
	Logger *zap.Logger
	// Ended, when set, is told when a job installed from the page ends
	// (a NoticeFinished or NoticeFailed notice): for native notifications.
	Ended func(agent.Notice)
}

func (c *Config) setDefaults() {
	if c.Addr == "" {
		c.Addr = "127.0.0.1:0"
	}
	if c.Recheck <= 0 {
		c.Recheck = 2 * time.Second
	}
	if c.Logger == nil {
		c.Logger = zap.NewNop()
	}
}

// Validate checks the configuration.
func (c Config) Validate() error {
	if c.Face == nil {
		return fmt.Errorf("%w: no desktop face", ErrInvalidConfig)
	}
	host, _, err := net.SplitHostPort(c.Addr)
	if err != nil {
		return fmt.Errorf("%w: address %q: %w", ErrInvalidConfig, c.Addr, err)
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("%w: %q is not a loopback address", ErrNotLoopback, c.Addr)
	}
	return nil
}

// Server is the page of one desktop session.
type Server struct {
	cfg    Config
	log    *zap.Logger
	ln     net.Listener
	token  string
	cookie string
	hosts  map[string]bool // the Host headers it answers
	origin string

	state   *state
	refresh chan struct{}
}

// New checks cfg, listens on its loopback address and makes the session's
// secret. Run serves.
func New(cfg Config) (*Server, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	secret := make([]byte, 32)
	if _, err := rand.Read(secret); err != nil {
		return nil, fmt.Errorf("making the session's secret: %w", err)
	}
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("listening on %s: %w", cfg.Addr, err)
	}
	addr := ln.Addr().(*net.TCPAddr)
	port := strconv.Itoa(addr.Port)
	s := &Server{
		cfg: cfg, log: cfg.Logger, ln: ln,
		token:  base64.RawURLEncoding.EncodeToString(secret),
		cookie: "pcm_desktop_" + port, // cookies are not kept apart by port: the name is
		hosts: map[string]bool{net.JoinHostPort(addr.IP.String(), port): true,
			"localhost:" + port: true},
		origin:  "http://" + net.JoinHostPort(addr.IP.String(), port),
		refresh: make(chan struct{}, 1),
	}
	s.state = newState(cfg.Client, s.poke)
	return s, nil
}

// URL is the page's address with the session's secret: what the user's
// browser opens once (the page then keeps the secret in a cookie).
func (s *Server) URL() string {
	return s.origin + "/?token=" + url.QueryEscape(s.token)
}

// Token is the session's secret, for a bearer client (a tray app).
func (s *Server) Token() string { return s.token }

// Run serves the page until ctx ends: it hears the client's statuses,
// reads the lists and the history when something changed, and follows the
// jobs started from the page.
func (s *Server) Run(ctx context.Context) error {
	stop, err := s.cfg.Face.HearStatuses(func(st events.JobStatus) { s.state.heard(st) })
	if err != nil {
		return err
	}
	defer stop()
	srv := &http.Server{Handler: s.Handler(ctx), ReadHeaderTimeout: 10 * time.Second,
		BaseContext: func(net.Listener) context.Context { return ctx }}
	var wg sync.WaitGroup
	wg.Go(func() { s.refresher(ctx) })
	wg.Go(func() { s.watchBusy(ctx) })
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(s.ln) }()
	select {
	case <-ctx.Done():
	case err = <-errc:
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = srv.Shutdown(sctx)
	wg.Wait()
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	return err
}

// Notice takes a notice of the desktop face (agent.DesktopConfig.OnNotice).
func (s *Server) Notice(n agent.Notice) { s.state.notice(n) }

// poke asks the refresher to read the lists and the history again.
func (s *Server) poke() {
	select {
	case s.refresh <- struct{}{}:
	default:
	}
}

// refresher reads the lists and the history at start and after each poke.
func (s *Server) refresher(ctx context.Context) {
	s.poke()
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.refresh:
		}
		rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		listed, lerr := s.cfg.Face.List(rctx)
		history, herr := s.cfg.Face.History(rctx)
		busyID, busyText := s.state.busyJob(), ""
		if busyID != "" {
			busyText = s.cfg.Face.Background(rctx, busyID)
		}
		cancel()
		if err := errors.Join(lerr, herr); err != nil && ctx.Err() == nil {
			s.log.Warn("reading the jobs for the page", zap.Error(err))
		}
		s.state.setLists(listed, lerr, history, herr, busyID, busyText)
	}
}

// watchBusy reads the lock at start, and again every Recheck while the
// banner shows: the statuses heard set and clear it, the lock says when
// its holder is gone without a word.
func (s *Server) watchBusy(ctx context.Context) {
	t := time.NewTicker(s.cfg.Recheck)
	defer t.Stop()
	first := true
	for {
		if first || s.state.busyJob() != "" {
			rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			info, held, err := s.cfg.Face.Holder(rctx)
			cancel()
			if err == nil {
				s.state.holder(info, held && info.Holder == events.RunnerService)
				first = false
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Handler is the page's HTTP handler, its API behind the session's
// secret; jobs installed from it run until ctx ends.
func (s *Server) Handler(ctx context.Context) http.Handler {
	mux := http.NewServeMux()
	static, _ := fs.Sub(assets, "assets")
	files := http.FileServerFS(static)
	mux.Handle("GET /{$}", files)
	mux.Handle("GET /app.js", files)
	mux.Handle("GET /app.css", files)
	mux.HandleFunc("GET /api/state", s.getState)
	mux.HandleFunc("GET /api/events", s.events)
	mux.HandleFunc("POST /api/jobs/{id}/install", func(w http.ResponseWriter, r *http.Request) { s.install(ctx, w, r) })
	mux.HandleFunc("POST /api/jobs/{id}/defer", s.deferJob)
	return s.guard(mux)
}

// guard refuses what does not come from this session's user: a Host that
// is not this loopback address (DNS rebinding), an Origin of another site,
// a request without the secret. A GET with ?token= sets the cookie and
// sends the browser on without the secret in its address.
func (s *Server) guard(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Cache-Control", "no-store")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Content-Security-Policy", "default-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'")
		h.Set("X-Frame-Options", "DENY")
		if !s.hosts[strings.ToLower(r.Host)] {
			http.Error(w, "refused: not addressed to this computer's loopback page", http.StatusForbidden)
			return
		}
		origin := r.Header.Get("Origin")
		if origin != "" && origin != s.origin && origin != "http://"+strings.ToLower(r.Host) {
			http.Error(w, "refused: another site's request", http.StatusForbidden)
			return
		}
		if r.Header.Get("Sec-Fetch-Site") == "cross-site" {
			http.Error(w, "refused: another site's request", http.StatusForbidden)
			return
		}
		if t := r.URL.Query().Get("token"); t != "" && r.Method == http.MethodGet {
			if !s.secret(t) {
				http.Error(w, "refused: not this session's secret", http.StatusUnauthorized)
				return
			}
			http.SetCookie(w, &http.Cookie{Name: s.cookie, Value: s.token, Path: "/", HttpOnly: true, SameSite: http.SameSiteStrictMode})
			q := r.URL.Query()
			q.Del("token")
			u := *r.URL
			u.RawQuery = q.Encode()
			http.Redirect(w, r, u.RequestURI(), http.StatusSeeOther)
			return
		}
		bearer, isBearer := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		c, err := r.Cookie(s.cookie)
		switch {
		case isBearer && s.secret(bearer):
		case err == nil && s.secret(c.Value):
			// A state-changing request from a browser says where it comes
			// from: it must be this page.
			if r.Method != http.MethodGet && origin == "" {
				http.Error(w, "refused: a change without its origin", http.StatusForbidden)
				return
			}
		default:
			http.Error(w, "refused: open this page with: pcm desktop open", http.StatusUnauthorized)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// secret reports whether t is this session's secret.
func (s *Server) secret(t string) bool {
	return subtle.ConstantTimeCompare([]byte(t), []byte(s.token)) == 1
}
