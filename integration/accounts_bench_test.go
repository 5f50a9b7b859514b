//go:build linux

package integration_test

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime/pprof"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pcm-project/pcm/testenv"
)

// BenchmarkClientAccounts measures what a client's account costs the broker
// when its agent connects (nats-server loads the account on its first
// connection): the time of a connection and the broker's heap per
// connected client, at N clients connected, against the same connections
// to an open broker in the same run (the baseline). The clients live in a
// child process (testdata/benchhost -mode idle), which connects them one
// after the other, each with its agent's credentials on the secure broker,
// subscribing as an agent does (its statuses and its lock key); the
// broker is in this process, so the heap growth is the broker's. The
// connections of the last tenth are timed: nats-server checks every loaded
// account when it loads a new one, so a connection costs more the more
// accounts are loaded (BENCHMARKS.md, "Issue 12").
//
//	go test -run '^$' -bench BenchmarkClientAccounts -benchtime 1x -timeout 90m ./integration/
//
// PCM_BENCH_N (default 1000,5000) sets the sizes; 10,000 takes about ten
// minutes on two cores. PCM_BENCH_PROFILE=DIR writes CPU profiles of the
// broker while each fleet connects (accounts-open-N.pprof,
// accounts-secure-N.pprof).
func BenchmarkClientAccounts(b *testing.B) {
	benchOpen(b)
	benchRaiseNoFile(b)
	host := benchBuild(b, "benchhost")
	for _, n := range benchEnvInts(b, "PCM_BENCH_N", 1000, 5000) {
		b.Run(fmt.Sprintf("N=%d", n), func(b *testing.B) {
			open := accountsFleet(b, host, n, false)
			secure := accountsFleet(b, host, n, true)
			ratio := float64(secure.lastConnect) / float64(open.lastConnect)
			b.ReportMetric(float64(open.lastConnect.Microseconds())/1000, "open-connect-ms")
			b.ReportMetric(float64(secure.lastConnect.Microseconds())/1000, "secure-connect-ms")
			b.ReportMetric(ratio, "secure/open-connect")
			b.ReportMetric(float64(open.heap)/float64(n)/1024, "open-KiB")
			b.ReportMetric(float64(secure.heap)/float64(n)/1024, "secure-KiB")
			benchSay(b, "N=%d | a connection at N: open %s ms, secure %s ms (%.1fx), slowest secure %s ms | all N connected in: open %s, secure %s | broker heap per connected client: open %.1f KiB, secure %.1f KiB (the account %.1f KiB)",
				n, benchMs(open.lastConnect), benchMs(secure.lastConnect), ratio, benchMs(secure.slowest),
				open.all.Round(time.Millisecond), secure.all.Round(time.Millisecond),
				float64(open.heap)/float64(n)/1024, float64(secure.heap)/float64(n)/1024, float64(secure.heap-open.heap)/float64(n)/1024)
		})
	}
}

// accountsResult is what connecting one fleet cost.
type accountsResult struct {
	lastConnect time.Duration // mean time of a connection over the last tenth
	slowest     time.Duration // the slowest connection
	all         time.Duration // connecting the whole fleet
	heap        int64         // the broker's heap growth
}

// accountsFleet connects n idle agents (with their accounts when secure)
// to a fresh broker, one after the other, measures, and stops them.
func accountsFleet(b *testing.B, host string, n int, secure bool) accountsResult {
	var opts []testenv.Option
	if secure {
		opts = append(opts, testenv.WithAuth())
	}
	env := testenv.StartBroker(b, append(opts, testenv.WithoutView())...)
	prefix := "open"
	args := []string{"-mode", "idle", "-parallel", "1", "-url", env.URL, "-from", "0", "-to", strconv.Itoa(n)}
	if secure {
		prefix = "secure"
		took := benchAccounts(b, env.Sec.Accounts(b), prefix, n)
		b.Logf("N=%d: made %d client accounts in %s", n, n, took.Round(time.Millisecond))
		args = append(args, "-issuer", env.Sec.IssuerFile)
	}
	heap := benchHeap()
	stopProfile := accountsProfile(b, fmt.Sprintf("accounts-%s-%d.pprof", prefix, n))
	start := time.Now()
	h := benchStartHost(b, host, b.TempDir(), append(args, "-prefix", prefix)...)
	line := h.waitLine(b, "ready", time.Hour)
	stopProfile()
	res := accountsResult{all: time.Since(start), heap: int64(benchHeap()) - int64(heap)}
	h.stop(b, time.Minute) // its connections hold this process's descriptors too
	for _, f := range strings.Fields(line) {
		k, v, _ := strings.Cut(f, "=")
		us, err := strconv.ParseInt(v, 10, 64)
		switch {
		case k == "tail-us" && err == nil:
			res.lastConnect = time.Duration(us) * time.Microsecond
		case k == "max-us" && err == nil:
			res.slowest = time.Duration(us) * time.Microsecond
		}
	}
	if res.lastConnect == 0 {
		b.Fatalf("benchhost said %q: no connection times", line)
	}
	return res
}

// accountsProfile starts a CPU profile of this process (the broker) into
// PCM_BENCH_PROFILE/name when that is set, and returns what stops it.
func accountsProfile(b *testing.B, name string) (stop func()) {
	dir := os.Getenv("PCM_BENCH_PROFILE")
	if dir == "" {
		return func() {}
	}
	f, err := os.Create(filepath.Join(dir, name))
	if err != nil {
		b.Fatal(err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		b.Fatal(err)
	}
	return func() {
		pprof.StopCPUProfile()
		f.Close()
	}
}
