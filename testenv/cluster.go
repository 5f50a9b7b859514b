package testenv

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/pcm-project/pcm/broker"
	"github.com/pcm-project/pcm/events"
)

// clusterTimeout bounds the waits for leaders in a cluster.
const clusterTimeout = 30 * time.Second

// Cluster is an n-node JetStream cluster on loopback, provisioned with
// min(n, 3) replicas unless WithProvisionOptions says otherwise, cleaned up by
// t.Cleanup.
type Cluster struct {
	// Sec is the authentication and TLS material shared by every member
	// (WithAuth, WithTLS, or the secure test mode); nil for an open
	// cluster. Connect uses its admin credentials.
	Sec *Security

	name string
	opts options

	mu    sync.Mutex
	nodes []*clusterNode
}

// clusterNode is one member: its configuration (ports pinned after the
// first start) and the running broker, nil while stopped.
type clusterNode struct {
	cfg broker.Config
	url string
	b   *broker.Broker
}

// StartCluster starts n (at least 2) brokers clustered on loopback, waits for
// the JetStream meta leader and, unless WithoutProvision, provisions the pcm
// resources and waits until each of their streams has a leader.
func StartCluster(t testing.TB, n int, opts ...Option) *Cluster {
	t.Helper()
	if n < 2 {
		t.Fatalf("testenv: StartCluster needs at least 2 nodes, got %d", n)
	}
	o := buildOptions(opts)
	c := &Cluster{name: "pcm-test-cluster", opts: o, Sec: newSecurity(t, o)}

	routePorts := FreePorts(t, n)
	routes := make([]string, n)
	for i, p := range routePorts {
		routes[i] = "nats-route://127.0.0.1:" + strconv.Itoa(p)
	}
	for i := range n {
		others := make([]string, 0, n-1)
		for j, r := range routes {
			if j != i {
				others = append(others, r)
			}
		}
		c.nodes = append(c.nodes, &clusterNode{cfg: broker.Config{
			StoreDir:   t.TempDir(),
			Listen:     "127.0.0.1:-1",
			ServerName: fmt.Sprintf("pcm-test-%d", i),
			Cluster: broker.ClusterConfig{
				Name:   c.name,
				Listen: "127.0.0.1:" + strconv.Itoa(routePorts[i]),
				Routes: others,
			},
			Logger: o.logger,
		}})
		c.Sec.apply(&c.nodes[i].cfg)
		c.nodes[i].cfg.FeatureFlags = o.flags
	}
	t.Cleanup(c.stopAll)
	for _, nd := range c.nodes {
		nd.b = startOne(t, nd.cfg)
		nd.url = nd.b.ClientURL()
		nd.cfg.Listen = "127.0.0.1:" + strconv.Itoa(portOf(t, nd.url))
	}
	register(t, c.Sec, c.URLs()...)
	c.WaitMetaLeader(t)

	if o.provision && !o.provisionSet {
		o.popts.Replicas = min(n, 3)
	}
	// What pcm broker runs, once for the cluster, through a connection to
	// any member; provisioning is tried again while the cluster settles.
	_, js := c.Connect(t)
	var svc *broker.Services
	err := Poll(clusterTimeout, pollInterval, func() (err error) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		svc, err = broker.StartServices(ctx, js, o.services())
		return err
	})
	if err != nil {
		t.Fatalf("testenv: starting the cluster's services: %v", err)
	}
	t.Cleanup(svc.Stop)
	if o.provision {
		// Provisioned means usable: every stream has elected its leader.
		for _, stream := range []string{events.StreamJobs, events.StreamStatus, "KV_" + events.BucketAgents, "KV_" + events.BucketLocks} {
			c.StreamLeader(t, stream)
		}
	}
	return c
}

// FreePorts finds n free loopback TCP ports (on 127.0.0.1). The route
// ports of a cluster must be known before the first member starts, since
// each lists the others.
func FreePorts(t testing.TB, n int) []int {
	t.Helper()
	ports := make([]int, 0, n)
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("testenv: finding a free port: %v", err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports
}

// URLs are the client URLs of the members, in member order.
func (c *Cluster) URLs() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	urls := make([]string, len(c.nodes))
	for i, nd := range c.nodes {
		urls[i] = nd.url
	}
	return urls
}

