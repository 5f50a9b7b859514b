package integration_test

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/pcm-project/pcm/events"
	"github.com/pcm-project/pcm/fleet"
	"github.com/pcm-project/pcm/packages"
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
		{[]string{"--site", "b", "--hub", "nats-leaf://127.0.0.1:7422", "--auth"}, "--site with --auth is not supported yet"},
		{[]string{"--site", "b"}, "--site needs --hub"},
		{[]string{"--hub", "nats-leaf://127.0.0.1:7422"}, "--hub needs --site"},
		{[]string{"--site", "hub", "--hub", "nats-leaf://127.0.0.1:7422"}, "named like the hub's domain"},
		{[]string{"--site", "b.c", "--hub", "nats-leaf://127.0.0.1:7422"}, "site name"},
		{[]string{"--leaf-listen", "127.0.0.1:-1", "--auth"}, "does not accept sites yet"},
	} {
		args := append([]string{"broker", "--data", filepath.Join(dir, "data"), "--listen", "127.0.0.1:-1"}, tc.args...)
		_, errOut, code := runPCM(t, plainCLIEnv, args...)
		if code == 0 || !strings.Contains(errOut, tc.want) {
			t.Errorf("pcm %s: exit %d, stderr %q; want a refusal saying %q", strings.Join(tc.args, " "), code, errOut, tc.want)
		}
	}
}
