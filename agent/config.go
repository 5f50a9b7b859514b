package agent

import (
	"fmt"
	"os"
	"runtime"
	"time"

	"go.uber.org/zap"

	"github.com/pcm-project/pcm/agent/lock"
	"github.com/pcm-project/pcm/agent/pkgcache"
	"github.com/pcm-project/pcm/agent/runner"
	"github.com/pcm-project/pcm/events"
	"github.com/pcm-project/pcm/internal/clock"
)

// Defaults of Config.
const (
	// DefaultHeartbeat is how often the inventory is refreshed.
	DefaultHeartbeat = 30 * time.Second
	// DefaultPackageRetryFor is Config.PackageRetryFor's default.
	DefaultPackageRetryFor = time.Hour
	// DefaultLease is the lease of the service-versus-desktop lock: the
	// lock's own default.
	DefaultLease = lock.DefaultLease
	// DefaultGrace is how long the user is warned before a mandatory job
	// runs at the desktop, or a job the user may defer runs, or the machine
	// restarts for a job.
	DefaultGrace = 5 * time.Minute
)

// FaultPoint names a dangerous instant at which a test may crash the agent.
type FaultPoint string

// The fault points, in the order a run passes them.
const (
	// FaultAfterStart: the command runs and its start is journaled.
	FaultAfterStart FaultPoint = "after-start"
	// FaultAfterFinish: the command finished and its final status is
	// journaled, not yet published.
	FaultAfterFinish FaultPoint = "after-finish"
	// FaultAfterPublish: the final status is persisted on the broker, the
	// offer is not yet acked.
	FaultAfterPublish FaultPoint = "after-publish"
)

// Config configures a Service.
type Config struct {
	// ClientID is this client's id (a subject token).
	ClientID string
	// Groups are reported in the inventory; the enrollment decides which
	// group subjects the consumer receives.
	Groups []string
	// StateDir holds the journal, job working directories and logs, and
	// the package cache (PackageCacheDir).
	StateDir string
	// CacheSize bounds the package cache, in bytes; default
	// pkgcache.DefaultMaxBytes (2 GiB). The least recently used packages
	// are evicted first; a package of a job still pending never is.
	CacheSize int64
	// PackageRetryFor bounds how long the service retries a job whose
	// package store cannot be reached (or whose package does not fit the
	// cache now) before the job fails with the reason; default
	// DefaultPackageRetryFor.
	PackageRetryFor time.Duration
	// Host name reported in statuses; default os.Hostname.
	Host string
	// OS and Arch of this client for the platform filter; default the
	// running binary's.
	OS, Arch string
	// Version of the agent, reported in statuses and the inventory.
	Version string
	// Runner runs commands; default runner.NewExec().
	Runner runner.Runner
	// Heartbeat is how often the inventory is refreshed; default 30s.
	Heartbeat time.Duration
	// Lease of the service-versus-desktop lock: a whole number of seconds,
	// at least lock.MinLease; zero means DefaultLease.
	Lease time.Duration
	// NoSync turns off the journal's fsync (benchmarks only).
	NoSync bool
	// Fault, when set, is called at each FaultPoint (tests crash there).
	Fault func(FaultPoint)
	// Logger; nil means no logs.
	Logger *zap.Logger
	// Observer, when set, hears how long the service waited for the lock
	// and held it (metrics).
	Observer Observer
	// Grace is the countdown the user is given before a mandatory job runs
	// at the desktop, before a job the user may defer runs (the service
	// waits it once the job is due, so that the desktop can offer the
	// deferral), and before the machine restarts for a job; zero means
	// DefaultGrace. Give both faces of a client the same.
	Grace time.Duration
	// Clock is the time of the time rules (when a job is due, a deferral
	// or a grace ends, a window opens, a restart comes); default the
	// system's; a desktop session's presence beats follow it too. Tests
	// give a faster one; timeouts, leases and acks stay real time.
	Clock Clock
	// Restart configures how the service restarts the machine for a job
	// that asked for it.
	Restart RestartConfig
	// TrustedKeys are the public keys (nkeys user or account keys, "U..."
	// or "A...") of the publishers whose signed offers and cancellations
	// this client accepts; several at once for a key rotation. When set,
	// every job event is verified before anything else, and an unsigned,
	// badly signed or otherwise signed one is never acted on. Empty runs
	// unsigned jobs (the open default), with a warning at start.
	TrustedKeys []string
	// Channel is the release channel this agent follows (pcm release
	// push --channel); empty: it never updates itself.
	Channel string
	// ReleaseKeys are the public keys whose signed release manifests this
	// agent installs; required with Channel.
	ReleaseKeys []string
	// ControllerKeys are the public keys of the rollout controllers whose
	// signed halts this client accepts, besides the TrustedKeys': a
	// controller's key may halt a staged rollout, never resume one nor
	// start anything.
	ControllerKeys []string
}