// Connect opens a connection that knows every member's URL (and reconnects
// to whichever is up), closed at cleanup.
func (c *Cluster) Connect(t testing.TB) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	nc, js := connect(t, t.Name(), c.URLs(), c.Sec.adminOptions(t)...)
	t.Cleanup(nc.Close)
	return nc, js
}

// ConnectTo opens a connection to member i only (it ignores the other
// members the cluster tells it of, and reconnects to member i alone),
// closed at cleanup: a client whose requests member i routes.
func (c *Cluster) ConnectTo(t testing.TB, i int) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	c.mu.Lock()
	url := c.nodes[i].url
	c.mu.Unlock()
	nc, js := connect(t, t.Name(), []string{url}, append(c.Sec.adminOptions(t), nats.IgnoreDiscoveredServers())...)
	t.Cleanup(nc.Close)
	return nc, js
}

// Member is the index of the member named name (as a stream's cluster
// info names its leader and replicas), -1 when none is.
func (c *Cluster) Member(name string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i, nd := range c.nodes {
		if nd.cfg.ServerName == name {
			return i
		}
	}
	return -1
}

// running returns the servers of the running members, by index.
func (c *Cluster) running() map[int]*server.Server {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := map[int]*server.Server{}
	for i, nd := range c.nodes {
		if nd.b != nil {
			out[i] = nd.b.Server()
		}
	}
	return out
}

// WaitMetaLeader waits until the running members have a JetStream meta
// leader that sees every running member, and every running member is
// current with it.
func (c *Cluster) WaitMetaLeader(t testing.TB) {
	t.Helper()
	WaitFor(t, clusterTimeout, "the JetStream meta leader", func() bool {
		srvs := c.running()
		var leader *server.Server
		for _, s := range srvs {
			if s.JetStreamIsLeader() {
				leader = s
			}
		}
		if leader == nil || len(leader.JetStreamClusterPeers()) < len(srvs) {
			return false
		}
		for _, s := range srvs {
			if !s.JetStreamIsCurrent() {
				return false
			}
		}
		return true
	})
}

// StreamLeader waits until a running member leads stream and returns its
// index.
func (c *Cluster) StreamLeader(t testing.TB, stream string) int {
	t.Helper()
	leader := -1
	WaitFor(t, clusterTimeout, "a leader of stream "+stream, func() bool {
		for i, s := range c.running() {
			if s.JetStreamIsStreamLeader(c.account(), stream) {
				leader = i
				return true
			}
		}
		return false
	})
	return leader
}

// Stop shuts member i down gracefully, keeping its store directory.
// Stopping a stopped member does nothing.
func (c *Cluster) Stop(i int) {
	c.mu.Lock()
	b := c.nodes[i].b
	c.nodes[i].b = nil
	c.mu.Unlock()
	if b != nil {
		b.Shutdown()
	}
}

// Restart stops member i if it is running and starts it again on the same
// client and route ports and store directory, then waits for the meta
// leader to see it.
func (c *Cluster) Restart(t testing.TB, i int) {
	t.Helper()
	c.Stop(i)
	c.mu.Lock()
	cfg := c.nodes[i].cfg
	c.mu.Unlock()
	b := startOne(t, cfg)
	c.mu.Lock()
	c.nodes[i].b = b
	c.mu.Unlock()
	c.WaitMetaLeader(t)
}

// stopAll shuts every member down, concurrently.
func (c *Cluster) stopAll() {
	var wg sync.WaitGroup
	for i := range c.nodes {
		wg.Go(func() { c.Stop(i) })
	}
	wg.Wait()
}

// Server is member i's running broker, nil while it is stopped.
func (c *Cluster) Server(i int) *broker.Broker {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.nodes[i].b
}

// account is the account holding pcm's streams: the pcm account with auth,
// nats-server's global account otherwise.
func (c *Cluster) account() string {
	if acc := c.nodes[0].cfg.AuthAccount(); acc != "" {
		return acc
	}
	return server.DEFAULT_GLOBAL_ACCOUNT
}
