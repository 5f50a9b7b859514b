package integration_test

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/pcm-project/pcm/broker/auth"
	"github.com/pcm-project/pcm/testenv"
)

// natsServerBuild is the nats-server binary of go.mod's version, built once
// per test run next to the pcm binary (and removed with it).
var natsServerBuild struct {
	once      sync.Once
	path, why string
}

// natsServerBinary builds nats-server from the module go.mod pins and
// returns its path; it skips the test when it cannot be built here.
func natsServerBinary(t testing.TB) string {
	t.Helper()
	natsServerBuild.once.Do(func() {
		path := filepath.Join(filepath.Dir(pcmBinary), "nats-server")
		cmd := exec.Command("go", "build", "-o", path, "github.com/nats-io/nats-server/v2")
		cmd.Dir = ".."
		if out, err := cmd.CombinedOutput(); err != nil {
			natsServerBuild.why = fmt.Sprintf("building nats-server from the module: %v: %s", err, out)
			return
		}
		natsServerBuild.path = path
	})
	if natsServerBuild.path == "" {
		t.Skip(natsServerBuild.why)
	}
	return natsServerBuild.path
}

// stockNode is one nats-server process of a stockCluster.
type stockNode struct {
	name                string
	client, route, http int
	conf, dir, logf     string
	jetstream           bool
	// rewrite, when set, changes the member's configuration further
	// (set by startStockClusterFrom's prepare).
	rewrite func(conf string) string
	// args, when set, is the member's command line (default: -c conf).
	args []string

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{}
	paused bool
}

// url is the member's client URL.
func (n *stockNode) url() string { return fmt.Sprintf("nats://127.0.0.1:%d", n.client) }

// stockCluster is a cluster of separate nats-server processes on loopback,
// configured from docs/examples/stock-cluster (ports and directories
// rewritten for the test), killed at cleanup.
type stockCluster struct {
	t     testing.TB
	bin   string
	nodes []*stockNode
}

// stockExample reads the example configuration of member i (1-based) in
// docs/examples/<example>.
func stockExample(t testing.TB, example string, i int) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "docs", "examples", example, fmt.Sprintf("nats-%d.conf", i)))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// replaceOnce replaces old by new in s, failing the test unless old occurs
// exactly once: the example files must keep the form the test rewrites.
func replaceOnce(t testing.TB, s, old, new string) string {
	t.Helper()
	if n := strings.Count(s, old); n != 1 {
		t.Fatalf("docs/examples/stock-cluster: %q occurs %d times, want once", old, n)
	}
	return strings.Replace(s, old, new, 1)
}

// startStockCluster starts the three members of docs/examples/stock-cluster
// and, with extra, as many more members without JetStream (they hold no
// replica of anything), and waits until JetStream has a meta leader.
func startStockCluster(t *testing.T, bin string, extra int) *stockCluster {
	t.Helper()
	return startStockClusterFrom(t, bin, "stock-cluster", extra, nil)
}

// startStockClusterFrom starts the members of docs/examples/<example>;
// prepare, when set, puts what a member's configuration refers to into its
// directory (its auth.conf, its tls/ files).
func startStockClusterFrom(t *testing.T, bin, example string, extra int, prepare func(n *stockNode)) *stockCluster {
	t.Helper()
	c := &stockCluster{t: t, bin: bin}
	ports := testenv.FreePorts(t, 3*(3+extra))
	for i := range 3 + extra {
		c.nodes = append(c.nodes, &stockNode{name: fmt.Sprintf("nats-%d", i+1), client: ports[3*i], route: ports[3*i+1], http: ports[3*i+2],
			dir: t.TempDir(), jetstream: i < 3})
	}
	for i, n := range c.nodes {
		conf := stockExample(t, example, min(i+1, 3))
		conf = replaceOnce(t, conf, "server_name: nats-"+fmt.Sprint(min(i+1, 3)), "server_name: "+n.name)
		conf = replaceOnce(t, conf, "listen: 0.0.0.0:4222", fmt.Sprintf("listen: 127.0.0.1:%d", n.client))
		conf = replaceOnce(t, conf, "http: 0.0.0.0:8222", fmt.Sprintf("http: 127.0.0.1:%d", n.http))
		conf = replaceOnce(t, conf, "store_dir: /var/lib/nats", fmt.Sprintf("store_dir: %q", filepath.Join(n.dir, "jetstream")))
		conf = replaceOnce(t, conf, "listen: 0.0.0.0:6222", fmt.Sprintf("listen: 127.0.0.1:%d", n.route))
		for j, o := range c.nodes[:3] {
			conf = replaceOnce(t, conf, fmt.Sprintf("nats-route://nats-%d:6222", j+1), fmt.Sprintf("nats-route://127.0.0.1:%d", o.route))
		}
		if !n.jetstream {
			re := regexp.MustCompile(`(?s)\njetstream \{.*?\n\}\n`)
			if len(re.FindAllString(conf, -1)) != 1 {
				t.Fatal("docs/examples/stock-cluster: no single jetstream { } block to remove")
			}
			conf = re.ReplaceAllString(conf, "\n")
		}
		if prepare != nil {
			prepare(n)
		}
		if n.rewrite != nil {
			conf = n.rewrite(conf)
		}
		n.conf = filepath.Join(n.dir, n.name+".conf")
		n.logf = filepath.Join(n.dir, n.name+".log")
		if err := os.WriteFile(n.conf, []byte(conf), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(c.stopAll)
	for i := range c.nodes {
		c.start(i)
	}
	c.waitHealthy(t)
	return c
}

// start runs member i's nats-server.
func (c *stockCluster) start(i int) {
	n := c.nodes[i]
	f, err := os.OpenFile(n.logf, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		c.t.Fatal(err)
	}
	args := n.args
	if args == nil {
		args = []string{"-c", n.conf}
	}
	cmd := exec.Command(c.bin, args...)
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		c.t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); f.Close(); close(exited) }()
	n.mu.Lock()
	n.cmd, n.exited, n.paused = cmd, exited, false
	n.mu.Unlock()
}

