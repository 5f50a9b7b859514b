package broker

import (
	"fmt"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"
	"unicode"

	"go.uber.org/zap"

	"github.com/pcm-project/pcm/broker/auth"
)

// Defaults applied by Config when a field is left zero.
const (
	// DefaultListen is the client address of a broker whose Config.Listen is empty.
	DefaultListen = "127.0.0.1:4222"
	// DefaultStartTimeout bounds Start when its context has no deadline.
	DefaultStartTimeout = 30 * time.Second
	// MaxPayloadLimit is the largest Config.MaxPayload accepted (64 MiB, the
	// hard limit of nats-server).
	MaxPayloadLimit = 64 << 20
)

// Config configures an embedded broker. The zero value of every field but
// StoreDir is usable; New applies the defaults documented on each field.
// New fields (authentication, TLS, ...) are added as further fields so that
// existing configurations keep working.
type Config struct {
	// StoreDir is the JetStream store directory. Required. The same
	// directory given to a new Broker recovers every stream and bucket.
	StoreDir string
	// Listen is the host:port clients connect to. Default DefaultListen.
	// Port -1 (or 0) picks a free port; ClientURL tells which.
	Listen string
	// ServerName names this server; it must be unique within a cluster and
	// stay the same across restarts of a cluster member. Default
	// "pcm-<hostname>".
	ServerName string
	// MonitorListen is the host:port of nats-server's HTTP monitoring
	// endpoint (/varz, /jsz, ...). Empty disables it. Port -1 (or 0) picks
	// a free port; MonitorURL tells which.
	MonitorListen string
	// Cluster makes the broker a member of a JetStream cluster. Leave it
	// zero for a single node.
	Cluster ClusterConfig
	// MaxPayload is the largest message the server accepts, in bytes.
	// Zero keeps nats-server's default (1 MiB); at most MaxPayloadLimit.
	MaxPayload int32
	// MaxStore and MaxMemory limit JetStream file and memory storage, in
	// bytes. Zero lets nats-server size them from the disk and the RAM.
	MaxStore, MaxMemory int64
	// DefaultMaxConsumersPerStream is the consumer limit of a stream that
	// sets none itself, such as the KV buckets' streams. Zero means
	// unlimited (nats-server's own default is 1,000); a positive value
	// sets the limit.
	DefaultMaxConsumersPerStream int
	// StartTimeout bounds Start when its context has no deadline. Default
	// DefaultStartTimeout.
	StartTimeout time.Duration
	// Auth, when set, turns on decentralized authentication: the broker
	// trusts the operator of auth.Trust and keeps account JWTs in a full
	// NATS resolver under StoreDir (ResolverDir), preloaded with the system
	// and pcm accounts; the principals' accounts are pushed to it at
	// enrollment (package fleet), without a restart, and reach every member
	// of a cluster. It accepts only users of those accounts, with their
	// permissions (package auth). Nil: an open broker, where any client may
	// do anything (keep it on loopback).
	Auth *auth.Trust
	// TLS turns on TLS for client connections and cluster routes.
	TLS TLSConfig
	// Domain is the broker's JetStream domain. A hub that serves sites and
	// every site need one (a site's is its name): each addresses the
	// other's JetStream as $JS.<domain>.API. Empty: none.
	Domain string
	// LeafListen is the host:port where site brokers (NATS leaf nodes)
	// connect to this hub. Empty: no sites. Port -1 (or 0) picks a free
	// port; LeafURL tells which. It needs Domain.
	LeafListen string
	// Relays lets leaf nodes without JetStream connect to LeafListen and
	// carry clients to this broker, which use its JetStream by the plain
	// API ($JS.API, $KV) as if connected to it: connection concentrators
	// for more clients than one process has descriptors (the fan-out
	// benchmark's 20,000 agents). Open brokers only, and not beside sites
	// (a site's own JetStream would answer its clients' requests too).
	Relays bool
	// Hub, when set, makes this broker a branch site connected to the hub
	// as a leaf node (HubLink). It needs Domain.
	Hub *HubLink
	// FeatureFlags are nats-server feature flags (such as js_ack_fc_v2, the
	// v2 ack subject format), for tests and early adoption.
	FeatureFlags map[string]bool
	// Logger receives the broker's and nats-server's logs. Nil discards
	// them. nats-server debug logs are enabled when the logger's level
	// enables debug; trace logs never are.
	Logger *zap.Logger
}

// ClusterConfig makes a broker a member of a JetStream cluster. Name and
// Listen are required when any field is set, and Routes must list at least
// one other member (nats-server refuses a JetStream cluster without routes).
type ClusterConfig struct {
	// Name is the cluster name, the same on every member.
	Name string
	// Listen is the host:port other members connect to. Port -1 (or 0)
	// picks a free port; ClusterURL tells which.
	Listen string
	// Routes are the nats-route://host:port URLs of the other members
	// (listing this member's own URL too is harmless).
	Routes []string
}

// enabled reports whether any cluster setting is present.
func (c ClusterConfig) enabled() bool {
	return c.Name != "" || c.Listen != "" || len(c.Routes) > 0
}

// setDefaults fills in the zero fields.
func (c *Config) setDefaults() {
	if c.Listen == "" {
		c.Listen = DefaultListen
	}
	if c.ServerName == "" {
		c.ServerName = defaultServerName()
	}
	if c.StartTimeout == 0 {
		c.StartTimeout = DefaultStartTimeout
	}
}

// defaultServerName derives a server name from the host name.
func defaultServerName() string {
	host, err := os.Hostname()
	if err != nil || host == "" {
		return "pcm-broker"
	}
	if i := strings.IndexByte(host, '.'); i > 0 {
		host = host[:i]
	}
	host = strings.Map(func(r rune) rune {
		if unicode.IsSpace(r) {
			return '-'
		}
		return r
	}, host)
	return "pcm-" + host
}

