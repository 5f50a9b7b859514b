package broker_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/pcm-project/pcm/broker"
	"github.com/pcm-project/pcm/testenv"
)

// newBroker makes a broker on a random loopback port, shut down at cleanup.
func newBroker(t *testing.T, cfg broker.Config) *broker.Broker {
	t.Helper()
	if cfg.StoreDir == "" {
		cfg.StoreDir = t.TempDir()
	}
	if cfg.Listen == "" {
		cfg.Listen = "127.0.0.1:-1"
	}
	b, err := broker.New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(b.Shutdown)
	return b
}

// start starts b, failing the test on error.
func start(t *testing.T, b *broker.Broker) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := b.Start(ctx); err != nil {
		t.Fatalf("Start: %v", err)
	}
}

func TestStartReadyAndURLs(t *testing.T) {
	core, logs := observer.New(zap.InfoLevel)
	b := newBroker(t, broker.Config{MonitorListen: "127.0.0.1:-1", Logger: zap.New(core)})
	select {
	case <-b.Ready():
		t.Fatal("Ready() closed before Start")
	default:
	}
	start(t, b)
	select {
	case <-b.Ready():
	default:
		t.Fatal("Ready() not closed after Start returned")
	}

	u := b.ClientURL()
	if !strings.HasPrefix(u, "nats://127.0.0.1:") || strings.HasSuffix(u, ":-1") || strings.HasSuffix(u, ":0") {
		t.Fatalf("ClientURL() = %q, want nats://127.0.0.1:<real port>", u)
	}
	if b.ClusterURL() != "" {
		t.Errorf("ClusterURL() = %q on a single node, want empty", b.ClusterURL())
	}
	if !b.Server().JetStreamEnabled() {
		t.Error("JetStream is not enabled")
	}

	mon := b.MonitorURL()
	if mon == "" {
		t.Fatal("MonitorURL() is empty with MonitorListen set")
	}
	resp, err := http.Get(mon + "/healthz?js-enabled-only=true")
	if err != nil {
		t.Fatalf("monitoring endpoint: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("GET %s/healthz = %s, want 200", mon, resp.Status)
	}

	// nats-server's own logs reach the injected logger.
	if logs.FilterMessageSnippet("Server is ready").Len() == 0 {
		t.Error("nats-server's \"Server is ready\" notice did not reach the zap logger")
	}
	if logs.FilterLoggerName("nats-server").Len() == 0 {
		t.Error("no log entry under the nats-server logger name")
	}

	if err := b.Start(context.Background()); !errors.Is(err, broker.ErrAlreadyStarted) {
		t.Errorf("second Start() = %v, want %v", err, broker.ErrAlreadyStarted)
	}
	b.Shutdown()
	b.Shutdown() // idempotent
	if b.Server().Running() {
		t.Error("server still running after Shutdown")
	}
	if err := b.Start(context.Background()); !errors.Is(err, broker.ErrAlreadyStarted) {
		t.Errorf("Start() after Shutdown = %v, want %v", err, broker.ErrAlreadyStarted)
	}
}

func TestStartPortInUse(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	port := l.Addr().(*net.TCPAddr).Port

	b := newBroker(t, broker.Config{Listen: "127.0.0.1:" + strconv.Itoa(port)})
	began := time.Now()
	err = b.Start(context.Background())
	if !errors.Is(err, broker.ErrStart) {
		t.Fatalf("Start() on a port in use = %v, want %v", err, broker.ErrStart)
	}
	t.Logf("Start on a port in use: %v", err)
	if !strings.Contains(err.Error(), strconv.Itoa(port)) {
		t.Errorf("error %q does not name the port %d", err, port)
	}
	if took := time.Since(began); took > 5*time.Second {
		t.Errorf("Start() took %s to fail, want it to fail at once", took)
	}
	if b.Server().Running() {
		t.Error("server still running after a failed Start")
	}
}

func TestStartCancelledContext(t *testing.T) {
	b := newBroker(t, broker.Config{})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := b.Start(ctx)
	// Starting is fast enough that it may win the race with the check of
	// ctx; either outcome is fine, but a failure must say why.
	if err != nil && (!errors.Is(err, broker.ErrStart) || !errors.Is(err, context.Canceled)) {
		t.Fatalf("Start(cancelled ctx) = %v, want nil or %v wrapping %v", err, broker.ErrStart, context.Canceled)
	}
}

func TestRunReturnsAfterCancel(t *testing.T) {
	b := newBroker(t, broker.Config{})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- b.Run(ctx) }()

	select {
	case <-b.Ready():
	case err := <-done:
		t.Fatalf("Run returned before being ready: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("broker not ready after 30s")
	}
	testenv.WaitFor(t, 5*time.Second, "a client to connect", func() bool {
		c, err := net.Dial("tcp", strings.TrimPrefix(b.ClientURL(), "nats://"))
		if err != nil {
			return false
		}
		c.Close()
		return true
	})

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run() = %v after cancel, want nil", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Run did not return within 30s of cancel")
	}
	if b.Server().Running() {
		t.Error("server still running after Run returned")
	}
}

func TestRunReturnsAfterShutdown(t *testing.T) {
	b := newBroker(t, broker.Config{})
	done := make(chan error, 1)
	go func() { done <- b.Run(context.Background()) }()
	<-b.Ready()
	b.Shutdown()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run() = %v after Shutdown, want nil", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Run did not return within 30s of Shutdown")
	}
}

func TestRunFailsToStart(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	b := newBroker(t, broker.Config{Listen: l.Addr().String()})
	if err := b.Run(context.Background()); !errors.Is(err, broker.ErrStart) {
		t.Fatalf("Run() on a port in use = %v, want %v", err, broker.ErrStart)
	}
}
