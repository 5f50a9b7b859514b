package integration_test

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap/zaptest"

	"github.com/pcm-project/pcm/broker"
	"github.com/pcm-project/pcm/broker/auth"
	"github.com/pcm-project/pcm/events"
	"github.com/pcm-project/pcm/fleet"
	"github.com/pcm-project/pcm/packages"
	"github.com/pcm-project/pcm/site"
	"github.com/pcm-project/pcm/testenv"
)

// linkProxy stands for the WAN between a site and its hub: a TCP proxy
// in front of the hub's leaf port that can be cut (every connection
// closed, new ones refused) and restored. It counts the bytes it carries
// from the hub to the site.
type linkProxy struct {
	ln     net.Listener
	target string

	mu    sync.Mutex
	up    bool
	conns []net.Conn

	toSite atomic.Int64
}

func startLinkProxy(t testing.TB, target string) *linkProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &linkProxy{ln: ln, target: target, up: true}
	t.Cleanup(func() { ln.Close(); p.cut() })
	go p.accept()
	return p
}

// URL is the leaf URL the site dials.
func (p *linkProxy) URL() string { return "nats-leaf://" + p.ln.Addr().String() }

func (p *linkProxy) accept() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		up := p.up
		p.mu.Unlock()
		if !up {
			c.Close()
			continue
		}
		h, err := net.Dial("tcp", p.target)
		if err != nil {
			c.Close()
			continue
		}
		p.mu.Lock()
		p.conns = append(p.conns, c, h)
		p.mu.Unlock()
		go func() { io.Copy(h, c); h.Close(); c.Close() }()
		go func() { io.Copy(&countingWriter{w: c, n: &p.toSite}, h); h.Close(); c.Close() }()
	}
}

// cut closes every connection and refuses new ones until restore.
func (p *linkProxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.up = false
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
}

func (p *linkProxy) restore() {
	p.mu.Lock()
	p.up = true
	p.mu.Unlock()
}

type countingWriter struct {
	w io.Writer
	n *atomic.Int64
}

func (c *countingWriter) Write(b []byte) (int, error) {
	n, err := c.w.Write(b)
	c.n.Add(int64(n))
	return n, err
}

var (
	hubLeafLine  = regexp.MustCompile(`sites connect to (nats-leaf://\S+)$`)
	plainCLIEnv  = []string{"PCM_TLS_CA=", "PCM_TLS_CERT=", "PCM_TLS_KEY=", "PCM_CREDS=", "PCM_ISSUER="}
	siteName     = "branch"
	siteSources  = events.DomainAPI(siteName)
	siteLinkWait = 30 * time.Second
)

// siteSetup is a hub and a site broker in their own processes, the site
// linked to the hub through a linkProxy.
type siteSetup struct {
	dir             string
	hubURL, siteURL string
	hub, site       jetstream.JetStream
	link            *linkProxy
	siteArgs        []string
	hubMonitor      string // the hub's monitoring URL (single-node hubs)
	siteProc        *proc
}

// startSiteBroker starts the site's pcm broker process (again).
func (ss *siteSetup) startSiteBroker(t *testing.T) {
	t.Helper()
	ss.siteProc = startPCM(t, ss.dir, plainCLIEnv, ss.siteArgs...)
	ss.siteURL = ss.siteProc.stdout.waitLine(t, brokerReadyLine, 15*time.Second)[1]
}

// startSite starts the hub process, the proxy and the site process, and
// waits until the hub sources the site's statuses.
func startSite(t *testing.T) *siteSetup {
	t.Helper()
	dir := t.TempDir()
	monitor := freeAddr(t)
	h := startPCM(t, dir, plainCLIEnv, "broker", "--data", filepath.Join(dir, "hub"), "--listen", "127.0.0.1:-1", "--leaf-listen", "127.0.0.1:-1",
		"--monitor", monitor)
	hubURL := h.stdout.waitLine(t, brokerReadyLine, 15*time.Second)[1]
	leaf := h.stdout.waitLine(t, hubLeafLine, 5*time.Second)[1]
	ss := startSiteOf(t, dir, hubURL, leaf)
	ss.hubMonitor = "http://" + monitor
	return ss
}

