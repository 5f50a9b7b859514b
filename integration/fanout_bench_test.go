//go:build linux

package integration_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/pcm-project/pcm/events"
	"github.com/pcm-project/pcm/publisher"
	"github.com/pcm-project/pcm/testenv"
)

// fanHostSize is how many clients one benchhost process serves: a pcm agent
// holds two file descriptors (its connection and its journal), so 5,000
// agents stay well inside a 20,000 open-file limit.
const fanHostSize = 5000

// fanRelaySize is how many clients one relay serves (PCM_BENCH_RELAY): a
// relay holds one descriptor per connection, and a fleet whose
// connections do not fit beside the broker's in this process's open-file
// limit (N = 20,000 here) is spread over relays: nats-servers without
// JetStream joined to the broker's leaf node listener, while the broker
// keeps every consumer, stream and lock (BENCHMARKS.md, "20,000 agents").
const fanRelaySize = 10000

// BenchmarkFanout publishes one offer to pcm.jobs.all and measures the time
// until every client has persisted its final status and acked the offer,
// for a fleet of real pcm agents (agent.New and Run, no-op runner, each with
// its own connection, durable consumer and fsynced journal) and for a bare
// nats.go baseline doing the same message pattern by hand (fetch, publish a
// status and wait for its PubAck, double-ack). Each fleet has its own
// embedded broker in this process; the clients live in child processes
// (testdata/benchhost), which keeps every process inside the open-file
// limit. Rounds of the fleets alternate when they all fit in the limit, and
// the fleets run one after the other otherwise. BENCHMARKS.md has the
// figures and what they mean.
//
//	go test -run '^$' -bench BenchmarkFanout -benchtime 1x -timeout 60m ./integration/
//
// PCM_BENCH_N (default 100,1000,5000,10000) and PCM_BENCH_ROUNDS (default
// 5) change the sizes and the measured rounds. PCM_BENCH_OVERLAY=FILE adds
// a third fleet, pcmo, of agents built with go build -overlay FILE (the
// agent's sources before a change, say, to compare both in one run).
// PCM_BENCH_SECURE=1 adds a fleet pcms: the same agents on a broker with
// authentication, each client in its own account with its own
// credentials (the trust model of docs/security.md), to measure what the
// accounts cost (its ratio to pcm is the secure/open figure).
// PCM_BENCH_RESTART=1 measures, after the rounds of the pcm fleet, the
// broker's idle CPU with every agent connected, then restarts its broker
// and times the agents' reconnection, with an offer published as soon as
// the broker is back (every agent must run and ack it: no offer lost).
// PCM_BENCH_RELAY=1 connects the clients through relays (fanRelaySize
// clients each), as a fleet too large for the open-file limit is anyway.
// PCM_BENCH_FLEETS=pcms (a comma-separated list) runs only those fleets
// besides the baseline. PCM_BENCH_NOSYNC=1 runs the agents' journals without fsync and
// PCM_BENCH_NOECHO=1 connects them with nats.NoEcho, to measure what those
// would save. PCM_BENCH_PROFILE=DIR writes CPU profiles of the broker and
// of the agents for the measured rounds.
func BenchmarkFanout(b *testing.B) {
	benchOpen(b)
	limit := benchRaiseNoFile(b)
	host := benchBuild(b, "benchhost")
	bins := map[string]string{"bare": host, "pcm": host}
	names := []string{"bare", "pcm"}
	if ov := os.Getenv("PCM_BENCH_OVERLAY"); ov != "" {
		bins["pcmo"] = benchBuildOverlay(b, "benchhost", ov)
		names = append(names, "pcmo")
	}
	if os.Getenv("PCM_BENCH_SECURE") == "1" {
		bins["pcms"] = host
		names = append(names, "pcms")
	}
	if only := os.Getenv("PCM_BENCH_FLEETS"); only != "" {
		names = slices.DeleteFunc(names, func(n string) bool { return n != "bare" && !slices.Contains(strings.Split(only, ","), n) })
	}
	rounds := benchEnvInts(b, "PCM_BENCH_ROUNDS", 5)[0]
	for _, n := range benchEnvInts(b, "PCM_BENCH_N", 100, 1000, 5000, 10000) {
		b.Run("N="+strconv.Itoa(n), func(b *testing.B) {
			for b.Loop() {
				fanCompare(b, bins, names, n, rounds, limit)
			}
		})
	}
}

