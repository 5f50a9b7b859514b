//go:build linux

package integration_test

import (
	"context"
	"encoding/json"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/pcm-project/pcm/events"
	"github.com/pcm-project/pcm/fleet"
	"github.com/pcm-project/pcm/testenv"
)

// BenchmarkIdleAgent runs an idle pcm agent (the built binary, production
// defaults) next to a bare nats.go client holding one consumer the same way
// (testdata/bareclient), both against an embedded broker, and measures over
// PCM_BENCH_IDLE (default and minimum 30s) each process's RSS and CPU time
// per idle second (from /proc/<pid>/stat, and from the threads' schedstat
// for sub-tick precision), and the messages each exchanged with the broker.
//
//	go test -run '^$' -bench BenchmarkIdleAgent -benchtime 1x ./integration/
func BenchmarkIdleAgent(b *testing.B) {
	benchOpen(b)
	window := max(benchEnvDuration(b, "PCM_BENCH_IDLE", 30*time.Second), 30*time.Second)
	bareBin := benchBuild(b, "bareclient")
	leanBin := benchBuild(b, "leanagent")
	env := testenv.StartBroker(b)
	for _, c := range []string{"idle-pcm", "idle-bare", "idle-lean"} {
		if _, err := fleet.EnrollConsumer(context.Background(), env.JS, c, nil, fleet.ConsumerOptions{}); err != nil {
			b.Fatal(err)
		}
	}
	dir := b.TempDir()
	agentProc := startPCM(b, dir, nil, "agent", "--url", env.URL, "--client-id", "idle-pcm", "--state-dir", filepath.Join(dir, "state"))
	bare := exec.Command(bareBin, "-url", env.URL, "-consumer", events.ConsumerName("idle-bare"))
	bareOut, err := bare.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	bare.Stderr = os.Stderr
	lean := exec.Command(leanBin, "-url", env.URL, "-client-id", "idle-lean", "-state-dir", filepath.Join(dir, "lean"))
	lean.Stderr = io.Discard
	for _, c := range []*exec.Cmd{bare, lean} {
		if err := c.Start(); err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = c.Process.Signal(syscall.SIGTERM); _ = c.Wait() })
	}
	newLineReader(bareOut).waitLine(b, regexp.MustCompile(`^ready$`), 30*time.Second)
	srv := env.Server().Server()
	benchWaitConsumers(b, srv, 30*time.Second, "the clients to wait for offers", func(s benchConsumers) bool { return s.waiting == 3 })

	type sample struct {
		cpu, run          time.Duration
		rss, anon, maxRSS int64
		inMsgs, outMsgs   int64
		inBytes, outBytes int64
	}
	procs := []struct {
		name string
		pid  int
		conn string // connection name prefix
	}{
		{"pcm agent", agentProc.cmd.Process.Pid, "pcm agent idle-pcm"},
		{"bare client", bare.Process.Pid, "bareclient agent-idle-bare"},
		{"lean agent", lean.Process.Pid, "pcm agent idle-lean"},
	}
	read := func() []sample {
		cz, err := srv.Connz(&server.ConnzOptions{})
		if err != nil {
			b.Fatal(err)
		}
		out := make([]sample, len(procs))
		for i, p := range procs {
			cpu, err := benchProcCPU(p.pid)
			if err != nil {
				b.Fatal(err)
			}
			run, err := benchProcRunTime(p.pid)
			if err != nil {
				b.Fatal(err)
			}
			rss, anon, _, err := benchProcMem(p.pid)
			if err != nil {
				b.Fatal(err)
			}
			out[i] = sample{cpu: cpu, run: run, rss: rss, anon: anon, maxRSS: rss}
			for _, c := range cz.Conns {
				if strings.HasPrefix(c.Name, p.conn) {
					out[i].inMsgs, out[i].outMsgs, out[i].inBytes, out[i].outBytes = c.InMsgs, c.OutMsgs, c.InBytes, c.OutBytes
				}
			}
		}
		return out
	}
	// Let both finish starting (first heartbeat, first pull) before the
	// window opens.
	time.Sleep(5 * time.Second)
	for b.Loop() {
		start := read()
		maxRSS := make([]int64, len(procs))
		t0 := time.Now()
		for time.Since(t0) < window {
			time.Sleep(time.Second)
			for i, s := range read() {
				maxRSS[i] = max(maxRSS[i], s.rss)
			}
		}
		end := read()
		secs := time.Since(t0).Seconds()
		for i, p := range procs {
			s, e := start[i], end[i]
			cpuPerSec := float64(e.run-s.run) / 1e6 / secs
			b.Logf("%-11s RSS %s MiB (anon %s MiB, max %s MiB) | CPU %.3f ms per idle second (schedstat; /proc/stat ticks: %s ms over %.0f s) | in the window it received %d msgs (%d B) and sent %d msgs (%d B)",
				p.name, benchMiB(e.rss), benchMiB(e.anon), benchMiB(maxRSS[i]), cpuPerSec, benchMs(e.cpu-s.cpu), secs,
				e.outMsgs-s.outMsgs, e.outBytes-s.outBytes, e.inMsgs-s.inMsgs, e.inBytes-s.inBytes)
			key := strings.ReplaceAll(p.name, " ", "-")
			b.ReportMetric(float64(e.rss)/(1<<20), key+"-RSS-MiB")
			b.ReportMetric(cpuPerSec, key+"-cpu-ms/s")
		}
		b.ReportMetric(float64(end[0].rss)/float64(end[1].rss), "RSS-ratio")
		b.ReportMetric(float64(end[2].rss)/float64(end[1].rss), "lean-RSS-ratio")
	}
}

