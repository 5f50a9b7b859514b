package broker

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"go.uber.org/zap"
)

// Broker is an embedded nats-server with JetStream. Make one with New; it
// runs once: after Shutdown, make a new one (on the same StoreDir to keep the
// data).
type Broker struct {
	cfg  Config
	log  *zap.Logger
	slog *serverLogger
	srv  *server.Server
	// leafHost and leafPort are the leaf node listener of a hub.
	leafHost string
	leafPort int

	ready chan struct{}
	// startDone is closed when nats-server's own Start has returned.
	startDone chan struct{}

	mu       sync.Mutex
	started  bool
	stopping bool
	stopped  chan struct{} // closed once Shutdown has completed
	stopOnce sync.Once
}

// New validates cfg, applies its defaults and prepares the server. It does
// not open any port or file: Start does.
func New(cfg Config) (*Broker, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	opts, err := serverOptions(cfg)
	if err != nil {
		return nil, err
	}
	srv, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("%w: nats-server refused the configuration: %v", ErrInvalidConfig, err)
	}
	log := cfg.Logger
	if log == nil {
		log = zap.NewNop()
	}
	b := &Broker{
		cfg:       cfg,
		log:       log.Named("broker"),
		slog:      newServerLogger(log.Named("nats-server")),
		srv:       srv,
		ready:     make(chan struct{}),
		startDone: make(chan struct{}),
		stopped:   make(chan struct{}),
		leafHost:  opts.LeafNode.Host,
		leafPort:  opts.LeafNode.Port,
	}
	srv.SetLogger(b.slog, b.slog.debugEnabled(), false)
	return b, nil
}

// serverOptions translates a validated Config with defaults applied.
func serverOptions(cfg Config) (*server.Options, error) {
	host, port, _ := parseHostPort(cfg.Listen)
	opts := &server.Options{
		ServerName:         cfg.ServerName,
		Host:               host,
		Port:               port,
		JetStream:          true,
		StoreDir:           cfg.StoreDir,
		JetStreamMaxStore:  cfg.MaxStore,
		JetStreamMaxMemory: cfg.MaxMemory,
		MaxPayload:         cfg.MaxPayload,
		NoSigs:             true,
	}
	opts.JetStreamLimits.DefaultMaxConsumers = -1
	if cfg.DefaultMaxConsumersPerStream > 0 {
		opts.JetStreamLimits.DefaultMaxConsumers = cfg.DefaultMaxConsumersPerStream
	}
	if len(cfg.FeatureFlags) > 0 {
		opts.FeatureFlags = cfg.FeatureFlags
	}
	if err := applySecurity(cfg, opts); err != nil {
		return nil, err
	}
	if err := applyLeaf(cfg, opts); err != nil {
		return nil, err
	}
	if cfg.MonitorListen != "" {
		opts.HTTPHost, opts.HTTPPort, _ = parseHostPort(cfg.MonitorListen)
	}
	if cfg.Cluster.enabled() {
		routes, err := parseRoutes(cfg.Cluster.Routes)
		if err != nil {
			return nil, fmt.Errorf("%w: %w: Config.Cluster.Routes: %v", ErrInvalidConfig, ErrInvalidCluster, err)
		}
		opts.Cluster.Name = cfg.Cluster.Name
		opts.Cluster.Host, opts.Cluster.Port, _ = parseHostPort(cfg.Cluster.Listen)
		opts.Routes = routes
	}
	return opts, nil
}

// Start starts the server and returns once it accepts client connections
// (and route connections, for a cluster member). It does not wait for a
// cluster to elect its JetStream meta leader. If ctx has no deadline,
// Config.StartTimeout applies. On failure (a port in use, a start timeout,
// a cancelled ctx) the server is shut down and the error wraps ErrStart.
// A cancelled ctx interrupts the wait for readiness, but nats-server's own
// start-up (recovering the store) is let finish before it is shut down, so
// that nothing is left running or writing when Start returns.
func (b *Broker) Start(ctx context.Context) error {
	b.mu.Lock()
	if b.started {
		b.mu.Unlock()
		return fmt.Errorf("%w: server %q: a Broker runs once, make a new one with New", ErrAlreadyStarted, b.cfg.ServerName)
	}
	b.started = true
	b.mu.Unlock()

	if _, ok := ctx.Deadline(); !ok && b.cfg.StartTimeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, b.cfg.StartTimeout)
		defer cancel()
	}

	b.log.Info("starting broker", zap.String("server_name", b.cfg.ServerName),
		zap.String("listen", b.cfg.Listen), zap.String("store_dir", b.cfg.StoreDir),
		zap.Bool("auth", b.cfg.Auth != nil), zap.Bool("tls", b.cfg.TLS.enabled()))
	if b.cfg.Auth != nil && openDataIn(b.cfg.StoreDir) {
		b.log.Warn("the store dir holds data of an open (unauthenticated) broker, which an authenticated broker does not see: start with a fresh store dir, or run open and re-publish",
			zap.String("store_dir", b.cfg.StoreDir))
	}
	startReturned := b.startDone
	go func() {
		defer close(startReturned)
		b.srv.Start()
	}()

	fail := func(err error) error {
		b.Shutdown()
		return err
	}
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	// startCh is nats-server's Start returning, nil once it has.
	startCh := (<-chan struct{})(startReturned)
	for {
		if err := b.slog.fatalError(); err != nil {
			return fail(fmt.Errorf("%w: %w (check that %s free and that the store dir %s is writable)", ErrStart, err, b.listenAddrs(), b.cfg.StoreDir))
		}
		if startCh == nil && b.srv.ReadyForConnections(time.Millisecond) {
			break
		}
		select {
		case <-ctx.Done():
			return fail(fmt.Errorf("%w: server %q not ready for connections: %w", ErrStart, b.cfg.ServerName, ctx.Err()))
		case <-b.slog.fatalCh:
		case <-startCh:
			startCh = nil
		case <-tick.C:
		}
	}
	if err := b.registerAccount(); err != nil {
		return fail(err)
	}
	close(b.ready)
	b.log.Info("broker ready", zap.String("url", b.ClientURL()), zap.String("server_name", b.cfg.ServerName))
	return nil
}

