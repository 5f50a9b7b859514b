package broker

import (
	"cmp"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/pcm-project/pcm/broker/auth"
	"github.com/pcm-project/pcm/events"
)

// HubLink makes a broker a branch site: a NATS leaf node of the hub, with
// its own JetStream domain (Config.Domain), that keeps serving its agents
// while the link is down (docs/sites.md).
type HubLink struct {
	// URL is the hub's leaf node address, nats-leaf://host:port (the
	// hub's --leaf-listen); for a hub cluster, the addresses of several
	// members, comma-separated: the site dials one, then another when the
	// link drops.
	URL string
	// Reconnect is how soon the site dials the hub again after the link
	// drops. Default DefaultHubReconnect.
	Reconnect time.Duration
	// Credentials is the credentials file of the site's leaf connection
	// (pcm creds site NAME): a user of the site's own account at the hub,
	// which reads the hub's PCM_JOBS and package store and nothing else
	// (docs/security.md). Required when the hub runs with authentication;
	// on the site, the connection is then bound to the pcm account.
	Credentials string
}

// SiteLocalSubjects are the subjects that never cross the link between a
// site and its hub, either way: a site's statuses reach the hub only through
// the hub's PCM_STATUS sourcing the site's (once, in order, with their
// ids), and the hub's offers reach the site only through the site's PCM_JOBS
// sourcing the hub's. Without these denials the hub's streams would also
// capture the site's publishes directly (their subscriptions reach across
// a leaf connection). Object stores ($O.>) are denied too: nats-server
// denies $JS.API, $KV and $OBJ across a link between two JetStream
// domains, but object stores publish on $O, so the site's PCM_PACKAGES
// would otherwise store every package pushed at the hub, and the pushes
// would get two answers. The site's package cache (package site) fetches
// what its jobs use through the hub's JetStream API instead.
func SiteLocalSubjects() []string {
	return []string{events.SubjectJobsAllStreams, events.SubjectStatusAllStreams, objectStoreSubjects}
}

// objectStoreSubjects match every object store's chunks and metadata.
const objectStoreSubjects = "$O.>"

// validDomain checks a JetStream domain name: one subject token.
func validDomain(d string) bool {
	return events.ValidID("JetStream domain", d) == nil
}

// validateLeaf checks Domain, LeafListen and Hub.
func (c Config) validateLeaf() error {
	if c.Domain != "" && !validDomain(c.Domain) {
		return fmt.Errorf("%w: Config.Domain %q: use 1 to 64 of A-Z a-z 0-9 _ -", ErrInvalidConfig, c.Domain)
	}
	if c.LeafListen != "" {
		if _, _, err := parseHostPort(c.LeafListen); err != nil {
			return fmt.Errorf("%w: %w: Config.LeafListen %q: %v", ErrInvalidConfig, ErrInvalidListen, c.LeafListen, err)
		}
		if c.Domain == "" {
			return fmt.Errorf("%w: %w: Config.LeafListen needs Config.Domain: sites address the hub's JetStream by its domain", ErrInvalidConfig, ErrInvalidSite)
		}
	}
	if c.Relays && (c.LeafListen == "" || c.Auth != nil || c.Hub != nil) {
		return fmt.Errorf("%w: %w: Config.Relays needs Config.LeafListen, on an open broker that is not a site", ErrInvalidConfig, ErrInvalidSite)
	}
	if c.Hub == nil {
		return nil
	}
	if c.Domain == "" {
		return fmt.Errorf("%w: %w: a site (Config.Hub) needs its own JetStream domain, Config.Domain: use the site's name", ErrInvalidConfig, ErrInvalidSite)
	}
	if c.Auth != nil && c.Hub.Credentials == "" {
		return fmt.Errorf("%w: %w: an authenticated site broker needs Config.Hub.Credentials, its leaf connection's credentials (pcm creds site NAME at the hub)", ErrInvalidConfig, ErrSiteAuth)
	}
	if c.Hub.Credentials != "" {
		if _, err := auth.CredsUser(c.Hub.Credentials); err != nil {
			return fmt.Errorf("%w: %w: Config.Hub.Credentials: %w", ErrInvalidConfig, ErrSiteAuth, err)
		}
	}
	if c.Cluster.enabled() {
		return fmt.Errorf("%w: %w: a site broker is a single node", ErrInvalidConfig, ErrInvalidSite)
	}
	if c.Hub.Reconnect < 0 {
		return fmt.Errorf("%w: %w: Config.Hub.Reconnect %s is negative", ErrInvalidConfig, ErrInvalidSite, c.Hub.Reconnect)
	}
	if _, err := parseLeafURLs(c.Hub.URL); err != nil {
		return fmt.Errorf("%w: %w: Config.Hub.URL: %v", ErrInvalidConfig, ErrInvalidSite, err)
	}
	return nil
}

// parseLeafURLs parses the comma-separated leaf URLs of a hub.
func parseLeafURLs(s string) ([]*url.URL, error) {
	var out []*url.URL
	for part := range strings.SplitSeq(s, ",") {
		u, err := parseLeafURL(part)
		if err != nil {
			return nil, err
		}
		out = append(out, u)
	}
	return out, nil
}