// BenchmarkBrokerMemory measures what an enrolled client costs the broker:
// the live heap (after a full GC) and the RSS of this process, and the
// store on disk, before and after PCM_BENCH_CONSUMERS (default 10,000)
// clients are enrolled (fleet.EnrollConsumer: one durable file-backed consumer
// each), then after each also wrote its inventory entry in PCM_AGENTS.
//
//	go test -run '^$' -bench BenchmarkBrokerMemory -benchtime 1x ./integration/
func BenchmarkBrokerMemory(b *testing.B) {
	benchOpen(b)
	n := benchEnvInts(b, "PCM_BENCH_CONSUMERS", 10000)[0]
	for b.Loop() {
		env := testenv.StartBroker(b)
		benchDropJobsOnCleanup(b, env)
		heap0 := benchHeap()
		rss0, _, _, _ := benchProcMem(os.Getpid())
		disk0 := benchDirSize(env.Dir)
		took := benchEnroll(b, env.JS, "mem", n, nil)
		heap1 := benchHeap()
		rss1, _, _, _ := benchProcMem(os.Getpid())
		disk1 := benchDirSize(env.Dir)

		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		kv, err := env.JS.KeyValue(ctx, events.BucketAgents)
		if err != nil {
			b.Fatal(err)
		}
		for i := range n {
			c := benchClientID("mem", i)
			v, _ := json.Marshal(events.AgentInfo{ClientID: c, Host: c, OS: "linux", Arch: "amd64", Version: "bench",
				StartedAt: time.Now().UTC(), LastSeen: time.Now().UTC(), Heartbeat: events.Duration(30 * time.Second)})
			if _, err := kv.Put(ctx, c, v); err != nil {
				b.Fatal(err)
			}
		}
		cancel()
		heap2 := benchHeap()
		rss2, _, _, _ := benchProcMem(os.Getpid())
		disk2 := benchDirSize(env.Dir)

		per := func(a, z int64) float64 { return float64(z-a) / float64(n) / 1024 }
		b.Logf("%d consumers enrolled in %s: broker heap +%.1f KiB, RSS +%.1f KiB, disk +%.1f KiB per consumer",
			n, took.Round(time.Millisecond), per(int64(heap0), int64(heap1)), per(rss0, rss1), per(disk0, disk1))
		b.Logf("plus one inventory entry each: heap +%.1f KiB, RSS +%.1f KiB, disk +%.1f KiB per client; total heap %.1f KiB per enrolled client",
			per(int64(heap1), int64(heap2)), per(rss1, rss2), per(disk1, disk2), per(int64(heap0), int64(heap2)))
		b.ReportMetric(per(int64(heap0), int64(heap2)), "heap-KiB/agent")
		b.ReportMetric(per(rss0, rss2), "RSS-KiB/agent")
		b.ReportMetric(per(disk0, disk2), "disk-KiB/agent")
	}
}