// fanCompare runs the fleets (bare, pcm, and pcmo: pcm built with
// PCM_BENCH_OVERLAY) of n clients for rounds rounds each and reports.
func fanCompare(b *testing.B, bins map[string]string, names []string, n, rounds int, limit uint64) {
	profDir := os.Getenv("PCM_BENCH_PROFILE")
	// Clients beyond what this process can hold beside the brokers'
	// files connect through relays.
	relayed := uint64(n+1000) > limit || os.Getenv("PCM_BENCH_RELAY") == "1"
	var fleets []*fanFleet
	for _, name := range names {
		fleets = append(fleets, newFanFleet(b, name, n, bins[name], relayed))
	}
	// This process holds the server side of every connection of the
	// fleets that are up at once.
	together := uint64(len(fleets)*n+1000) <= limit && profDir == "" && !relayed
	var res = map[string][]fanRound{}
	run := func(f *fanFleet) { res[f.name] = append(res[f.name], f.round(b)) }
	if together {
		for _, f := range fleets {
			f.start(b)
		}
		idle := fleets[0].idleRate()
		for _, f := range fleets {
			f.idle = idle
			f.round(b) // warm-up: first delivery, first status, first lock
		}
		for i := range rounds { // rotate which fleet goes first
			for k := range fleets {
				run(fleets[(i+k)%len(fleets)])
			}
		}
		for _, f := range fleets {
			f.idleAndRestart(b)
		}
		for _, f := range fleets {
			f.stop(b)
		}
	} else {
		b.Logf("N=%d: %d open files allowed, relays %v; running the fleets one after the other", n, limit, relayed)
		for _, f := range fleets {
			f.start(b)
			f.idle = f.idleRate()
			f.round(b)
			if profDir != "" {
				f.startProfile(b, profDir)
			}
			for range rounds {
				run(f)
			}
			if profDir != "" {
				f.stopProfile(b)
			}
			f.idleAndRestart(b)
			f.stop(b)
		}
	}
	for _, f := range fleets {
		f.verify(b)
	}
	med := func(name string, get func(fanRound) time.Duration) time.Duration {
		var ds []time.Duration
		for _, r := range res[name] {
			ds = append(ds, get(r))
		}
		return benchPercentile(ds, 50)
	}
	el := func(r fanRound) time.Duration { return r.elapsed }
	cpu := func(r fanRound) time.Duration { return r.brokerCPU + r.fleetCPU }
	bcpu := func(r fanRound) time.Duration { return r.brokerCPU }
	fcpu := func(r fanRound) time.Duration { return r.fleetCPU }
	bareT, bareCPU := med("bare", el), med("bare", cpu)
	for _, f := range fleets {
		var s []string
		for _, r := range res[f.name] {
			s = append(s, benchMs(r.elapsed))
		}
		b.Logf("N=%d %s rounds (ms): %s", n, f.name, strings.Join(s, " "))
	}
	for _, f := range fleets {
		t := med(f.name, el)
		b.ReportMetric(float64(t)/1e6, f.name+"-ms")
		b.ReportMetric(float64(med(f.name, bcpu))/1e6, f.name+"-broker-cpu-ms")
		b.ReportMetric(float64(med(f.name, fcpu))/1e6, f.name+"-fleet-cpu-ms")
		if f.name == "bare" {
			continue
		}
		ratio, cpuRatio := float64(t)/float64(bareT), float64(med(f.name, cpu))/float64(bareCPU)
		brokerRatio := float64(med(f.name, bcpu)) / float64(med("bare", bcpu))
		b.ReportMetric(ratio, f.name+"-ratio")
		b.ReportMetric(cpuRatio, f.name+"-cpu-ratio")
		b.ReportMetric(brokerRatio, f.name+"-broker-cpu-ratio")
		benchSay(b, "N=%d | broker CPU per delivered job: %s %.1f µs, bare %.1f µs, ratio %.2f | fleet CPU per job: %s %.1f µs, bare %.1f µs",
			n, f.name, perJob(med(f.name, bcpu), n), perJob(med("bare", bcpu), n), brokerRatio,
			f.name, perJob(med(f.name, fcpu), n), perJob(med("bare", fcpu), n))
		if f.name == "pcms" {
			secure := float64(t) / float64(med("pcm", el))
			b.ReportMetric(secure, "secure/open-ratio")
			benchSay(b, "N=%d | secure/open %.2f (pcms %s ms, pcm %s ms) | broker CPU per round pcms %s ms, pcm %s ms",
				n, secure, benchMs(t), benchMs(med("pcm", el)), benchMs(med(f.name, bcpu)), benchMs(med("pcm", bcpu)))
		}
		benchSay(b, "N=%d | %s %s ms | bare %s ms | ratio %.2f | CPU per round, broker+fleet: %s %s+%s ms, bare %s+%s ms, ratio %.2f | broker heap per consumer %.1f KiB, per connected client %.1f KiB (bare %.1f KiB)",
			n, f.name, benchMs(t), benchMs(bareT), ratio,
			f.name, benchMs(med(f.name, bcpu)), benchMs(med(f.name, fcpu)), benchMs(med("bare", bcpu)), benchMs(med("bare", fcpu)), cpuRatio,
			float64(f.heapPerConsumer)/1024, float64(f.heapPerClient)/1024, float64(fleets[0].heapPerClient)/1024)
	}
	benchSay(b, "N=%d: this process idle at %.1f ms CPU per second (subtracted from the broker CPU of each round); load average: %s",
		n, fleets[0].idle*1e3, benchLoad())
}