// signal sends sig to member i's process.
func (c *stockCluster) signal(i int, sig syscall.Signal) {
	n := c.nodes[i]
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.cmd != nil {
		_ = n.cmd.Process.Signal(sig)
		n.paused = sig == syscall.SIGSTOP
	}
}

// kill ends member i with SIGKILL (no graceful shutdown) and waits for it.
func (c *stockCluster) kill(i int) {
	n := c.nodes[i]
	c.signal(i, syscall.SIGCONT)
	c.signal(i, syscall.SIGKILL)
	n.mu.Lock()
	exited := n.exited
	n.cmd = nil
	n.mu.Unlock()
	if exited != nil {
		<-exited
	}
}

// pause stops member i with SIGSTOP; resume lets it go on.
func (c *stockCluster) pause(i int)  { c.signal(i, syscall.SIGSTOP) }
func (c *stockCluster) resume(i int) { c.signal(i, syscall.SIGCONT) }

// stopAll kills every member; on failure it shows the end of their logs.
func (c *stockCluster) stopAll() {
	for i := range c.nodes {
		c.kill(i)
	}
	if c.t.Failed() {
		for _, n := range c.nodes {
			b, _ := os.ReadFile(n.logf)
			c.t.Logf("log of %s:\n%s", n.name, tail(string(b), 3000))
		}
	}
}

// urls are the client URLs of the JetStream members, comma-separated.
func (c *stockCluster) urls() string {
	var out []string
	for _, n := range c.nodes {
		if n.jetstream {
			out = append(out, n.url())
		}
	}
	return strings.Join(out, ",")
}

// index is the member named name, -1 for none.
func (c *stockCluster) index(name string) int {
	for i, n := range c.nodes {
		if n.name == name {
			return i
		}
	}
	return -1
}

// waitHealthy waits until every running member's /healthz answers 200
// (JetStream members: once JetStream has a meta leader and they are
// current).
func (c *stockCluster) waitHealthy(t testing.TB) {
	t.Helper()
	for _, n := range c.nodes {
		n.mu.Lock()
		running := n.cmd != nil
		n.mu.Unlock()
		if !running {
			continue
		}
		testenv.WaitFor(t, 60*time.Second, n.name+"'s /healthz", func() bool {
			resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/healthz", n.http))
			if err != nil {
				return false
			}
			resp.Body.Close()
			return resp.StatusCode == http.StatusOK
		})
	}
}

// connect opens a connection to urls that reconnects for ever, closed at
// cleanup.
func (c *stockCluster) connect(t testing.TB, urls string, opts ...nats.Option) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	nc, err := nats.Connect(urls, append([]nats.Option{nats.MaxReconnects(-1), nats.ReconnectWait(100 * time.Millisecond)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return nc, js
}

// waitRefused waits until every member refuses the credentials creds
// (revoked), connecting over TLS with the CA ca.
func (c *stockCluster) waitRefused(t testing.TB, creds, ca string) {
	t.Helper()
	opts, err := auth.ClientConfig{CredsFile: creds, CAFile: ca}.Options()
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range c.nodes {
		testenv.WaitFor(t, 10*time.Second, n.name+" refusing the revoked credentials "+filepath.Base(creds), func() bool {
			nc, err := nats.Connect(n.url(), append(opts, nats.Timeout(2*time.Second), nats.NoReconnect())...)
			if err == nil {
				nc.Close()
				return false
			}
			return true
		})
	}
}

// leader waits until stream has a leader and returns its member index.
func (c *stockCluster) leader(t testing.TB, js jetstream.JetStream, stream string) int {
	t.Helper()
	leader := -1
	testenv.WaitFor(t, 60*time.Second, "a leader of "+stream, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		s, err := js.Stream(ctx, stream)
		if err != nil || s.CachedInfo().Cluster == nil {
			return false
		}
		leader = c.index(s.CachedInfo().Cluster.Leader)
		return leader >= 0
	})
	return leader
}
