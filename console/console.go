package console

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/pcm-project/pcm/metrics"
	"github.com/pcm-project/pcm/publisher"
)

// Config configures a Console.
type Config struct {
	// JS reads the broker: an auditor's rights suffice. Required.
	JS jetstream.JetStream
	// Publisher, when set, lets operators cancel, halt and resume jobs with
	// its credentials; nil makes the console read-only.
	Publisher *publisher.Publisher
	// Users authenticates the console's users; nil: none (every request is
	// an operator's; for loopback only, see CheckListen).
	Users *Users
	// Registry receives the console's metrics; nil: a registry of its own
	// (Console.Registry).
	Registry *prometheus.Registry
	// Logger hears the failures of the console's feeds; nil: none.
	Logger *zap.Logger
	// Refresh is how often the enrollments (who each job expects) are
	// re-read; default 15 s.
	Refresh time.Duration
	// Throttle is the least time between two updates sent to the viewers
	// of a page; default 200 ms.
	Throttle time.Duration
	// AuditLimit is the most events the audit page lists; default 500.
	AuditLimit int
	// MaxJobs is the most jobs, newest first, the jobs page lists live;
	// default 500 (/api/jobs filters them all).
	MaxJobs int
	// Resync is how often the console reads the streams it follows when it
	// heard of nothing new (a notice lost); default
	// streamread.DefaultResync. It hears of each event as it is stored, on
	// a secured broker too (the streams republish what they store).
	Resync time.Duration
}

func (c *Config) setDefaults() {
	if c.Refresh <= 0 {
		c.Refresh = 15 * time.Second
	}
	if c.Throttle <= 0 {
		c.Throttle = 200 * time.Millisecond
	}
	if c.MaxJobs <= 0 {
		c.MaxJobs = 500
	}
	if c.AuditLimit <= 0 {
		c.AuditLimit = 500
	}
	if c.Logger == nil {
		c.Logger = zap.NewNop()
	}
	if c.Registry == nil {
		c.Registry = metrics.NewRegistry()
	}
}

// Validate checks the config.
func (c Config) Validate() error {
	if c.JS == nil {
		return fmt.Errorf("%w: no JetStream context to read the broker with", ErrInvalidConfig)
	}
	return nil
}

// Console is the web console: New, then Run, and serve Handler.
type Console struct {
	cfg   Config
	log   *zap.Logger
	hub   *hub
	feeds feeds

	// runCtx ends when Run's context does (or never, before Run).
	runCtx  context.Context
	stopRun context.CancelFunc
	running atomic.Bool
	started chan struct{}

	viewers  prometheus.Gauge
	rendered prometheus.Counter
	actions  *prometheus.CounterVec
}

// New returns a console; it reads nothing until Run.
func New(cfg Config) (*Console, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	c := &Console{cfg: cfg, log: cfg.Logger, feeds: feeds{jobs: map[string]*jobFeed{}}, started: make(chan struct{})}
	c.runCtx, c.stopRun = context.WithCancel(context.Background())
	ev, err := metrics.NewEvents(cfg.Registry)
	if err != nil {
		return nil, fmt.Errorf("%w: metrics: %w", ErrInvalidConfig, err)
	}
	ro, err := metrics.NewRollouts(cfg.Registry)
	if err != nil {
		return nil, fmt.Errorf("%w: metrics: %w", ErrInvalidConfig, err)
	}
	c.hub = &hub{index: newJobIndex(), events: ev, rollouts: ro, list: newFanout(), max: cfg.MaxJobs}
	c.viewers = prometheus.NewGauge(prometheus.GaugeOpts{Namespace: metrics.Namespace, Subsystem: "console", Name: "job_viewers",
		Help: "Event streams open on job pages."})
	c.rendered = prometheus.NewCounter(prometheus.CounterOpts{Namespace: metrics.Namespace, Subsystem: "console", Name: "job_renders_total",
		Help: "Job page updates rendered (each sent to every viewer of the job)."})
	c.actions = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: metrics.Namespace, Subsystem: "console", Name: "actions_total",
		Help: "Cancel, halt and resume actions asked of the console, by action and result (done, refused, failed)."}, []string{"action", "result"})
	for _, col := range []prometheus.Collector{c.viewers, c.rendered, c.actions} {
		if err := cfg.Registry.Register(col); err != nil {
			return nil, fmt.Errorf("%w: metrics: %w", ErrInvalidConfig, err)
		}
	}
	if nc := cfg.JS.Conn(); nc != nil {
		_ = metrics.Conn(cfg.Registry, nc, "console")
	}
	return c, nil
}

// Registry is where the console's metrics are.
func (c *Console) Registry() *prometheus.Registry { return c.cfg.Registry }

// Run follows the streams for the console's pages until ctx ends (it
// returns nil then) or the follow fails.
func (c *Console) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(ctx, c.stopRun)
	defer stop()
	c.running.Store(true)
	defer c.running.Store(false)
	close(c.started)
	go c.hub.refresh(ctx, c)
	go c.hub.broadcast(ctx, c.cfg.Throttle)
	err := c.hub.follow(ctx, c)
	if ctx.Err() != nil {
		return nil
	}
	c.hub.mu.Lock()
	c.hub.err = err
	c.hub.mu.Unlock()
	return err
}

// Ready says whether the console serves what the broker holds: it runs,
// its connection is up, and its follow of the streams has not failed.
func (c *Console) Ready() error {
	if !c.running.Load() {
		return errors.New("the console is not running")
	}
	if nc := c.cfg.JS.Conn(); nc != nil && !nc.IsConnected() {
		return fmt.Errorf("not connected to the broker (%s)", nc.Status())
	}
	c.hub.mu.Lock()
	defer c.hub.mu.Unlock()
	if c.hub.err != nil {
		return c.hub.err
	}
	return nil
}

// CanAct reports whether the console has publisher credentials to act
// with.
func (c *Console) CanAct() bool { return c.cfg.Publisher != nil }

// viewersGauge moves the viewer gauge.
func (c *Console) viewersGauge(d float64) { c.viewers.Add(d) }

// errField is an error as a log field.
func errField(err error) zap.Field { return zap.Error(err) }