// fanSettle is the pause at the end of every round, before its CPU is
// read: longer than what a pcm agent defers past its ack (the lock kept
// 250 ms, sent marks written after 200 ms).
const fanSettle = 600 * time.Millisecond

// perJob is d per delivered job of a round of n clients, in µs.
func perJob(d time.Duration, n int) float64 { return float64(d) / 1e3 / float64(n) }

// fanRound is one measured round.
type fanRound struct {
	elapsed   time.Duration // publish until the last ack
	brokerCPU time.Duration // this process (the brokers) and the fleet's relays during the round, less their idle CPU (fanFleet.idle)
	fleetCPU  time.Duration // the fleet's host processes during the round
}

// fanFleet is one fleet: its broker, its enrolled clients, its hosts.
type fanFleet struct {
	name string // bare, pcm, pcmo or pcms; the prefix of its client ids
	mode string // the benchhost mode: "pcm" or "bare"
	bin  string // the benchhost binary
	n    int
	env  *testenv.Broker
	dir  string
	pub  *publisher.Publisher
	acks *fanAcks

	hosts  []*benchHost
	offers int // offers published so far (their stream sequences are 1..offers)

	// relayed fleets connect through relays (PCM_BENCH_RELAY), a
	// broker's part: their CPU counts as the broker's.
	relayed   bool
	relays    []*benchHost
	relayURLs []string // the relays' client URLs, kept across a restart

	heapPerConsumer, heapPerClient int64
	relayRSSPerClient              int64 // the relays' resident memory per connected client
	// idle is this process's (and the relays') CPU per wall second while
	// every fleet up waits: subtracted from each round's broker CPU (at
	// N = 100 it would otherwise be most of it).
	idle float64
}

// brokerCPU is the CPU time used so far by this process and the fleet's
// relays.
func (f *fanFleet) brokerCPU(b *testing.B) time.Duration {
	return benchSelfCPU() + benchHostsCPU(b, f.relays)
}

// idleRate is the broker's CPU per second over 2 s of waiting.
func (f *fanFleet) idleRate() float64 {
	t0, c0 := time.Now(), benchSelfCPU()+benchHostsCPU(nil, f.relays)
	time.Sleep(2 * time.Second)
	return float64(benchSelfCPU()+benchHostsCPU(nil, f.relays)-c0) / float64(time.Since(t0))
}