// parseLeafURL parses the hub's leaf node URL.
func parseLeafURL(s string) (*url.URL, error) {
	u, err := url.Parse(strings.TrimSpace(s))
	if err != nil {
		return nil, fmt.Errorf("%q: %v: write it like nats-leaf://hub.example:7422", s, err)
	}
	switch u.Scheme {
	case "nats-leaf", "nats", "tls":
	default:
		return nil, fmt.Errorf("%q: scheme %q: use nats-leaf://host:port", s, u.Scheme)
	}
	if u.Hostname() == "" || u.Port() == "" {
		return nil, fmt.Errorf("%q has no host:port: write it like nats-leaf://hub.example:7422", s)
	}
	return u, nil
}

// DefaultHubReconnect is HubLink.Reconnect's default (nats-server's).
const DefaultHubReconnect = time.Second

// applyLeaf sets the JetStream domain, the leaf node listener of a hub and
// the remote of a site.
func applyLeaf(cfg Config, opts *server.Options) error {
	opts.JetStreamDomain = cfg.Domain
	if cfg.LeafListen != "" {
		host, port, _ := parseHostPort(cfg.LeafListen)
		if port == -1 {
			p, err := freePort(host)
			if err != nil {
				return fmt.Errorf("%w: Config.LeafListen %q: %v", ErrInvalidConfig, cfg.LeafListen, err)
			}
			port = p
		}
		opts.LeafNode.Host, opts.LeafNode.Port = host, port
		// Sites dial the address they are given (a proxy, a NAT):
		// never the hub's own listener addresses.
		opts.LeafNode.NoAdvertise = true
		if cfg.Relays {
			// nats-server otherwise denies JetStream's API and $KV to
			// a leaf node of another (here: no) domain.
			opts.JsAccDefaultDomain = map[string]string{server.DEFAULT_GLOBAL_ACCOUNT: ""}
		}
	}
	if cfg.Hub != nil {
		urls, err := parseLeafURLs(cfg.Hub.URL)
		if err != nil {
			return fmt.Errorf("%w: %w: Config.Hub.URL: %v", ErrInvalidConfig, ErrInvalidSite, err)
		}
		deny := SiteLocalSubjects()
		// On an authenticated site the link joins the site's pcm account
		// to the site's own account at the hub, which its credentials
		// belong to.
		opts.LeafNode.Remotes = []*server.RemoteLeafOpts{{URLs: urls, DenyImports: deny, DenyExports: deny,
			Credentials: cfg.Hub.Credentials, LocalAccount: cfg.AuthAccount()}}
		opts.LeafNode.ReconnectInterval = cmp.Or(cfg.Hub.Reconnect, DefaultHubReconnect)
	}
	return nil
}

// freePort finds a free TCP port on host (nats-server has no getter for
// the port it picks for a leaf node listener).
func freePort(host string) (int, error) {
	l, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// LeafURL is the nats-leaf://host:port sites connect to; empty when
// Config.LeafListen is empty.
func (b *Broker) LeafURL() string {
	if b.leafPort == 0 {
		return ""
	}
	host := b.leafHost
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "127.0.0.1"
	}
	return "nats-leaf://" + net.JoinHostPort(host, strconv.Itoa(b.leafPort))
}

// HubConnected reports whether a site broker's leaf connection to its hub
// is up.
func (b *Broker) HubConnected() bool { return b.srv.NumLeafNodes() > 0 }

// SiteLinked reports whether a leaf connection of the branch site whose
// account at this (authenticated) hub is account is up on this broker.
func (b *Broker) SiteLinked(account string) bool {
	lz, err := b.srv.Leafz(&server.LeafzOptions{Account: account})
	return err == nil && len(lz.Leafs) > 0
}

// ServeSiteProbes answers, on nc (an in-process admin connection of an
// authenticated hub), the requests on events.SiteProbeSubject of a site
// whose leaf connection is up on this broker, and says nothing for the
// others: the asker's timeout means unreachable. Only the members that
// serve probes answer: those that run the broker's services (which have
// the issuer file); in a cluster, a site linked to a member without it
// does not answer, and seems unreachable. It is how the hub's views tell a
// site's reachability when the pcm account cannot reach the site's
// JetStream (docs/sites.md). Only the pcm account's users (admins) can ask:
// no other account imports the subject, and the answer says nothing but
// "up". Unsubscribe the subscription to stop.
func (b *Broker) ServeSiteProbes(nc *nats.Conn, iss *auth.Issuer) (*nats.Subscription, error) {
	return nc.Subscribe(events.SiteProbeSubject("*"), func(m *nats.Msg) {
		tokens := strings.Split(m.Subject, ".") // pcm.admin.site.<site>.reachable
		if len(tokens) != 5 {
			return
		}
		acct, err := iss.AccountOf(auth.Principal{Kind: auth.KindSite, Name: tokens[3]})
		if err != nil || !b.SiteLinked(acct) {
			return
		}
		_ = m.Respond([]byte("up"))
	})
}