func (c *Config) setDefaults() {
	if c.Host == "" {
		c.Host, _ = os.Hostname()
	}
	if c.OS == "" {
		c.OS = runtime.GOOS
	}
	if c.Arch == "" {
		c.Arch = runtime.GOARCH
	}
	if c.Version == "" {
		c.Version = "dev"
	}
	if c.Runner == nil {
		c.Runner = runner.NewExec()
	}
	if c.Heartbeat <= 0 {
		c.Heartbeat = DefaultHeartbeat
	}
	if c.Lease == 0 {
		c.Lease = DefaultLease
	}
	if c.CacheSize == 0 {
		c.CacheSize = pkgcache.DefaultMaxBytes
	}
	if c.PackageRetryFor <= 0 {
		c.PackageRetryFor = DefaultPackageRetryFor
	}
	if c.Logger == nil {
		c.Logger = zap.NewNop()
	}
	if c.Grace == 0 {
		c.Grace = DefaultGrace
	}
	if c.Clock == nil {
		c.Clock = clock.System
	}
	c.Restart.setDefaults(c.OS)
}

// Validate checks the configuration, every rule of the lease and the lock
// included, so that a bad value fails at start, never in a retry loop.
// Each error wraps ErrInvalidConfig and names the flag to change.
func (c Config) Validate() error {
	if err := events.ValidID("client id", c.ClientID); err != nil {
		return fmt.Errorf("%w: %w (set --client-id)", ErrInvalidConfig, err)
	}
	for _, g := range c.Groups {
		if err := events.ValidID("group", g); err != nil {
			return fmt.Errorf("%w: %w", ErrInvalidConfig, err)
		}
	}
	if c.StateDir == "" {
		return fmt.Errorf("%w: state dir is empty: set --state-dir", ErrInvalidConfig)
	}
	if err := c.lockConfig().Validate(); err != nil {
		return fmt.Errorf("%w: --lease %s: %w", ErrInvalidConfig, c.Lease, err)
	}
	if c.CacheSize < 0 {
		return fmt.Errorf("%w: cache size %d is negative: set --cache-size to a size such as 2GiB", ErrInvalidConfig, c.CacheSize)
	}
	if err := events.ValidateTrustedKeys(c.TrustedKeys); err != nil {
		return fmt.Errorf("%w: %w (set --trusted-keys)", ErrInvalidConfig, err)
	}
	if c.Channel != "" {
		if err := events.ValidID("channel", c.Channel); err != nil {
			return fmt.Errorf("%w: %w (set --channel)", ErrInvalidConfig, err)
		}
		if len(c.ReleaseKeys) == 0 {
			return fmt.Errorf("%w: --channel %s without --release-keys: an agent installs only releases signed by a key it trusts", ErrInvalidConfig, c.Channel)
		}
	}
	if err := events.ValidateTrustedKeys(c.ReleaseKeys); err != nil {
		return fmt.Errorf("%w: %w (set --release-keys)", ErrInvalidConfig, err)
	}
	if err := events.ValidateTrustedKeys(c.ControllerKeys); err != nil {
		return fmt.Errorf("%w: %w (set --controller-keys)", ErrInvalidConfig, err)
	}
	if c.Grace < 0 {
		return fmt.Errorf("%w: --grace %s is negative: give the countdown before a mandatory job runs, such as 5m", ErrInvalidConfig, c.Grace)
	}
	return nil
}

// Clock is the time of the time rules (see Config.Clock): internal/clock's
// System, or a Scaled clock in tests.
type Clock = clock.Clock

// lockConfig is the configuration of the client's lock.
func (c Config) lockConfig() lock.Config {
	return lock.Config{Client: c.ClientID, Lease: c.Lease, Logger: c.Logger}
}

// Platform is os/arch.
func (c Config) Platform() string { return c.OS + "/" + c.Arch }