// benchHostsCPU is the CPU time used so far by hosts (failing b, when not
// nil, on an error; otherwise counting what it can read).
func benchHostsCPU(b *testing.B, hosts []*benchHost) time.Duration {
	var total time.Duration
	for _, h := range hosts {
		d, err := benchProcCPU(h.cmd.Process.Pid)
		if err != nil && b != nil {
			b.Fatal(err)
		}
		total += d
	}
	return total
}

// startRelays starts the fleet's relays (on the same addresses as before
// after a restart) and waits for each to be joined to the broker.
func (f *fanFleet) startRelays(b *testing.B) {
	if !f.relayed {
		return
	}
	k := (f.n + fanRelaySize - 1) / fanRelaySize
	f.relays = make([]*benchHost, k)
	for i := range f.relays {
		listen := "127.0.0.1:-1"
		if i < len(f.relayURLs) {
			listen = strings.TrimPrefix(f.relayURLs[i], "nats://")
		}
		f.relays[i] = benchStartHost(b, f.bin, f.dir, "-mode", "relay", "-url", f.env.LeafURL, "-listen", listen)
	}
	f.relayURLs = f.relayURLs[:0]
	for _, r := range f.relays {
		f.relayURLs = append(f.relayURLs, strings.TrimSpace(strings.TrimPrefix(r.waitLine(b, "ready", time.Minute), "ready")))
	}
}

// stopRelays stops the fleet's relays.
func (f *fanFleet) stopRelays(b *testing.B) {
	for _, r := range f.relays {
		r.stop(b, time.Minute)
	}
}

// relaysRSS is the relays' resident memory.
func (f *fanFleet) relaysRSS(b *testing.B) int64 {
	var total int64
	for _, r := range f.relays {
		rss, _, _, err := benchProcMem(r.cmd.Process.Pid)
		if err != nil {
			b.Fatal(err)
		}
		total += rss
	}
	return total
}

func newFanFleet(b *testing.B, name string, n int, bin string, relayed bool) *fanFleet {
	var opts []testenv.Option
	if name == "pcms" {
		opts = append(opts, testenv.WithAuth())
	}
	if relayed {
		opts = append(opts, testenv.WithRelays())
	}
	env := testenv.StartBroker(b, opts...)
	benchDropJobsOnCleanup(b, env)
	mode := "pcm"
	if name == "bare" {
		mode = "bare"
	}
	f := &fanFleet{name: name, mode: mode, bin: bin, n: n, env: env, dir: b.TempDir(), relayed: relayed}
	f.pub = newPublisher(b, env.JS)
	if _, err := f.pub.Prepare(context.Background(), fanJob()); err != nil { // reads the retention once
		b.Fatal(err)
	}
	heap := benchHeap()
	took := benchEnroll(b, env.JS, name, n, nil)
	f.heapPerConsumer = (int64(benchHeap()) - int64(heap)) / int64(n)
	b.Logf("N=%d %s: enrolled %d clients in %s", n, name, n, took.Round(time.Millisecond))
	if env.Sec != nil {
		took := benchAccounts(b, env.Sec.Accounts(b), name, n)
		b.Logf("N=%d %s: made %d client accounts in %s", n, name, n, took.Round(time.Millisecond))
	}
	f.acks = newFanAcks(b, env.NC, n)
	return f
}