// leafOutBytes is what the hub's monitoring endpoint (/leafz) says it
// has sent on its leaf connections, as they are now.
func (ss *siteSetup) leafOutBytes(t *testing.T) int64 {
	t.Helper()
	resp, err := http.Get(ss.hubMonitor + "/leafz")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var lz struct {
		Leafs []struct {
			OutBytes int64 `json:"out_bytes"`
		} `json:"leafs"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&lz); err != nil {
		t.Fatal(err)
	}
	var n int64
	for _, l := range lz.Leafs {
		n += l.OutBytes
	}
	return n
}

// startClusterSite is startSite with a hub of three pcm broker processes
// in a JetStream cluster (replicas 3); the site dials the first member.
func startClusterSite(t *testing.T) *siteSetup {
	t.Helper()
	dir := t.TempDir()
	var routes, hubURLs, leafs []string
	started := time.Now()
	ports := []string{freeAddr(t), freeAddr(t), freeAddr(t)}
	for _, p := range ports {
		routes = append(routes, "nats-route://"+p)
	}
	for i, p := range ports {
		name := fmt.Sprintf("hub-%d", i+1)
		h := startPCM(t, dir, plainCLIEnv, "broker", "--data", filepath.Join(dir, name), "--listen", "127.0.0.1:-1", "--leaf-listen", "127.0.0.1:-1",
			"--server-name", name, "--cluster-name", "hubc", "--cluster-listen", p, "--routes", strings.Join(routes, ","))
		hubURLs = append(hubURLs, h.stdout.waitLine(t, brokerReadyLine, 15*time.Second)[1])
		leafs = append(leafs, h.stdout.waitLine(t, hubLeafLine, 5*time.Second)[1])
	}
	urls := strings.Join(hubURLs, ",")
	js := dial(t, urls)
	testenv.CheckFor(t, 60*time.Second, 200*time.Millisecond, func() error {
		ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
		defer cancel()
		_, err := js.AccountInfo(ctx) // once the cluster has a meta leader
		return err
	})
	testenv.CheckFor(t, 60*time.Second, 500*time.Millisecond, func() error {
		out, errOut, code := runPCM(t, plainCLIEnv, "broker", "provision", "--url", urls, "--replicas", "3")
		if code != 0 {
			return fmt.Errorf("pcm broker provision: exit %d: %s%s", code, out, errOut)
		}
		return nil
	})
	t.Logf("the hub cluster is provisioned %s after its start", time.Since(started).Round(time.Millisecond))
	return startSiteOf(t, dir, urls, leafs[0])
}

// freeAddr is a free 127.0.0.1:port.
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// startSiteOf starts the proxy in front of the hub's leaf address and
// the site process behind it, and waits until the hub sources the site.
func startSiteOf(t *testing.T, dir, hubURL, leaf string) *siteSetup {
	t.Helper()
	link := startLinkProxy(t, strings.TrimPrefix(leaf, "nats-leaf://"))
	ss := &siteSetup{dir: dir, hubURL: hubURL, link: link,
		siteArgs: []string{"broker", "--data", filepath.Join(dir, "site"), "--listen", freeAddr(t),
			"--site", siteName, "--hub", link.URL(), "--hub-reconnect", "200ms"}}
	ss.startSiteBroker(t)
	linking := time.Now()
	ss.hub, ss.site = dial(t, hubURL), dial(t, ss.siteURL)
	testenv.CheckFor(t, siteLinkWait, 200*time.Millisecond, func() error {
		s, err := ss.hub.Stream(t.Context(), events.StreamStatus)
		if err != nil {
			return err
		}
		for _, src := range s.CachedInfo().Config.Sources {
			if src.External != nil && src.External.APIPrefix == siteSources {
				return nil
			}
		}
		return fmt.Errorf("no source from %s yet", siteSources)
	})
	t.Logf("the site is linked to the hub %s after its start", time.Since(linking).Round(time.Millisecond))
	return ss
}

// enrollSiteAgents enrolls clients at the site through the hub (the first
// with the pcm enroll command, the others through package fleet) and
// starts their agents against the site broker.
func (ss *siteSetup) enrollSiteAgents(t *testing.T, clients []string) map[string]*runningAgent {
	t.Helper()
	out, errOut, code := runPCM(t, plainCLIEnv, "enroll", clients[0], "--site", siteName, "--group", "branchfleet", "--ack-wait", testAckWait.String(), "--url", ss.hubURL)
	if code != 0 || !strings.Contains(out, "at site "+siteName) {
		t.Fatalf("pcm enroll --site: exit %d, %s%s", code, out, errOut)
	}
	for _, c := range clients[1:] {
		if _, err := fleet.EnrollAtSite(t.Context(), ss.hub, siteName, c, []string{"branchfleet"}, fleet.ConsumerOptions{AckWait: testAckWait}); err != nil {
			t.Fatal(err)
		}
	}
	agents := map[string]*runningAgent{}
	for _, c := range clients {
		agents[c] = startAgent(t, ss.siteURL, c, filepath.Join(ss.dir, "agents", c))
	}
	for _, c := range clients {
		agents[c].waitReady(t)
	}
	return agents
}

// siteClients names n clients.
func siteClients(n int) []string {
	var out []string
	for i := range n {
		out = append(out, fmt.Sprintf("br-%02d", i+1))
	}
	return out
}

// waitOffered waits until every client's consumer at the site holds job.
func (ss *siteSetup) waitOffered(t *testing.T, clients []string) {
	t.Helper()
	testenv.CheckFor(t, 30*time.Second, 200*time.Millisecond, func() error {
		for _, c := range clients {
			cons, err := ss.site.Consumer(t.Context(), events.StreamJobs, events.ConsumerName(c))
			if err != nil {
				return err
			}
			if info := cons.CachedInfo(); info.NumAckPending+int(info.NumPending) == 0 {
				return fmt.Errorf("%s has no offer pending", c)
			}
		}
		return nil
	})
}

// checkStatusesOnce checks that the hub stores every status of job that
// the site stores, once each, in the site's order, and that each client
// ran it once (marker) and succeeded.
func (ss *siteSetup) checkStatusesOnce(t *testing.T, clients []string, job string) {
	t.Helper()
	// nats-server retries a failed source with a backoff of 10 s per
	// failure, at most 2 minutes: after a flapping link the statuses may
	// take that long.
	testenv.CheckFor(t, 150*time.Second, 200*time.Millisecond, func() error {
		for _, c := range clients {
			atSite, err := tryReadStatuses(ss.site, c, job)
			if err != nil {
				return err
			}
			atHub, err := tryReadStatuses(ss.hub, c, job)
			if err != nil {
				return err
			}
			if len(finals(atSite)) == 0 || len(atHub) < len(atSite) {
				return fmt.Errorf("%s: %d statuses at the site, %d at the hub", c, len(atSite), len(atHub))
			}
		}
		return nil
	})
	for _, c := range clients {
		atSite := readStatuses(t, ss.site, c, job)
		atHub := readStatuses(t, ss.hub, c, job)
		if len(atHub) != len(atSite) {
			t.Fatalf("%s: the hub stores %d statuses of %s, the site %d: want each once", c, len(atHub), job, len(atSite))
		}
		seen := map[string]bool{}
		for i := range atHub {
			id := statusID(atHub[i])
			if id != statusID(atSite[i]) {
				t.Fatalf("%s: status %d at the hub is %s, at the site %s: want the site's order", c, i, id, statusID(atSite[i]))
			}
			if seen[id] {
				t.Fatalf("%s: status %s stored twice at the hub", c, id)
			}
			seen[id] = true
		}
		fin := finals(atHub)
		if len(fin) != 1 || fin[0].State != events.StateSucceeded || atHub[0].State != events.StateStarted {
			t.Fatalf("%s: statuses of %s at the hub %v, want started then one succeeded", c, job, atHub)
		}
		if n := markerLines(t, ss.marker(c, job)); n != 1 {
			t.Fatalf("%s ran %s %d times, want once", c, job, n)
		}
	}
}

// statusID is the CloudEvent id of a status, <job>.<client>.<state>.<attempt>.
func statusID(st events.JobStatus) string {
	return fmt.Sprintf("%s.%s.%s.%d", st.JobID, st.ClientID, st.State, st.Attempt)
}

// marker is the file client's run of job appends to.
func (ss *siteSetup) marker(client, job string) string {
	return filepath.Join(ss.dir, "markers", client+"-"+job)
}

// markerJob is an automated job that appends a line to its client's
// marker and proves it runs in the package's content (payload.bin).
func (ss *siteSetup) markerJob(mandatoryIn time.Duration) events.JobOffered {
	j := job([]string{"sh", "-c", `test -s payload.bin && echo ran >> ` + filepath.Join(ss.dir, "markers") + `/"$PCM_CLIENT_ID-$PCM_JOB_ID"`}, toGroup("branchfleet"))
	m := time.Now().UTC().Add(mandatoryIn)
	j.MandatoryAfter = &m
	j.Package = &events.PackageRef{Name: "payload", Version: "1"}
	return j
}

// pushPayload pushes a package of size random bytes to the hub.
func (ss *siteSetup) pushPayload(t *testing.T, size int) {
	t.Helper()
	path := filepath.Join(ss.dir, "payload.bin")
	b := make([]byte, size)
	rand.Read(b)
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(ss.dir, "markers"), 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := packages.NewStore(ss.hub).Push(t.Context(), path, packages.PushOptions{Name: "payload", Version: "1"}); err != nil {
		t.Fatal(err)
	}
}

// TestSiteWorksThroughACut: a hub and a branch site in their own
// processes, 10 agents at the site. A mandatory job with a package is
// offered, the link is cut before its time: it runs on every site client
// during the cut while the hub says the site is unreachable; a job
// published during the cut reaches the site when the link returns; every
// status reaches the hub once, in order; nothing runs twice; the package
// crossed the link once.
func TestSiteWorksThroughACut(t *testing.T) {
	testenv.SameInBothModes(t)
	start := time.Now()
	siteThroughACut(t, startSite(t))
	t.Logf("TestSiteWorksThroughACut took %s", time.Since(start).Round(time.Millisecond))
}

// TestSiteOfAClusterHub is TestSiteWorksThroughACut with a hub of three
// members.
func TestSiteOfAClusterHub(t *testing.T) {
	testenv.SameInBothModes(t)
	start := time.Now()
	siteThroughACut(t, startClusterSite(t))
	t.Logf("TestSiteOfAClusterHub took %s", time.Since(start).Round(time.Millisecond))
}

// siteThroughACut is the scenario of TestSiteWorksThroughACut on ss.
func siteThroughACut(t *testing.T, ss *siteSetup) {
	clients := siteClients(10)
	ss.enrollSiteAgents(t, clients)
	const size = 1 << 20
	before := ss.link.toSite.Load()
	var leafBefore int64
	if ss.hubMonitor != "" {
		leafBefore = ss.leafOutBytes(t)
	}
	ss.pushPayload(t, size)
	if n := ss.link.toSite.Load() - before; n > size/2 {
		t.Fatalf("the package push at the hub sent %d bytes to the site: want none before a job of the site uses it", n)
	}
	p := newPublisher(t, ss.hub)
	const window = 8 * time.Second // until the mandatory time: room to see the offer and the package at the site
	first := publish(t, p, ss.markerJob(window))
	mandatory := time.Now().Add(window)
	ss.waitOffered(t, clients)
	testenv.CheckFor(t, 30*time.Second, 200*time.Millisecond, func() error {
		obs, err := ss.site.ObjectStore(t.Context(), events.BucketPackages)
		if err != nil {
			return err
		}
		info, err := obs.GetInfo(t.Context(), events.PackageObjectName("payload", "1"))
		if err == nil {
			t.Logf("cached at the site: %d bytes; %d bytes crossed the link since the publish", info.Size, ss.link.toSite.Load()-before)
		}
		return err
	})

	if ss.hubMonitor != "" {
		sent := ss.leafOutBytes(t) - leafBefore
		t.Logf("the hub's /leafz: %d bytes sent to the site for the offer and its %d-byte package, 10 clients (%.2f x the package)", sent, size, float64(sent)/size)
		if sent < size || sent > 2*size {
			t.Fatalf("the hub sent %d bytes on its leaf connection for a %d-byte package: want it once", sent, size)
		}
	}
	ss.link.cut()
	cutAt := time.Now()
	if !cutAt.Before(mandatory) {
		t.Fatalf("the site took %s to receive the offer and its package: the link was cut after the mandatory time", window)
	}
	testenv.CheckFor(t, 15*time.Second, 200*time.Millisecond, func() error {
		out, errOut, code := runPCM(t, plainCLIEnv, "status", first, "--url", ss.hubURL)
		if code != 0 || !strings.Contains(out, "site "+siteName+" unreachable since") {
			return fmt.Errorf("pcm status: exit %d: %s%s", code, out, errOut)
		}
		return nil
	})
	testenv.CheckFor(t, 15*time.Second, 200*time.Millisecond, func() error {
		out, errOut, code := runPCM(t, plainCLIEnv, "agents", "--url", ss.hubURL)
		if code != 0 || strings.Count(out, "site "+siteName+" unreachable") != len(clients) {
			return fmt.Errorf("pcm agents during the cut: exit %d, want every site client behind an unreachable site:\n%s%s", code, out, errOut)
		}
		return nil
	})
	second := publish(t, p, ss.markerJob(0))
	testenv.CheckFor(t, 30*time.Second, 200*time.Millisecond, func() error {
		for _, c := range clients {
			if markerLines(t, ss.marker(c, first)) == 0 {
				return fmt.Errorf("%s has not run it", c)
			}
		}
		return nil
	})
	for _, c := range clients {
		if n := markerLines(t, ss.marker(c, second)); n != 0 {
			t.Fatalf("%s ran the job published during the cut before the link returned", c)
		}
	}
	if fleet.SiteReachable(t.Context(), ss.hub.Conn(), siteName) {
		t.Fatal("the site answers through the hub during the cut")
	}
	// The site broker restarts during the cut: it resumes where it was.
	if err := ss.siteProc.stopGracefully(t, 15*time.Second); err != nil {
		t.Fatalf("the site broker exited with %v on SIGTERM", err)
	}
	ss.startSiteBroker(t)
	t.Logf("every site client ran the job %s after the cut", time.Since(cutAt).Round(time.Millisecond))
	for _, c := range clients {
		if fin := finals(readStatuses(t, ss.site, c, first)); len(fin) != 1 || fin[0].StartedAt == nil || fin[0].StartedAt.Before(cutAt) {
			t.Fatalf("%s: final statuses %+v at the site: want one, of a run started during the cut", c, fin)
		}
	}

	ss.link.restore()
	restored := time.Now()
	ss.checkStatusesOnce(t, clients, first)
	t.Logf("the statuses of the job run during the cut reached the hub %s after the link returned", time.Since(restored).Round(time.Millisecond))
	ss.checkStatusesOnce(t, clients, second)
	t.Logf("the job published during the cut ran at the site and its statuses reached the hub %s after the link returned", time.Since(restored).Round(time.Millisecond))
	crossed := ss.link.toSite.Load() - before
	t.Logf("bytes from the hub to the site for 10 clients running a %d-byte package twice: %d (%.2f x the package)", size, crossed, float64(crossed)/size)
	if crossed < size || crossed > 2*size {
		t.Fatalf("%d bytes crossed the link for a %d-byte package: want it once, not per client", crossed, size)
	}
}

// TestSiteLinkFlaps: the link between the hub and a site flaps 20 times
// while three jobs roll out to the site's 10 clients: no job runs twice
// and every status reaches the hub once, in order.
func TestSiteLinkFlaps(t *testing.T) {
	t.Parallel() // it waits on processes and link flaps: beside the others
	testenv.SameInBothModes(t)
	start := time.Now()
	ss := startSite(t)
	clients := siteClients(10)
	ss.enrollSiteAgents(t, clients)
	ss.pushPayload(t, 64<<10)
	p := newPublisher(t, ss.hub)
	var jobs []string
	for flap := range 20 {
		if flap%7 == 1 {
			jobs = append(jobs, publish(t, p, ss.markerJob(0)))
		}
		ss.link.cut()
		time.Sleep(time.Duration(100+flap*15) * time.Millisecond) // the fault's length, not a wait for a result
		ss.link.restore()
		restored := time.Now()
		testenv.CheckFor(t, 15*time.Second, 50*time.Millisecond, func() error {
			if !fleet.SiteReachable(t.Context(), ss.hub.Conn(), siteName) {
				return fmt.Errorf("flap %d: the site is not back", flap+1)
			}
			return nil
		})
		t.Logf("flap %d: back after %s", flap+1, time.Since(restored).Round(time.Millisecond))
	}
	flapped := time.Now()
	for _, id := range jobs {
		ss.checkStatusesOnce(t, clients, id)
	}
	t.Logf("statuses checked %s after the last flap", time.Since(flapped).Round(time.Millisecond))
	t.Logf("TestSiteLinkFlaps: 20 flaps, %d jobs on %d site clients, 0 reruns, 0 lost statuses, in %s", len(jobs), len(clients), time.Since(start).Round(time.Millisecond))
}

// TestComposeSiteFile checks docker-compose.site.yml without Docker: each
// pcm command it runs exists and takes the flags given, the hub members
// accept sites, and the site, its enrollment and its agent agree.
func TestComposeSiteFile(t *testing.T) {
	testenv.SameInBothModes(t)
	c := loadComposeFile(t, "docker-compose.site.yml", nil)
	helps := map[string]string{}
	for _, name := range c.serviceNames(func(s *composeService) bool { return strings.HasPrefix(s.Image, "pcm:") }) {
		cmd := c.Services[name].Command
		var path []string
		for _, w := range cmd {
			if strings.HasPrefix(w, "-") {
				break
			}
			path = append(path, w)
		}
		if len(path) > 0 && path[0] == "enroll" {
			path = path[:1] // enroll CLIENT
		}
		key := strings.Join(path, " ")
		if _, ok := helps[key]; !ok {
			out, errOut, code := runPCM(t, plainCLIEnv, append(path, "--help")...)
			if code != 0 {
				t.Fatalf("%s: pcm %s --help: exit %d: %s", name, key, code, errOut)
			}
			helps[key] = out
		}
		for _, w := range cmd {
			if strings.HasPrefix(w, "--") && !strings.Contains(helps[key], w+" ") {
				t.Errorf("%s: pcm %s has no flag %s", name, key, w)
			}
		}
	}
	flag := func(service, name string) string {
		v := composeFlagValues(c.Services[service].Command, strings.TrimPrefix(name, "--"))
		if len(v) != 1 {
			t.Fatalf("%s: %s given %d times", service, name, len(v))
		}
		return v[0]
	}
	for _, h := range []string{"hub1", "hub2", "hub3"} {
		if !strings.Contains(flag("site", "--hub"), "nats-leaf://"+h+":"+strings.TrimPrefix(flag(h, "--leaf-listen"), "0.0.0.0:")) {
			t.Errorf("the site does not dial %s's leaf port", h)
		}
	}
	if flag("enroll", "--site") != flag("site", "--site") || flag("site-agent1", "--client-id") != "site-agent1" ||
		flag("site-agent1", "--url") != "nats://site:4222" {
		t.Error("site-agent1 is not enrolled at the site it runs against")
	}
}

// TestSiteRefusals: pcm broker refuses a site it cannot run, saying why.
func TestSiteRefusals(t *testing.T) {
	testenv.SameInBothModes(t)
	dir := t.TempDir()
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--site", "b", "--hub", "nats-leaf://127.0.0.1:7422", "--auth"}, "--site with --auth needs --hub-creds FILE"},
		{[]string{"--site", "b", "--hub", "nats-leaf://127.0.0.1:7422", "--hub-creds", "b.creds"}, "--hub-creds and --site-admin-creds need --auth"},
		{[]string{"--hub-creds", "b.creds"}, "need --site NAME"},
		{[]string{"--site", "b"}, "--site needs --hub"},
		{[]string{"--hub", "nats-leaf://127.0.0.1:7422"}, "--hub needs --site"},
		{[]string{"--site", "hub", "--hub", "nats-leaf://127.0.0.1:7422"}, "named like the hub's domain"},
		{[]string{"--site", "b.c", "--hub", "nats-leaf://127.0.0.1:7422"}, "site name"},
	} {
		args := append([]string{"broker", "--data", filepath.Join(dir, "data"), "--listen", "127.0.0.1:-1"}, tc.args...)
		_, errOut, code := runPCM(t, plainCLIEnv, args...)
		if code == 0 || !strings.Contains(errOut, tc.want) {
			t.Errorf("pcm %s: exit %d, stderr %q; want a refusal saying %q", strings.Join(tc.args, " "), code, errOut, tc.want)
		}
	}
}

// authSites is an authenticated hub and an authenticated site broker of
// the same authority, in process, linked with the site's own leaf
// credentials.
type authSites struct {
	iss           *auth.Issuer
	hub, site     *broker.Broker
	hubJS, siteJS jetstream.JetStream
	siteCreds     string
	job           string     // a job published at the hub
	proxy         *linkProxy // the link, when proxied
}

// startAuthSites starts the hub and the site, publishes a job and a
// package and stores a status at the hub, and waits for the link.
func startAuthSites(t *testing.T) *authSites { return startAuthSitesVia(t, false) }

// startAuthSitesVia is startAuthSites, with the link through a linkProxy
// (authSites.proxy) when proxied.
func startAuthSitesVia(t *testing.T, proxied bool) *authSites {
	t.Helper()
	ctx := t.Context()
	a, _, err := auth.Setup(filepath.Join(t.TempDir(), "auth"))
	if err != nil {
		t.Fatal(err)
	}
	iss, err := a.Issuer()
	if err != nil {
		t.Fatal(err)
	}
	trust := a.Trust()
	f := &authSites{iss: iss}
	startB := func(cfg broker.Config) (*broker.Broker, jetstream.JetStream) {
		cfg.StoreDir, cfg.Listen, cfg.Auth = t.TempDir(), "127.0.0.1:-1", &trust
		b, err := broker.New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		if err := b.Start(ctx); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(b.Shutdown)
		nc, err := b.ConnectAdmin(iss, "test admin")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(nc.Close)
		js, err := jetstream.New(nc)
		if err != nil {
			t.Fatal(err)
		}
		if err := broker.Provision(ctx, js, broker.ProvisionOptions{}); err != nil {
			t.Fatal(err)
		}
		return b, js
	}
	f.hub, f.hubJS = startB(broker.Config{ServerName: "hub", Domain: "hub", LeafListen: "127.0.0.1:-1"})

	f.job = publish(t, newPublisher(t, f.hubJS), job([]string{"true"}, toClient("ws1")))
	m := nats.NewMsg(events.StatusSubject("ws1", f.job))
	m.Header.Set(jetstream.MsgIDHeader, "fixture-status")
	m.Data = []byte(`{"fixture":"status"}`)
	if _, err := f.hubJS.PublishMsg(ctx, m); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "tool.sh")
	if err := os.WriteFile(file, []byte("#!/bin/sh\necho tool\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := packages.NewStore(f.hubJS).Push(ctx, file, packages.PushOptions{Name: "tool", Version: "1.0"}); err != nil {
		t.Fatal(err)
	}

	// The site's leaf credentials, minted at the hub (pcm creds site).
	accts := fleet.NewAccounts(f.hubJS.Conn(), iss)
	creds, err := accts.Issue(ctx, auth.User{Role: auth.RoleSite, Name: "branch1"})
	if err != nil {
		t.Fatal(err)
	}
	f.siteCreds = filepath.Join(t.TempDir(), "branch1-site.creds")
	if err := auth.WriteCreds(f.siteCreds, creds); err != nil {
		t.Fatal(err)
	}
	hubURL := f.hub.LeafURL()
	if proxied {
		f.proxy = startLinkProxy(t, strings.TrimPrefix(hubURL, "nats-leaf://"))
		hubURL = f.proxy.URL()
	}
	f.site, f.siteJS = startB(broker.Config{ServerName: "branch1", Domain: "branch1",
		Hub: &broker.HubLink{URL: hubURL, Reconnect: 100 * time.Millisecond, Credentials: f.siteCreds}})
	testenv.WaitFor(t, 10*time.Second, "the site's authenticated leaf connection", func() bool {
		return f.site.HubConnected() && f.hub.Server().NumLeafNodes() == 1
	})
	return f
}

// enrollAtSite enrolls client (group lab) against the site's broker, as
// an admin of the authority there: its consumer and its account at the
// site. It returns a connection to the site with its agent's credentials.
func (f *authSites) enrollAtSite(t *testing.T, client string) *nats.Conn {
	t.Helper()
	ctx := t.Context()
	accts := fleet.NewAccounts(f.siteJS.Conn(), f.iss)
	if _, err := fleet.Enroll(ctx, f.siteJS, accts, client, []string{"lab"}, fleet.ConsumerOptions{}); err != nil {
		t.Fatal(err)
	}
	creds, err := accts.Issue(ctx, auth.User{Role: auth.RoleAgent, Name: client})
	if err != nil {
		t.Fatal(err)
	}
	opt, err := auth.CredsOption(creds)
	if err != nil {
		t.Fatal(err)
	}
	nc, err := nats.Connect(f.site.ClientURL(), opt)
	if err != nil {
		t.Fatalf("the agent of %s at the site: %v", client, err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// TestSiteAuthenticatedCut: the cut scenario across an authenticated link
// (a smaller variant of TestSiteWorksThroughACut, in process, with the
// site's direct relay and forwarder): 3 clients enrolled at the site with
// their own credentials, an offer with a package copied to the site; the
// link is cut; each client's agent reports its statuses to the site and a
// job is published at the hub meanwhile; when the link returns, every
// status reaches the hub once, in each client's order, with its id, and
// the new job reaches the site.
func TestSiteAuthenticatedCut(t *testing.T) {
	f := startAuthSitesVia(t, true)
	ctx := t.Context()
	viaSite, err := jetstream.NewWithDomain(f.siteJS.Conn(), "hub")
	if err != nil {
		t.Fatal(err)
	}
	clients := []string{"ws1", "ws2", "ws3"}
	agents := map[string]jetstream.JetStream{}
	for _, c := range clients {
		if agents[c], err = jetstream.New(f.enrollAtSite(t, c)); err != nil {
			t.Fatal(err)
		}
	}
	if err := fleet.NewAccounts(f.hubJS.Conn(), f.iss).Ensure(ctx, auth.Principal{Kind: auth.KindSite, Name: "branch1", Clients: clients}); err != nil {
		t.Fatal(err)
	}
	j := job([]string{"true"}, events.Target{Kind: events.TargetGroup, Name: "lab"})
	j.Package = &events.PackageRef{Name: "tool", Version: "1.0"}
	p := newPublisher(t, f.hubJS)
	first := publish(t, p, j)
	rctx, stop := context.WithCancel(ctx)
	defer stop()
	relay := site.NewDirectRelay(f.siteJS, viaSite, zaptest.NewLogger(t))
	fw := site.NewForwarder(f.siteJS, viaSite, "branch1", nil)
	go func() { _ = relay.Run(rctx) }()
	go func() { _ = fw.Run(rctx) }()
	testenv.CheckFor(t, 15*time.Second, 50*time.Millisecond, func() error {
		if st := relay.Stats(); st.Relayed < 2 || st.Downloads != 1 {
			return fmt.Errorf("relay stats %+v: want both offers relayed and the package downloaded once", st)
		}
		return nil
	})

	f.proxy.cut()
	testenv.WaitFor(t, 10*time.Second, "the link to drop", func() bool { return !f.site.HubConnected() })
	hubStatus, err := f.hubJS.Stream(ctx, events.StreamStatus)
	if err != nil {
		t.Fatal(err)
	}
	before := hubStatus.CachedInfo().State.Msgs
	want := map[string][]string{}
	for _, c := range clients {
		for _, state := range []string{"started", "succeeded"} {
			m := nats.NewMsg(events.StatusSubject(c, first))
			id := first + "." + c + "." + state + ".1"
			m.Header.Set(jetstream.MsgIDHeader, id)
			m.Data = []byte(`{"state":"` + state + `"}`)
			if _, err := agents[c].PublishMsg(ctx, m); err != nil {
				t.Fatalf("%s's status at the site during the cut: %v", c, err)
			}
			want[c] = append(want[c], id)
		}
	}
	second := publish(t, p, job([]string{"true"}, events.Target{Kind: events.TargetGroup, Name: "lab"}))
	if info, err := hubStatus.Info(ctx); err != nil || info.State.Msgs != before {
		t.Fatalf("the hub's PCM_STATUS changed during the cut (%v): the site's statuses crossed a cut link?", err)
	}

	f.proxy.restore()
	start := time.Now()
	testenv.CheckFor(t, 20*time.Second, 100*time.Millisecond, func() error {
		got := map[string][]string{}
		for seq := uint64(1); ; seq++ {
			m, err := hubStatus.GetMsg(ctx, seq)
			if errors.Is(err, jetstream.ErrMsgNotFound) {
				break
			}
			if err != nil {
				return err
			}
			for _, c := range clients {
				if m.Subject == events.StatusSubject(c, first) {
					got[c] = append(got[c], m.Header.Get(jetstream.MsgIDHeader))
				}
			}
		}
		for _, c := range clients {
			if strings.Join(got[c], " ") != strings.Join(want[c], " ") {
				return fmt.Errorf("%s's statuses at the hub: %q, want %q (once each, in order)", c, got[c], want[c])
			}
		}
		return nil
	})
	t.Logf("the statuses written during the cut reached the hub %s after the link returned", time.Since(start).Round(10*time.Millisecond))
	testenv.CheckFor(t, 15*time.Second, 50*time.Millisecond, func() error {
		m, err := f.siteJS.Conn().Request("$JS.API.DIRECT.GET."+events.StreamJobs, []byte(`{"seq":3}`), time.Second)
		if err != nil || !strings.Contains(string(m.Data), second) {
			return fmt.Errorf("the site's PCM_JOBS #3: %v, want the offer of %s published during the cut", err, second)
		}
		return nil
	})
	if st := relay.Stats(); st.Downloads != 1 {
		t.Errorf("relay stats %+v: the package crossed the link more than once", st)
	}
}

// hubState is what the attacks aim at, as the hub's admin sees it: each
// stream's message count and sequences, its configuration's subjects and
// sources, and PCM_JOBS's consumers.
func (f *authSites) hubState(t *testing.T) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	var b strings.Builder
	names := f.hubJS.StreamNames(ctx)
	for n := range names.Name() {
		s, err := f.hubJS.Stream(ctx, n)
		if err != nil {
			t.Fatal(err)
		}
		i := s.CachedInfo()
		cfg, _ := json.Marshal(struct {
			S []string
			R []*jetstream.StreamSource
			A time.Duration
		}{i.Config.Subjects, i.Config.Sources, i.Config.MaxAge})
		b.WriteString(n + " " + string(cfg) + " " + jsonOf(i.State.Msgs, i.State.FirstSeq, i.State.LastSeq) + "\n")
	}
	if err := names.Err(); err != nil {
		t.Fatal(err)
	}
	s, err := f.hubJS.Stream(ctx, events.StreamJobs)
	if err != nil {
		t.Fatal(err)
	}
	for n := range s.ConsumerNames(ctx).Name() {
		b.WriteString("consumer " + n + "\n")
	}
	return b.String()
}

func jsonOf(v ...any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// TestSiteAuthenticatedLink: an authenticated hub and site of one
// authority. The site's leaf connection authenticates with its own
// credentials (a user of the site's account at the hub) and reads the
// hub's PCM_JOBS and package store through it, and nothing else; a
// client enrolled at the site is in its own account there, and its
// credentials work at the site.
func TestSiteAuthenticatedLink(t *testing.T) {
	f := startAuthSites(t)
	ctx := t.Context()
	nc := f.siteJS.Conn()
	viaSite, err := jetstream.NewWithDomain(nc, "hub")
	if err != nil {
		t.Fatal(err)
	}
	// What the link needs: the state of the hub's PCM_JOBS and package
	// store, and their messages by batched direct gets.
	for _, name := range auth.SiteReadStreams {
		var s jetstream.Stream
		testenv.CheckFor(t, 10*time.Second, 50*time.Millisecond, func() error {
			s, err = viaSite.Stream(ctx, name)
			return err
		})
		if s.CachedInfo().State.Msgs == 0 {
			t.Fatalf("the hub's %s seen from the site holds nothing", name)
		}
	}
	ans, err := nc.Request("$JS.hub.API.DIRECT.GET."+events.StreamJobs, []byte(`{"seq":1}`), 5*time.Second)
	if err != nil || ans.Header.Get("Nats-Subject") != "pcm.jobs.client.ws1" {
		t.Fatalf("a direct get of the hub's PCM_JOBS from the site: %v %v", ans, err)
	}
	// Nothing else: another stream, a consumer, a purge, a publish.
	if _, err := viaSite.Stream(ctx, events.StreamStatus); err == nil {
		t.Error("the site read the hub's PCM_STATUS's info")
	}
	cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	if _, err := viaSite.CreateConsumer(cctx, events.StreamJobs, jetstream.ConsumerConfig{Name: "spy"}); err == nil {
		t.Error("the site created a consumer on the hub's PCM_JOBS")
	}
	cancel()
	if _, err := nc.Request("$JS.hub.API.DIRECT.GET."+events.StreamStatus, []byte(`{"seq":1}`), time.Second); err == nil {
		t.Error("the site read the hub's PCM_STATUS")
	}

	// The site's copy of the hub's offers and of their packages, read
	// with direct gets only (site.NewDirectRelay): an offer with a
	// package is relayed once the package is at the site.
	j := job([]string{"true"}, toClient("ws1"))
	j.Package = &events.PackageRef{Name: "tool", Version: "1.0"}
	withPkg := publish(t, newPublisher(t, f.hubJS), j)
	rctx, stop := context.WithCancel(ctx)
	defer stop()
	relay := site.NewDirectRelay(f.siteJS, viaSite, nil)
	go func() { _ = relay.Run(rctx) }()
	testenv.CheckFor(t, 15*time.Second, 50*time.Millisecond, func() error {
		if st := relay.Stats(); st.Relayed < 2 || st.Downloads != 1 {
			return fmt.Errorf("relay stats %+v: want the 2 offers relayed and the package downloaded once", st)
		}
		return nil
	})
	local, err := f.siteJS.ObjectStore(ctx, events.BucketPackages)
	if err != nil {
		t.Fatal(err)
	}
	if b, err := local.GetBytes(ctx, events.PackageObjectName("tool", "1.0")); err != nil || string(b) != "#!/bin/sh\necho tool\n" {
		t.Fatalf("the package at the site: %q %v", b, err)
	}
	if m, err := f.siteJS.Conn().Request("$JS.API.DIRECT.GET."+events.StreamJobs, []byte(`{"seq":2}`), 5*time.Second); err != nil || !strings.Contains(string(m.Data), withPkg) {
		t.Fatalf("the site's PCM_JOBS #2: %v, want the offer of %s", err, withPkg)
	}

	// A client enrolled at the site, by an admin of the site (the same
	// authority): its account is pushed to the site's resolver, and its
	// agent's credentials work there, in its own account.
	agent := f.enrollAtSite(t, "ws1")
	if _, err := agent.Request("$JS.API.CONSUMER.INFO.PCM_JOBS.agent-ws1", nil, 5*time.Second); err != nil {
		t.Fatalf("the agent of ws1 reads its consumer at the site: %v", err)
	}
	if _, err := agent.Request("$JS.API.STREAM.INFO."+events.StreamStatus, nil, time.Second); err == nil {
		t.Error("the agent of ws1 read PCM_STATUS's info at the site: it is not in its own account")
	}

	// Its statuses and inventory reach the hub through the site's
	// account, once its site's account at the hub imports them
	// (site.Forwarder): in the site's order, with their ids, once.
	hubAccts := fleet.NewAccounts(f.hubJS.Conn(), f.iss)
	if err := hubAccts.Ensure(ctx, auth.Principal{Kind: auth.KindSite, Name: "branch1", Clients: []string{"ws1"}}); err != nil {
		t.Fatal(err)
	}
	agentJS, err := jetstream.New(agent)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for i := range 3 {
		m := nats.NewMsg(events.StatusSubject("ws1", withPkg))
		id := fmt.Sprintf("%s.ws1.s%d", withPkg, i)
		m.Header.Set(jetstream.MsgIDHeader, id)
		m.Data = []byte(`{"n":` + strconv.Itoa(i) + `}`)
		if _, err := agentJS.PublishMsg(ctx, m); err != nil {
			t.Fatalf("the agent's status at the site: %v", err)
		}
		ids = append(ids, id)
	}
	if _, err := agentJS.Publish(ctx, "$KV."+events.BucketAgents+".ws1", []byte(`{"client_id":"ws1"}`)); err != nil {
		t.Fatalf("the agent's inventory at the site: %v", err)
	}
	fctx, stopF := context.WithCancel(ctx)
	defer stopF()
	fw := site.NewForwarder(f.siteJS, viaSite, "branch1", nil)
	fwDone := make(chan struct{})
	go func() { _ = fw.Run(fctx); close(fwDone) }()
	testenv.CheckFor(t, 15*time.Second, 50*time.Millisecond, func() error {
		if n := fw.Forwarded(); n < 4 {
			return fmt.Errorf("%d of 4 forwarded", n)
		}
		return nil
	})
	// Once more from the start: the hub stores nothing twice.
	stopF()
	<-fwDone
	st, err := f.siteJS.Stream(ctx, events.StreamStatus)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.DeleteConsumer(ctx, site.ForwardConsumer); err != nil {
		t.Fatal(err)
	}
	fctx, stopF = context.WithCancel(ctx)
	defer stopF()
	fw = site.NewForwarder(f.siteJS, viaSite, "branch1", nil)
	go func() { _ = fw.Run(fctx) }()
	testenv.CheckFor(t, 15*time.Second, 50*time.Millisecond, func() error {
		if n := fw.Forwarded(); n < 3 {
			return fmt.Errorf("%d of 3 forwarded again", n)
		}
		return nil
	})
	hs, err := f.hubJS.Stream(ctx, events.StreamStatus)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for seq := uint64(1); seq <= hs.CachedInfo().State.LastSeq; seq++ {
		m, err := hs.GetMsg(ctx, seq)
		if err != nil {
			t.Fatal(err)
		}
		if m.Subject == events.StatusSubject("ws1", withPkg) {
			got = append(got, m.Header.Get(jetstream.MsgIDHeader))
		}
	}
	if strings.Join(got, " ") != strings.Join(ids, " ") {
		t.Errorf("the hub's PCM_STATUS holds %q for ws1, want %q: each once, in the site's order, with its id", got, ids)
	}
	kv, err := f.hubJS.KeyValue(ctx, events.BucketAgents)
	if err != nil {
		t.Fatal(err)
	}
	if e, err := kv.Get(ctx, "ws1"); err != nil || string(e.Value()) != `{"client_id":"ws1"}` {
		t.Errorf("ws1's inventory at the hub: %v", err)
	}
}

// TestSiteAttackLeafCredentials: the site's leaf credentials in a thief's
// hands (a site with client ws1). As a client connection they are
// refused; across a leaf connection of the thief's own, every request they
// allow, aimed by its reply subject at the hub's JetStream API, statuses,
// inventory and jobs, every forwarded name of a client not at the site,
// and every forbidden publish and subscription, changes nothing at the hub
// and reads nothing beyond PCM_JOBS and the package store. (What the
// credentials may change by design: the statuses and inventory of the
// site's own clients, whose owner the site stands for.)
func TestSiteAttackLeafCredentials(t *testing.T) {
	f := startAuthSites(t)
	if err := fleet.NewAccounts(f.hubJS.Conn(), f.iss).Ensure(t.Context(), auth.Principal{Kind: auth.KindSite, Name: "branch1", Clients: []string{"ws1"}}); err != nil {
		t.Fatal(err)
	}
	before := f.hubState(t)

	// A client connection with the leaf credentials is refused.
	if nc, err := nats.Connect(f.hub.ClientURL(), nats.UserCredentials(f.siteCreds), nats.MaxReconnects(0)); err == nil {
		nc.Close()
		t.Fatal("the site's leaf credentials connected to the hub as a client")
	}

	// The thief speaks the leaf node protocol to the hub itself, so that
	// no server of its own checks anything it sends (nats-server refuses
	// JetStream reply subjects from its own clients; a thief's server
	// need not).
	l := dialRawLeaf(t, f.hub.LeafURL(), f.siteCreds)
	prefix, err := auth.InboxPrefixOfCreds(f.siteCreds)
	if err != nil {
		t.Fatal(err)
	}
	l.sub(prefix + ".>")

	// What the credentials allow (the attack suite's requests of the site
	// role, under both names). The stream infos are answered across this
	// hand-made link (their canaries prove the redirected copies before
	// them were answered too); the direct gets' answers, which carry
	// headers, do not come back to it (TestSiteAuthenticatedLink shows
	// them answered across a real site's link), so they are sent
	// redirected and the hub's final state is what proves them harmless.
	var allowed, gets []req
	for _, r := range (&attackFixture{job: map[string]string{"c1": "J1"}, statusID: map[string]string{"c1": "s1"}}).requestsOf(auth.User{Role: auth.RoleSite, Name: "branch1"}) {
		if strings.Contains(r.subject, ".STREAM.INFO.") {
			allowed = append(allowed, r)
		} else {
			gets = append(gets, r)
		}
	}
	gets = append(gets, req{subject: "$JS.hub.API.DIRECT.GET." + events.StreamJobs, body: `{"seq":1,"batch":3}`})
	targets := []string{
		"$JS.API.STREAM.PURGE." + events.StreamStatus, "$JS.API.STREAM.PURGE." + events.StreamJobs,
		"$JS.API.STREAM.DELETE." + events.StreamStatus, "$JS.API.STREAM.DELETE." + events.StreamJobs,
		"$JS.API.STREAM.DELETE.KV_" + events.BucketAgents, "$JS.API.STREAM.UPDATE." + events.StreamStatus,
		"$JS.API.STREAM.MSG.DELETE." + events.StreamStatus,
		"$JS.API.CONSUMER.CREATE." + events.StreamJobs + ".spy", "$JS.API.CONSUMER.DURABLE.CREATE." + events.StreamJobs + ".spy",
		"$JS.hub.API.STREAM.PURGE." + events.StreamJobs, "$JS.hub.API.STREAM.DELETE." + events.StreamStatus,
		events.StatusSubject("ws1", f.job), events.StatusSubject("ws1", "forged"), "$KV." + events.BucketAgents + ".ws1",
		"$KV." + events.BucketLocks + ".ws1", "pcm.jobs.all", "pcm.jobs.client.ws1", events.CancelSubject(f.job),
		// ws2 is not a client of the site (ws1 is): its forwarded names
		// lead nowhere.
		auth.SiteStatusPrefix + "ws2.forged", auth.SiteAgentsPrefix + "ws2",
	}
	for _, r := range append(gets, allowed...) {
		for _, tgt := range targets {
			l.pub(r.subject, tgt, r.body)
		}
	}
	for i, r := range allowed {
		reply := fmt.Sprintf("%s.canary%d", prefix, i)
		l.pub(r.subject, reply, r.body)
		testenv.WaitFor(t, 5*time.Second, "the answer to the canary "+r.subject+" (the redirected copies before it were answered too)", func() bool {
			select {
			case <-l.done:
				t.Fatalf("the hub closed the connection: %q", l.errors())
			default:
			}
			return l.heard(reply)
		})
	}
	// The forwarded names of a client not at the site, directly: the
	// credentials allow them, the site's account leads them nowhere.
	for _, tgt := range targets {
		if strings.HasPrefix(tgt, auth.SiteStatusPrefix) || strings.HasPrefix(tgt, auth.SiteAgentsPrefix) {
			l.pub(tgt, "", `{"forged":true}`)
			l.pub(tgt, prefix+".forged", `{"forged":true}`)
		}
	}
	// A status stored at the hub now: nothing of it may reach the thief.
	if _, err := f.hubJS.Publish(t.Context(), events.StatusSubject("ws1", "later"), []byte(`{"later":true}`)); err != nil {
		t.Fatal(err)
	}
	l.pub(allowed[0].subject, prefix+".last", "")
	testenv.WaitFor(t, 5*time.Second, "the last canary", func() bool { return l.heard(prefix + ".last") })
	for _, subj := range l.subjects() {
		if !strings.HasPrefix(subj, prefix+".") {
			t.Errorf("the thief heard %s", subj)
		}
	}
	l.close()

	// The targets directly, with and without a reply, reading what is not
	// the link's, and listening to everything: the hub refuses each and
	// closes the connection (a new one for each attempt).
	// The site's account takes two leaf connections: the site's and one
	// more.
	dial := func() *rawLeaf {
		testenv.WaitFor(t, 5*time.Second, "the hub to drop the thief's last connection", func() bool { return f.hub.Server().NumLeafNodes() <= 1 })
		return dialRawLeaf(t, f.hub.LeafURL(), f.siteCreds)
	}
	forbidden := func(what string, act func(l *rawLeaf)) {
		l := dial()
		act(l)
		select {
		case <-l.done:
		case <-time.After(5 * time.Second):
			t.Errorf("the hub did not refuse %s", what)
		}
		l.close()
	}
	for _, tgt := range append(targets, "$JS.hub.API.CONSUMER.CREATE."+events.StreamJobs+".spy", "$JS.hub.API.STREAM.UPDATE."+events.StreamStatus,
		"$JS.hub.API.DIRECT.GET."+events.StreamStatus, "$JS.hub.API.DIRECT.GET.KV_"+events.BucketAgents,
		"$JS.hub.API.STREAM.INFO."+events.StreamStatus, "$JS.hub.API.CONSUMER.LIST."+events.StreamJobs) {
		if strings.HasPrefix(tgt, auth.SiteStatusPrefix) || strings.HasPrefix(tgt, auth.SiteAgentsPrefix) {
			continue // allowed names, tried above
		}
		forbidden("a publish to "+tgt, func(l *rawLeaf) {
			l.pub(tgt, prefix+".direct", `{"config":{"durable_name":"spy","deliver_subject":"spy.x"},"seq":1}`)
		})
	}
	// Subscriptions the credentials do not allow are ignored: nothing
	// stored at the hub afterwards reaches the thief.
	l = dial()
	for _, sub := range []string{">", "pcm.status.>", "pcm.jobs.>", "$KV.>", "_INBOX.>", "$JS.API.>", "$JS.>", prefix + ".>"} {
		l.sub(sub)
	}
	time.Sleep(100 * time.Millisecond) // let the subscriptions reach the hub: no event to wait for
	if _, err := f.hubJS.Publish(t.Context(), events.StatusSubject("ws1", "later2"), []byte(`{"later":true}`)); err != nil {
		t.Fatal(err)
	}
	l.pub(allowed[0].subject, prefix+".end", "")
	testenv.WaitFor(t, 5*time.Second, "the canary after the subscriptions", func() bool { return l.heard(prefix + ".end") })
	for _, subj := range l.subjects() {
		if subj != prefix+".end" {
			t.Errorf("the thief heard %s", subj)
		}
	}
	l.close()

	if after := f.hubState(t); !onlyStatusGrew(before, after) {
		t.Errorf("the hub changed under the attack:\nbefore:\n%s\nafter:\n%s", before, after)
	}
}

// onlyStatusGrew reports whether after differs from before only by the
// two statuses the test itself published at the hub (PCM_STATUS's count
// and last sequence up by two).
func onlyStatusGrew(before, after string) bool {
	b, a := strings.Split(before, "\n"), strings.Split(after, "\n")
	if len(a) != len(b) {
		return false
	}
	for i := range b {
		if b[i] == a[i] {
			continue
		}
		if !strings.HasPrefix(b[i], events.StreamStatus+" ") {
			return false
		}
		if !strings.HasSuffix(b[i], "[1,1,1]") || !strings.HasSuffix(a[i], "[3,1,3]") {
			return false
		}
	}
	return true
}

// rawLeaf is a leaf node connection spoken by hand: CONNECT with a user
// JWT and the nonce signed, LS+ to subscribe, LMSG to publish.
type rawLeaf struct {
	conn net.Conn
	done chan struct{} // closed when the hub closes the connection
	mu   sync.Mutex
	got  map[string]bool // reply subjects answered
	subs []string        // subjects heard
	errs []string
}

// dialRawLeaf connects to a leaf URL with a credentials file.
func dialRawLeaf(t *testing.T, leafURL, credsFile string) *rawLeaf {
	t.Helper()
	u, err := url.Parse(leafURL)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := net.Dial("tcp", u.Host)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	r := bufio.NewReader(conn)
	line, err := r.ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "INFO ") {
		t.Fatalf("the hub's leaf INFO: %q %v", line, err)
	}
	var info struct {
		Nonce string `json:"nonce"`
	}
	if err := json.Unmarshal([]byte(strings.TrimPrefix(strings.TrimSpace(line), "INFO ")), &info); err != nil {
		t.Fatal(err)
	}
	creds, err := os.ReadFile(credsFile)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := jwt.ParseDecoratedJWT(creds)
	if err != nil {
		t.Fatal(err)
	}
	kp, err := jwt.ParseDecoratedUserNKey(creds)
	if err != nil {
		t.Fatal(err)
	}
	sig, err := kp.Sign([]byte(info.Nonce))
	if err != nil {
		t.Fatal(err)
	}
	connect, _ := json.Marshal(map[string]any{"jwt": tok, "sig": base64.RawURLEncoding.EncodeToString(sig), "name": "thief", "headers": true})
	l := &rawLeaf{conn: conn, got: map[string]bool{}, done: make(chan struct{})}
	l.write("CONNECT " + string(connect) + "\r\nPING\r\n")
	pong := make(chan struct{}, 1)
	go l.read(r, pong)
	select {
	case <-pong:
	case <-time.After(5 * time.Second):
		t.Fatalf("the hub did not accept the leaf connection: %q", l.errors())
	}
	return l
}

func (l *rawLeaf) write(s string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	_, _ = l.conn.Write([]byte(s))
}

// read handles what the hub sends until the connection closes.
func (l *rawLeaf) read(r *bufio.Reader, pong chan<- struct{}) {
	defer close(l.done)
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		switch f[0] {
		case "PING":
			l.write("PONG\r\n")
		case "PONG":
			select {
			case pong <- struct{}{}:
			default:
			}
		case "-ERR":
			l.mu.Lock()
			l.errs = append(l.errs, strings.TrimSpace(line))
			l.mu.Unlock()
		case "LMSG", "HLMSG":
			// LMSG subject [reply] size; HLMSG subject [reply] hdr size
			size, _ := strconv.Atoi(f[len(f)-1])
			if _, err := io.ReadFull(r, make([]byte, size+2)); err != nil {
				return
			}
			// The reply subject, when there is one, precedes the size (and
			// the header size).
			l.mu.Lock()
			l.subs = append(l.subs, f[1])
			l.got[f[1]] = true
			l.mu.Unlock()
		}
	}
}

// pub sends a message to the hub, with reply when not empty.
func (l *rawLeaf) pub(subject, reply, body string) {
	if reply != "" {
		l.write(fmt.Sprintf("LMSG %s %s %d\r\n%s\r\n", subject, reply, len(body), body))
		return
	}
	l.write(fmt.Sprintf("LMSG %s %d\r\n%s\r\n", subject, len(body), body))
}

// close closes the connection.
func (l *rawLeaf) close() { _ = l.conn.Close() }

// sub subscribes across the link.
func (l *rawLeaf) sub(subject string) { l.write("LS+ " + subject + "\r\n") }

// heard reports whether a message came on subject.
func (l *rawLeaf) heard(subject string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.got[subject]
}

// subjects are the subjects of every message the hub sent.
func (l *rawLeaf) subjects() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.subs...)
}

// errors are the hub's -ERR lines.
func (l *rawLeaf) errors() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.errs...)
}

// TestSiteAuthenticatedThroughACut: TestSiteWorksThroughACut with
// authentication, through pcm processes only: a hub started with --auth
// and --leaf-listen, the site's credentials made with pcm creds site, a
// site broker started with --site --auth --hub-creds and the hub's public
// JWTs, its clients enrolled with pcm enroll --site --site-url and their
// agents connected with their own credentials. A job with a package
// published at the hub is offered at the site; the link is cut before its
// mandatory time; the hub's pcm status and pcm agents say the site is
// unreachable; the job runs on every client during the cut, and a job is
// published at the hub; when the link returns every status reaches the hub
// once, in the site's order, and the new job runs at the site.
func TestSiteAuthenticatedThroughACut(t *testing.T) {
	testenv.SameInBothModes(t)
	t.Parallel() // it mostly waits on processes, the cut and the mandatory time
	start := time.Now()
	dir := t.TempDir()
	h := startPCM(t, dir, plainCLIEnv, "broker", "--data", filepath.Join(dir, "hub"), "--listen", "127.0.0.1:-1", "--leaf-listen", "127.0.0.1:-1", "--auth")
	hubURL := h.stdout.waitLine(t, brokerReadyLine, 15*time.Second)[1]
	leaf := h.stdout.waitLine(t, hubLeafLine, 5*time.Second)[1]
	hubAuth := filepath.Join(dir, "hub", "auth")
	issuer, adminCreds := filepath.Join(hubAuth, auth.IssuerFile), filepath.Join(hubAuth, auth.AdminCredsFile)

	// The site's credentials, made at the hub; the hub's public JWTs, copied
	// to the site.
	siteCreds := filepath.Join(dir, "branch-site.creds")
	if out, errOut, code := runPCM(t, plainCLIEnv, "creds", "site", siteName, "--out", siteCreds, "--issuer", issuer, "--url", hubURL); code != 0 {
		t.Fatalf("pcm creds site: exit %d: %s%s", code, out, errOut)
	}
	if err := auth.CopyPublic(hubAuth, filepath.Join(dir, "site", "auth")); err != nil {
		t.Fatal(err)
	}
	link := startLinkProxy(t, strings.TrimPrefix(leaf, "nats-leaf://"))
	sp := startPCM(t, dir, plainCLIEnv, "broker", "--data", filepath.Join(dir, "site"), "--listen", freeAddr(t),
		"--site", siteName, "--hub", link.URL(), "--hub-reconnect", "200ms", "--auth", "--hub-creds", siteCreds, "--drop-refused-after", "3s")
	siteURL := sp.stdout.waitLine(t, brokerReadyLine, 15*time.Second)[1]

	iss, err := auth.LoadIssuer(issuer)
	if err != nil {
		t.Fatal(err)
	}
	opt, err := iss.Option(auth.User{Role: auth.RoleAdmin, Name: "test"})
	if err != nil {
		t.Fatal(err)
	}
	adminAt := func(url string) jetstream.JetStream { return dial(t, url, opt) }
	ss := &siteSetup{dir: dir, hubURL: hubURL, siteURL: siteURL, hub: adminAt(hubURL), site: adminAt(siteURL), link: link}
	testenv.WaitFor(t, 15*time.Second, "the hub to see the site's authenticated link", func() bool {
		return fleet.SiteReachable(t.Context(), ss.hub.Conn(), siteName)
	})

	// The clients: the first enrolled with pcm enroll, the others through
	// package fleet; each agent with its own credentials.
	clients := siteClients(3)
	credsDir := filepath.Join(dir, "creds")
	out, errOut, code := runPCM(t, plainCLIEnv, "enroll", clients[0], "--site", siteName, "--site-url", siteURL, "--group", "branchfleet",
		"--ack-wait", testAckWait.String(), "--url", hubURL, "--issuer", issuer, "--out-dir", credsDir)
	if code != 0 || !strings.Contains(out, "at site "+siteName) {
		t.Fatalf("pcm enroll --site --site-url: exit %d, %s%s", code, out, errOut)
	}
	hubAccts, siteAccts := fleet.NewAccounts(ss.hub.Conn(), iss), fleet.NewAccounts(ss.site.Conn(), iss)
	for _, c := range clients[1:] {
		if _, err := fleet.EnrollAtAuthSite(t.Context(), ss.hub, hubAccts, ss.site, siteAccts, siteName, c, []string{"branchfleet"},
			fleet.ConsumerOptions{AckWait: testAckWait}); err != nil {
			t.Fatal(err)
		}
		creds, err := siteAccts.Issue(t.Context(), auth.User{Role: auth.RoleAgent, Name: c})
		if err != nil {
			t.Fatal(err)
		}
		if err := auth.WriteCreds(filepath.Join(credsDir, c+"-agent.creds"), creds); err != nil {
			t.Fatal(err)
		}
	}
	var agents []*runningAgent
	for _, c := range clients {
		a := startAgentWith(t, siteURL, c, filepath.Join(dir, "agents", c), []nats.Option{nats.UserCredentials(filepath.Join(credsDir, c+"-agent.creds"))})
		agents = append(agents, a)
	}
	for _, a := range agents {
		a.waitReady(t)
	}
	if _, err := ss.hub.Consumer(t.Context(), events.StreamJobs, events.ConsumerName(clients[0])); !errors.Is(err, jetstream.ErrConsumerNotFound) {
		t.Fatalf("%s has a consumer at the hub (%v): it is enrolled at the site", clients[0], err)
	}

	ss.pushPayload(t, 64<<10)
	const window = 6 * time.Second // until the mandatory time: room to see the offer and the package at the site
	first := publish(t, newPublisher(t, ss.hub), ss.markerJob(window))
	mandatory := time.Now().Add(window)
	ss.waitOffered(t, clients)
	testenv.CheckFor(t, 15*time.Second, 100*time.Millisecond, func() error {
		obs, err := ss.site.ObjectStore(t.Context(), events.BucketPackages)
		if err != nil {
			return err
		}
		_, err = obs.GetInfo(t.Context(), events.PackageObjectName("payload", "1"))
		return err
	})
	// The hub's PCM_AGENTS holds the site's clients' heartbeats, forwarded.
	testenv.CheckFor(t, 15*time.Second, 100*time.Millisecond, func() error {
		out, errOut, code := runPCM(t, plainCLIEnv, "agents", "--url", hubURL, "--creds", adminCreds)
		if code != 0 || strings.Count(out, "online") < len(clients) {
			return fmt.Errorf("pcm agents at the hub: exit %d, want the site's clients online:\n%s%s", code, out, errOut)
		}
		return nil
	})

	link.cut()
	cutAt := time.Now()
	if !cutAt.Before(mandatory) {
		t.Fatalf("the site took %s to receive the offer and its package: the link was cut after the mandatory time", window)
	}
	testenv.CheckFor(t, 15*time.Second, 200*time.Millisecond, func() error {
		out, errOut, code := runPCM(t, plainCLIEnv, "status", first, "--url", hubURL, "--creds", adminCreds)
		if code != 0 || strings.Count(out, "site "+siteName+" unreachable since") != len(clients) {
			return fmt.Errorf("pcm status at the hub during the cut: exit %d: %s%s", code, out, errOut)
		}
		return nil
	})
	testenv.CheckFor(t, 15*time.Second, 200*time.Millisecond, func() error {
		out, errOut, code := runPCM(t, plainCLIEnv, "agents", "--url", hubURL, "--creds", adminCreds)
		if code != 0 || strings.Count(out, "site "+siteName+" unreachable") != len(clients) {
			return fmt.Errorf("pcm agents at the hub during the cut: exit %d, want every site client behind an unreachable site:\n%s%s", code, out, errOut)
		}
		return nil
	})
	testenv.CheckFor(t, 20*time.Second, 100*time.Millisecond, func() error {
		for _, c := range clients {
			if markerLines(t, ss.marker(c, first)) == 0 {
				return fmt.Errorf("%s has not run it", c)
			}
		}
		return nil
	})
	for _, c := range clients {
		if fin := finals(readStatuses(t, ss.site, c, first)); len(fin) != 1 {
			t.Fatalf("%s: final statuses %+v at the site, want one", c, fin)
		}
		if atHub := readStatuses(t, ss.hub, c, first); len(atHub) != 0 {
			t.Fatalf("%s: %d statuses at the hub during the cut", c, len(atHub))
		}
	}
	t.Logf("every site client ran the job %s after the cut", time.Since(cutAt).Round(time.Millisecond))

	second := publish(t, newPublisher(t, ss.hub), ss.markerJob(0))

	link.restore()
	restored := time.Now()
	ss.checkStatusesOnce(t, clients, first)
	t.Logf("the statuses of the job run during the cut reached the hub %s after the link returned", time.Since(restored).Round(time.Millisecond))
	ss.checkStatusesOnce(t, clients, second)
	t.Logf("the job published during the cut ran at the site and its statuses reached the hub %s after the link returned", time.Since(restored).Round(time.Millisecond))
	// Enrolled back at the hub, a client is no longer the site's to
	// forward.
	imports := func() string {
		ac, err := hubAccts.Lookup(t.Context(), auth.Principal{Kind: auth.KindSite, Name: siteName})
		if err != nil || ac == nil {
			t.Fatalf("the site's account at the hub: %v", err)
		}
		var subjects []string
		for _, im := range ac.Imports {
			subjects = append(subjects, string(im.Subject))
		}
		return strings.Join(subjects, " ")
	}
	if !strings.Contains(imports(), events.StatusSubjectsOfClient(clients[0])) {
		t.Fatalf("the site's account at the hub does not import %s's statuses: %s", clients[0], imports())
	}
	if out, errOut, code := runPCM(t, plainCLIEnv, "enroll", clients[0], "--group", "branchfleet", "--url", hubURL, "--issuer", issuer, "--no-creds"); code != 0 {
		t.Fatalf("pcm enroll back at the hub: exit %d: %s%s", code, out, errOut)
	}
	if got := imports(); strings.Contains(got, events.StatusSubjectsOfClient(clients[0])) || !strings.Contains(got, events.StatusSubjectsOfClient(clients[1])) {
		t.Fatalf("the site's account at the hub after %s moved back: imports %s", clients[0], got)
	}
	// Its agent, still at the site, runs one more job and writes its
	// statuses there: the hub refuses them, the forwarder drops them, and
	// the other clients' statuses still reach the hub.
	third := publish(t, newPublisher(t, ss.hub), ss.markerJob(0))
	testenv.CheckFor(t, 20*time.Second, 100*time.Millisecond, func() error {
		if markerLines(t, ss.marker(clients[0], third)) == 0 {
			return fmt.Errorf("%s has not run %s at the site", clients[0], third)
		}
		return nil
	})
	ss.checkStatusesOnce(t, clients[1:], third)
	if atHub := readStatuses(t, ss.hub, clients[0], third); len(atHub) != 0 {
		t.Errorf("%s, enrolled back at the hub, has %d statuses of %s at the hub from the site", clients[0], len(atHub), third)
	}
	t.Logf("TestSiteAuthenticatedThroughACut took %s", time.Since(start).Round(time.Millisecond))
}