// listenAddrs names the configured listen addresses for error messages,
// in words a user of any front end understands.
func (b *Broker) listenAddrs() string {
	addrs := []string{"the client address " + b.cfg.Listen}
	if b.cfg.MonitorListen != "" {
		addrs = append(addrs, "the monitoring address "+b.cfg.MonitorListen)
	}
	if b.cfg.Cluster.Listen != "" {
		addrs = append(addrs, "the cluster address "+b.cfg.Cluster.Listen)
	}
	if len(addrs) == 1 {
		return addrs[0] + " is"
	}
	return strings.Join(addrs, " and ") + " are"
}

// Run starts the broker, blocks until ctx is cancelled, then shuts it down
// gracefully. It returns nil after a clean shutdown, an ErrStart error if the
// broker could not start, or an ErrStopped error if the server stopped on its
// own. Shutdown called from elsewhere, or ctx cancelled while starting, also
// make Run return nil.
func (b *Broker) Run(ctx context.Context) error {
	if err := b.Start(ctx); err != nil {
		if errors.Is(err, context.Canceled) && ctx.Err() != nil {
			return nil
		}
		return err
	}
	down := make(chan struct{})
	go func() {
		b.srv.WaitForShutdown()
		close(down)
	}()
	select {
	case <-ctx.Done():
		b.Shutdown()
		return nil
	case <-down:
		b.mu.Lock()
		stopping := b.stopping
		b.mu.Unlock()
		if stopping {
			<-b.stopped
			return nil
		}
		b.Shutdown()
		return fmt.Errorf("%w: server %q shut down without being asked to", ErrStopped, b.cfg.ServerName)
	}
}

// Ready is closed once the broker accepts client connections.
func (b *Broker) Ready() <-chan struct{} { return b.ready }

// Shutdown stops the server gracefully and waits until it has stopped
// (file-backed consumers are stopped one by one, about 10 ms each). It is
// safe to call more than once, concurrently, and on a broker never started.
func (b *Broker) Shutdown() {
	b.mu.Lock()
	b.stopping = true
	started := b.started
	b.mu.Unlock()
	b.stopOnce.Do(func() {
		defer close(b.stopped)
		if !started {
			return
		}
		// Shutting nats-server down while its Start runs would leave
		// that Start writing to the store after we return.
		<-b.startDone
		b.log.Info("shutting down broker", zap.String("server_name", b.cfg.ServerName))
		start := time.Now()
		b.srv.Shutdown()
		b.srv.WaitForShutdown()
		b.log.Info("broker stopped", zap.String("server_name", b.cfg.ServerName), zap.Duration("took", time.Since(start)))
	})
	<-b.stopped
}

// Server is the embedded nats-server, for tests and advanced use.
func (b *Broker) Server() *server.Server { return b.srv }

// Config is the configuration the broker runs with, defaults applied.
func (b *Broker) Config() Config { return b.cfg }

// ClientURL is the URL clients connect to, nats://host:port with the real
// port. A wildcard listen address (0.0.0.0, ::) is given as 127.0.0.1. Empty before the client listener is open.
func (b *Broker) ClientURL() string {
	return urlOf("nats", b.srv.Addr())
}

// ClusterURL is the nats-route://host:port other cluster members route to,
// with the real port; empty for a single node or before the listener is open.
func (b *Broker) ClusterURL() string {
	addr := b.srv.ClusterAddr()
	if addr == nil {
		return ""
	}
	return urlOf("nats-route", addr)
}

// MonitorURL is the http://host:port of the monitoring endpoint; empty when
// Config.MonitorListen is empty or before the listener is open.
func (b *Broker) MonitorURL() string {
	addr := b.srv.MonitorAddr()
	if addr == nil {
		return ""
	}
	return urlOf("http", addr)
}

// urlOf renders scheme://host:port for a listener address.
func urlOf(scheme string, addr net.Addr) string {
	tcp, ok := addr.(*net.TCPAddr)
	if !ok || tcp == nil {
		return ""
	}
	ip := tcp.IP
	if ip == nil || ip.IsUnspecified() {
		ip = net.IPv4(127, 0, 0, 1)
	}
	return scheme + "://" + net.JoinHostPort(ip.String(), strconv.Itoa(tcp.Port))
}