// start launches the hosts and waits until every client has a pull request
// waiting on its consumer.
func (f *fanFleet) start(b *testing.B) {
	f.writeHeapProfile(b, "enrolled")
	heap := benchHeap()
	began := time.Now()
	f.startRelays(b)
	rss := f.relaysRSS(b)
	hosts := make([]*benchHost, (f.n+fanHostSize-1)/fanHostSize)
	for i := range hosts {
		from, to := i*fanHostSize, min((i+1)*fanHostSize, f.n)
		url := f.env.URL
		if f.relayed {
			url = f.relayURLs[from/fanRelaySize]
		}
		args := []string{"-mode", f.mode, "-url", url, "-prefix", f.name,
			"-from", strconv.Itoa(from), "-to", strconv.Itoa(to), "-state", filepath.Join(f.dir, "agents")}
		if os.Getenv("PCM_BENCH_NOSYNC") == "1" {
			args = append(args, "-nosync")
		}
		if os.Getenv("PCM_BENCH_NOECHO") == "1" {
			args = append(args, "-noecho")
		}
		if f.env.Sec != nil {
			args = append(args, "-issuer", f.env.Sec.IssuerFile)
		}
		hosts[i] = benchStartHost(b, f.bin, f.dir, args...)
	}
	for _, h := range hosts { // they start their clients in parallel
		h.waitLine(b, "ready", 10*time.Minute)
	}
	f.hosts = hosts
	benchWaitConsumers(b, f.env.Server().Server(), 5*time.Minute, "every client to wait for offers",
		func(s benchConsumers) bool { return s.waiting == f.n })
	f.heapPerClient = (int64(benchHeap()) - int64(heap)) / int64(f.n)
	if f.relayed {
		f.relayRSSPerClient = (f.relaysRSS(b) - rss) / int64(f.n)
		benchSay(b, "N=%d %s: relays' resident memory %.1f KiB per connected client", f.n, f.name, float64(f.relayRSSPerClient)/1024)
	}
	f.writeHeapProfile(b, "ready")
	benchSay(b, "N=%d %s: %d clients ready in %s", f.n, f.name, f.n, time.Since(began).Round(time.Millisecond))
}

// round publishes one offer to pcm.jobs.all and waits until every client
// has acked it, then until every client waits for the next offer again.
func (f *fanFleet) round(b *testing.B) fanRound {
	f.offers++
	seq := uint64(f.offers)
	done := f.acks.expect(seq)
	w0, cpu0, fleet0 := time.Now(), f.brokerCPU(b), f.fleetCPU(b)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var msg *nats.Msg // the baseline's offer, encoded before the clock starts
	if f.mode == "bare" {
		ev, err := events.NewJobOffered(f.pub.Name(), fanJobPrepared(b, f.pub))
		if err != nil {
			b.Fatal(err)
		}
		if msg, err = events.NewMsg(events.JobSubject(events.Target{Kind: events.TargetAll}), ev, "offer."+ev.ID()+".all"); err != nil {
			b.Fatal(err)
		}
	}
	t0 := time.Now()
	if f.mode == "pcm" {
		if _, err := f.pub.Publish(ctx, fanJob()); err != nil {
			b.Fatal(err)
		}
	} else if _, err := f.env.JS.PublishMsg(ctx, msg); err != nil {
		b.Fatal(err)
	}
	var last time.Time
	select {
	case last = <-done:
	case <-time.After(10 * time.Minute):
		b.Fatalf("N=%d %s: offer %d acked by %d clients after 10 minutes", f.n, f.name, seq, f.acks.count(seq))
	}
	// The round's cost includes what the clients do after the ack (pcm:
	// releasing the lock); it ends when each waits for the next offer.
	benchWaitConsumers(b, f.env.Server().Server(), 5*time.Minute, "every client to wait for the next offer",
		func(s benchConsumers) bool { return s.waiting == f.n && s.ackPending == 0 && s.pending == 0 })
	// The same pause for every fleet, so that the work a client defers past
	// its ack (pcm: the lock released lockKeep after the job, the journal's
	// sent marks written after their delay) is in the round it belongs to.
	time.Sleep(fanSettle)
	busy := f.brokerCPU(b) - cpu0 - time.Duration(f.idle*float64(time.Since(w0)))
	return fanRound{elapsed: last.Sub(t0), brokerCPU: max(busy, 0), fleetCPU: f.fleetCPU(b) - fleet0}
}

// fleetCPU is the CPU time used so far by the fleet's hosts.
func (f *fanFleet) fleetCPU(b *testing.B) time.Duration { return benchHostsCPU(b, f.hosts) }

// startProfile starts CPU profiles of this process (the broker) and of the
// hosts, written to dir.
func (f *fanFleet) startProfile(b *testing.B, dir string) {
	p, err := os.Create(filepath.Join(dir, fmt.Sprintf("broker-%s-%d.pprof", f.name, f.n)))
	if err != nil {
		b.Fatal(err)
	}
	if err := pprof.StartCPUProfile(p); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { p.Close() })
	for i, h := range f.hosts {
		h.send(b, "cpuprofile "+filepath.Join(dir, fmt.Sprintf("fleet-%s-%d-%d.pprof", f.name, f.n, i)))
	}
}