// Validate checks the configuration as New would use it, that is with the
// defaults applied. Every error wraps ErrInvalidConfig and names the field.
func (c Config) Validate() error {
	c.setDefaults()
	if strings.TrimSpace(c.StoreDir) == "" {
		return fmt.Errorf("%w: Config.StoreDir is empty: set the directory JetStream keeps its data in", ErrInvalidConfig)
	}
	if _, _, err := parseHostPort(c.Listen); err != nil {
		return fmt.Errorf("%w: %w: Config.Listen %q: %v", ErrInvalidConfig, ErrInvalidListen, c.Listen, err)
	}
	if strings.IndexFunc(c.ServerName, unicode.IsSpace) >= 0 {
		return fmt.Errorf("%w: Config.ServerName %q contains white space: use a single word such as pcm-broker-1", ErrInvalidConfig, c.ServerName)
	}
	if c.MonitorListen != "" {
		if _, _, err := parseHostPort(c.MonitorListen); err != nil {
			return fmt.Errorf("%w: %w: Config.MonitorListen %q: %v", ErrInvalidConfig, ErrInvalidListen, c.MonitorListen, err)
		}
	}
	if c.MaxPayload < 0 || c.MaxPayload > MaxPayloadLimit {
		return fmt.Errorf("%w: Config.MaxPayload %d is out of range: use 0 (nats-server default, 1 MiB) up to %d", ErrInvalidConfig, c.MaxPayload, MaxPayloadLimit)
	}
	if c.MaxStore < 0 || c.MaxMemory < 0 {
		return fmt.Errorf("%w: Config.MaxStore (%d) and Config.MaxMemory (%d) may not be negative: use 0 for automatic sizing", ErrInvalidConfig, c.MaxStore, c.MaxMemory)
	}
	if c.DefaultMaxConsumersPerStream < 0 {
		return fmt.Errorf("%w: Config.DefaultMaxConsumersPerStream %d is negative: use 0 for unlimited or a positive limit", ErrInvalidConfig, c.DefaultMaxConsumersPerStream)
	}
	if c.StartTimeout < 0 {
		return fmt.Errorf("%w: Config.StartTimeout %s is negative", ErrInvalidConfig, c.StartTimeout)
	}
	if err := c.validateLeaf(); err != nil {
		return err
	}
	if err := c.TLS.validate(c.Cluster.enabled()); err != nil {
		return err
	}
	if c.Auth != nil {
		if _, err := c.Auth.System(); err != nil {
			return fmt.Errorf("%w: Config.Auth: %w", ErrInvalidConfig, err)
		}
	}
	return c.Cluster.validate()
}

// validate checks the cluster settings.
func (c ClusterConfig) validate() error {
	if !c.enabled() {
		return nil
	}
	if c.Name == "" {
		return fmt.Errorf("%w: %w: Config.Cluster.Name is empty: give every member the same cluster name", ErrInvalidConfig, ErrInvalidCluster)
	}
	if strings.IndexFunc(c.Name, unicode.IsSpace) >= 0 {
		return fmt.Errorf("%w: %w: Config.Cluster.Name %q contains white space", ErrInvalidConfig, ErrInvalidCluster, c.Name)
	}
	if c.Listen == "" {
		return fmt.Errorf("%w: %w: Config.Cluster.Listen is empty: set the host:port other members connect to", ErrInvalidConfig, ErrInvalidCluster)
	}
	if _, _, err := parseHostPort(c.Listen); err != nil {
		return fmt.Errorf("%w: %w: %w: Config.Cluster.Listen %q: %v", ErrInvalidConfig, ErrInvalidCluster, ErrInvalidListen, c.Listen, err)
	}
	if len(c.Routes) == 0 {
		return fmt.Errorf("%w: %w: Config.Cluster.Routes is empty: list the nats-route://host:port URLs of the other members (JetStream clustering needs them)", ErrInvalidConfig, ErrInvalidCluster)
	}
	if _, err := parseRoutes(c.Routes); err != nil {
		return fmt.Errorf("%w: %w: Config.Cluster.Routes: %v", ErrInvalidConfig, ErrInvalidCluster, err)
	}
	return nil
}

// parseHostPort splits a host:port and maps port 0 to -1 (nats-server's
// "pick a free port"; its port 0 means "the default port").
func parseHostPort(hp string) (string, int, error) {
	host, ps, err := net.SplitHostPort(hp)
	if err != nil {
		return "", 0, fmt.Errorf("not a host:port (%v): write it like 127.0.0.1:4222, with port -1 for any free port", err)
	}
	port, err := strconv.Atoi(ps)
	if err != nil || port < -1 || port > 65535 {
		return "", 0, fmt.Errorf("port %q is not a number from -1 to 65535 (-1 or 0 picks a free port)", ps)
	}
	if port == 0 {
		port = -1
	}
	return host, port, nil
}

// parseRoutes parses cluster route URLs.
func parseRoutes(routes []string) ([]*url.URL, error) {
	out := make([]*url.URL, 0, len(routes))
	for _, r := range routes {
		u, err := url.Parse(r)
		if err != nil {
			return nil, fmt.Errorf("route %q: %v: write it like nats-route://10.0.0.2:6222", r, err)
		}
		if u.Scheme != "nats-route" && u.Scheme != "nats" {
			return nil, fmt.Errorf("route %q: scheme %q: use nats-route://host:port", r, u.Scheme)
		}
		if u.Hostname() == "" || u.Port() == "" {
			return nil, fmt.Errorf("route %q has no host:port: write it like nats-route://10.0.0.2:6222", r)
		}
		out = append(out, u)
	}
	return out, nil
}
