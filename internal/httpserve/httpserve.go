// Package httpserve serves pcm's HTTP endpoints (the console, /metrics,
// /healthz and /readyz): a listener on an address, TLS when given a
// certificate, shut down when the context ends. It never logs.
package httpserve

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"
)

// ErrServe: the address could not be listened on, or the certificate not
// loaded.
var ErrServe = errors.New("http endpoint")

// Config is where and how to serve.
type Config struct {
	// Addr is host:port to listen on (port 0: a free one).
	Addr string
	// CertFile and KeyFile, both or neither, make it serve HTTPS.
	CertFile, KeyFile string
	// OnListen, when set, is told the address listened on.
	OnListen func(addr string)
}

// shutdownGrace bounds the wait for requests in flight at shutdown.
const shutdownGrace = 5 * time.Second

// Serve serves h on cfg.Addr until ctx ends (then it returns nil).
func Serve(ctx context.Context, cfg Config, h http.Handler) error {
	if (cfg.CertFile == "") != (cfg.KeyFile == "") {
		return fmt.Errorf("%w: a certificate needs its key and a key its certificate (both or neither)", ErrServe)
	}
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrServe, err)
	}
	if cfg.OnListen != nil {
		cfg.OnListen(ln.Addr().String())
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second,
		BaseContext: func(net.Listener) context.Context { return ctx }}
	done := make(chan error, 1)
	go func() {
		if cfg.CertFile != "" {
			done <- srv.ServeTLS(ln, cfg.CertFile, cfg.KeyFile)
			return
		}
		done <- srv.Serve(ln)
	}()
	select {
	case err := <-done:
		return fmt.Errorf("%w: %w", ErrServe, err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
	defer cancel()
	_ = srv.Shutdown(sctx)
	return nil
}

// Health adds /healthz (the process answers: 200) and /readyz (200 when
// ready returns nil, else 503 with its error) to mux.
func Health(mux *http.ServeMux, ready func() error) {
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if err := ready(); err != nil {
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintln(w, "not ready:", err)
			return
		}
		fmt.Fprintln(w, "ready")
	})
}

// Loopback reports whether addr (host:port) listens on loopback only: a
// host that is localhost or a loopback IP. An empty host or 0.0.0.0 listens
// everywhere.
func Loopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil || host == "" {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// EventStream starts a server-sent events response on w: its headers, the
// status, and a first comment line flushed at once (so that the client's
// EventSource opens). It returns the flusher that sends each event, and
// false (having answered 500) when w cannot stream.
func EventStream(w http.ResponseWriter) (http.Flusher, bool) {
	fl, ok := w.(http.Flusher)
	if !ok {
		http.Error(w, "streaming unsupported", http.StatusInternalServerError)
		return nil, false
	}
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write([]byte(": stream open\n\n"))
	fl.Flush()
	return fl, true
}