// writeHeapProfile writes the broker's heap profile to PCM_BENCH_PROFILE
// (when set) as heap-NAME-N-STAGE.pprof: what the clients' connections
// cost is the difference of the ready and the enrolled profiles
// (go tool pprof -base heap-...-enrolled.pprof heap-...-ready.pprof).
func (f *fanFleet) writeHeapProfile(b *testing.B, stage string) {
	dir := os.Getenv("PCM_BENCH_PROFILE")
	if dir == "" {
		return
	}
	runtime.GC()
	p, err := os.Create(filepath.Join(dir, fmt.Sprintf("heap-%s-%d-%s.pprof", f.name, f.n, stage)))
	if err != nil {
		b.Fatal(err)
	}
	defer p.Close()
	if err := pprof.WriteHeapProfile(p); err != nil {
		b.Fatal(err)
	}
}

func (f *fanFleet) stopProfile(b *testing.B) {
	pprof.StopCPUProfile()
	for _, h := range f.hosts {
		h.send(b, "stopprofile")
		h.waitLine(b, "profiled", time.Minute)
	}
}

// stop stops the hosts.
func (f *fanFleet) stop(b *testing.B) {
	var wg sync.WaitGroup
	for _, h := range f.hosts {
		wg.Go(func() { h.stop(b, 2*time.Minute) })
	}
	wg.Wait()
	f.stopRelays(b)
}

// verify checks that every offer was acked by every client and that the
// statuses are stored: one per client and offer for the baseline, a
// started and a final one for pcm.
func (f *fanFleet) verify(b *testing.B) {
	s := benchConsumerState(b, f.env.Server().Server())
	if s.count != f.n || s.ackPending != 0 || s.pending != 0 || s.ackFloor != uint64(f.offers) {
		b.Fatalf("N=%d %s: consumers after %d offers: %+v", f.n, f.name, f.offers, s)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := f.env.JS.Stream(ctx, events.StreamStatus)
	if err != nil {
		b.Fatal(err)
	}
	want := uint64(f.n * f.offers)
	if f.mode == "pcm" {
		want *= 2
	}
	if got := st.CachedInfo().State.Msgs; got != want {
		b.Errorf("N=%d %s: %s holds %d statuses after %d offers, want %d", f.n, f.name, events.StreamStatus, got, f.offers, want)
	}
}

// fanJob is the offer of a round: mandatory now, automated, for every
// client (the no-op runner ignores its command).
func fanJob() events.JobOffered {
	return job([]string{"true"}, events.Target{Kind: events.TargetAll})
}

// fanJobPrepared is fanJob with the publisher's defaults applied.
func fanJobPrepared(b *testing.B, p *publisher.Publisher) events.JobOffered {
	j, err := p.Prepare(context.Background(), fanJob())
	if err != nil {
		b.Fatal(err)
	}
	return j
}

// fanAcks watches the acks of PCM_JOBS (a plain subscription to
// $JS.ACK.PCM_JOBS.>, which sees every ack as the server receives it) and
// tells when n distinct consumers have acked a given stream sequence.
type fanAcks struct {
	n   int
	mu  sync.Mutex
	seq map[uint64]*fanSeq
}

type fanSeq struct {
	seen map[string]struct{}
	done chan time.Time
}

func newFanAcks(b *testing.B, nc *nats.Conn, n int) *fanAcks {
	a := &fanAcks{n: n, seq: map[uint64]*fanSeq{}}
	sub, err := nc.Subscribe("$JS.ACK."+events.StreamJobs+".>", a.handle)
	if err != nil {
		b.Fatal(err)
	}
	if err := sub.SetPendingLimits(-1, -1); err != nil {
		b.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = sub.Unsubscribe() })
	return a
}