// benchDirSize is the disk usage of the files under dir.
func benchDirSize(dir string) int64 {
	var total int64
	_ = filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return nil
		}
		if info, err := d.Info(); err == nil {
			if st, ok := info.Sys().(*syscall.Stat_t); ok {
				total += st.Blocks * 512
			}
		}
		return nil
	})
	return total
}

// BenchmarkBrokerRestart measures pcm broker (the built binary) with
// PCM_BENCH_CONSUMERS (default 10,000) enrolled clients: the shutdown time
// (SIGTERM to exit), the start-to-ready time on the same data (launch to
// the "pcm broker ready" line) and the clients still enrolled after the
// restart, for two consumer storages: file (fleet.EnrollConsumer, what pcm
// does) and memory (the same configuration with MemoryStorage).
//
//	go test -run '^$' -bench BenchmarkBrokerRestart -benchtime 1x -timeout 30m ./integration/
func BenchmarkBrokerRestart(b *testing.B) {
	benchOpen(b)
	n := benchEnvInts(b, "PCM_BENCH_CONSUMERS", 10000)[0]
	memory := func(client string) jetstream.ConsumerConfig {
		return jetstream.ConsumerConfig{
			Durable:        events.ConsumerName(client),
			Description:    "pcm jobs of client " + client,
			FilterSubjects: events.ConsumerFilters(client, nil),
			AckPolicy:      jetstream.AckExplicitPolicy,
			DeliverPolicy:  jetstream.DeliverAllPolicy,
			AckWait:        fleet.DefaultAckWait,
			MaxDeliver:     -1,
			MaxAckPending:  fleet.DefaultMaxAckPending,
			MemoryStorage:  true,
			Metadata:       map[string]string{events.ConsumerMetadataClient: client, events.ConsumerMetadataGroups: ""},
		}
	}
	for _, v := range []struct {
		name string
		cfg  func(string) jetstream.ConsumerConfig
		env  []string
	}{
		{"storage=file", nil, nil},
		{"storage=memory", memory, nil},
	} {
		b.Run(v.name, func(b *testing.B) {
			for b.Loop() {
				brokerRestart(b, n, v.cfg, v.env)
			}
		})
	}
}

func brokerRestart(b *testing.B, n int, cfg func(string) jetstream.ConsumerConfig, env []string) {
	dir := b.TempDir()
	data := filepath.Join(dir, "data")
	start := func() (*proc, string, time.Duration) {
		t0 := time.Now()
		p := startPCM(b, dir, env, "broker", "--data", data, "--listen", "127.0.0.1:-1")
		url := p.stdout.waitLine(b, brokerReadyLine, 10*time.Minute)[1]
		return p, url, time.Since(t0)
	}
	stop := func(p *proc) time.Duration {
		t0 := time.Now()
		if err := p.stopGracefully(b, 30*time.Minute); err != nil {
			b.Fatalf("pcm broker exited with %v on SIGTERM", err)
		}
		return time.Since(t0)
	}
	consumers := func(url string) int {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		s, err := dial(b, url).Stream(ctx, events.StreamJobs)
		if err != nil {
			b.Fatal(err)
		}
		return s.CachedInfo().State.Consumers
	}

	p, url, fresh := start()
	js := dial(b, url)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := js.Publish(ctx, events.JobSubject(events.Target{Kind: events.TargetAll}), []byte("an offer pending for everyone")); err != nil {
		b.Fatal(err)
	}
	took := benchEnroll(b, js, "rst", n, cfg)
	before := consumers(url)
	down1 := stop(p)
	p2, url2, ready := start()
	after := consumers(url2)
	down2 := stop(p2)
	b.Logf("%d consumers (enrolled in %s): fresh start-to-ready %s; shutdown %s (%.2f ms per consumer); restart start-to-ready %s with %d consumers recovered; second shutdown %s",
		before, took.Round(time.Millisecond), fresh.Round(time.Millisecond), down1.Round(time.Millisecond),
		float64(down1)/1e6/float64(max(before, 1)), ready.Round(time.Millisecond), after, down2.Round(time.Millisecond))
	b.ReportMetric(down1.Seconds(), "shutdown-s")
	b.ReportMetric(ready.Seconds(), "restart-ready-s")
	b.ReportMetric(float64(after), "consumers-after-restart")
	if before != n {
		b.Errorf("%d consumers before the restart, want %d", before, n)
	}
}