// handle counts an ack: $JS.ACK.<stream>.<consumer>.<delivered>.<sseq>...
// (or the v2 form with domain and account hash first).
func (a *fanAcks) handle(m *nats.Msg) {
	now := time.Now()
	if len(m.Data) > 0 && !strings.HasPrefix(string(m.Data), "+ACK") {
		return // +NAK, +WPI, +TERM
	}
	tok := strings.Split(m.Subject, ".")
	cons, seqTok := "", ""
	switch {
	case len(tok) == 9:
		cons, seqTok = tok[3], tok[5]
	case len(tok) >= 11:
		cons, seqTok = tok[5], tok[7]
	default:
		return
	}
	seq, err := strconv.ParseUint(seqTok, 10, 64)
	if err != nil {
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	s := a.entry(seq)
	if _, dup := s.seen[cons]; dup {
		return
	}
	s.seen[cons] = struct{}{}
	if len(s.seen) == a.n {
		s.done <- now
	}
}

func (a *fanAcks) entry(seq uint64) *fanSeq {
	s := a.seq[seq]
	if s == nil {
		s = &fanSeq{seen: map[string]struct{}{}, done: make(chan time.Time, 1)}
		a.seq[seq] = s
	}
	return s
}

// expect returns a channel that receives the time of the n-th distinct ack
// of seq.
func (a *fanAcks) expect(seq uint64) <-chan time.Time {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.entry(seq).done
}

func (a *fanAcks) count(seq uint64) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.entry(seq).seen)
}

// fanIdle is how long the idle CPU of a connected fleet is measured.
const fanIdle = 10 * time.Second

// idleAndRestart measures the pcm fleet's idle broker CPU and restarts its
// broker (PCM_BENCH_RESTART=1, see BenchmarkFanout).
func (f *fanFleet) idleAndRestart(b *testing.B) {
	if os.Getenv("PCM_BENCH_RESTART") != "1" || f.name != "pcm" {
		return
	}
	cpu0, fleet0 := f.brokerCPU(b), f.fleetCPU(b)
	time.Sleep(fanIdle)
	brokerIdle, fleetIdle := f.brokerCPU(b)-cpu0, f.fleetCPU(b)-fleet0
	runtime.GC()
	benchSay(b, "N=%d %s idle, every agent connected: broker (this process and the relays) %.1f ms CPU per second, %.2f µs per agent per second; fleet %.1f ms per second; broker heap %s MiB, %.1f KiB per enrolled and connected agent, and the relays' %.1f KiB",
		f.n, f.name, float64(brokerIdle)/1e6/fanIdle.Seconds(), float64(brokerIdle)/1e3/fanIdle.Seconds()/float64(f.n),
		float64(fleetIdle)/1e6/fanIdle.Seconds(), benchMiB(benchHeap()), float64(f.heapPerConsumer+f.heapPerClient)/1024,
		float64(f.relayRSSPerClient)/1024)

	// A relayed fleet's broker is the broker and its relays: all restart.
	t0 := time.Now()
	f.stopRelays(b)
	f.env.Stop()
	stopped := time.Since(t0)
	t1 := time.Now()
	f.env.Restart(b)
	f.startRelays(b)
	up := time.Now()
	f.offers++
	seq := uint64(f.offers)
	done := f.acks.expect(seq)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := f.pub.Publish(ctx, fanJob()); err != nil {
		b.Fatalf("publishing after the restart: %v", err)
	}
	var acked time.Time
	select {
	case acked = <-done:
	case <-time.After(10 * time.Minute):
		b.Fatalf("N=%d %s: the offer published after the restart acked by %d clients after 10 minutes", f.n, f.name, f.acks.count(seq))
	}
	benchWaitConsumers(b, f.env.Server().Server(), 5*time.Minute, "every client to wait for offers after the restart",
		func(s benchConsumers) bool { return s.waiting == f.n && s.ackPending == 0 && s.pending == 0 })
	waiting := time.Now()
	benchSay(b, "N=%d %s broker restart: stop %s, start to ready %s; from ready, the offer published at once acked by all %d agents in %s, all waiting for offers again in %s",
		f.n, f.name, stopped.Round(time.Millisecond), up.Sub(t1).Round(time.Millisecond), f.n,
		acked.Sub(up).Round(time.Millisecond), waiting.Sub(up).Round(time.Millisecond))
	b.ReportMetric(acked.Sub(up).Seconds(), "restart-all-acked-s")
}
