//go:build linux

package integration_test

// Helpers of the performance benchmarks (BENCHMARKS.md): building the
// helper programs under testdata/, the child processes that host simulated
// fleets, enrolling many clients, reading a process's CPU time and RSS from
// /proc, and small statistics. Everything here is named bench* so that it
// cannot collide with the helpers of the functional tests.

import (
	"bufio"
	"cmp"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/pcm-project/pcm/broker/auth"
	"github.com/pcm-project/pcm/events"
	"github.com/pcm-project/pcm/fleet"
	"github.com/pcm-project/pcm/testenv"
)

// benchBuild builds the program ./testdata/<name> into a temporary
// directory removed when b ends, and returns the path of the binary.
func benchBuild(b testing.TB, name string) string {
	b.Helper()
	path := filepath.Join(b.TempDir(), name)
	out, err := exec.Command("go", "build", "-o", path, "./testdata/"+name).CombinedOutput()
	if err != nil {
		b.Fatalf("building testdata/%s: %v\n%s", name, err, out)
	}
	return path
}

// benchBuildOverlay is benchBuild with go build -overlay overlay (a JSON
// file mapping source files to replacements).
func benchBuildOverlay(b testing.TB, name, overlay string) string {
	b.Helper()
	path := filepath.Join(b.TempDir(), name+"-overlay")
	out, err := exec.Command("go", "build", "-overlay", overlay, "-o", path, "./testdata/"+name).CombinedOutput()
	if err != nil {
		b.Fatalf("building testdata/%s with overlay %s: %v\n%s", name, overlay, err, out)
	}
	return path
}

// benchOpen skips b in the secure test mode (PCM_TEST_SECURE): the
// benchmarks measure the open embedded default, and their helper processes
// connect without credentials.
func benchOpen(b testing.TB) {
	b.Helper()
	if testenv.Secure() {
		b.Skipf("the benchmarks measure the open broker; unset %s", testenv.SecureEnv)
	}
}

// benchRaiseNoFile raises this process's soft open-file limit to the hard
// limit and returns it.
func benchRaiseNoFile(b testing.TB) uint64 {
	b.Helper()
	var l syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
		b.Fatal(err)
	}
	l.Cur = l.Max
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
		b.Fatal(err)
	}
	return l.Cur
}

// benchEnv reads an integer list from the environment (comma-separated),
// or returns def.
func benchEnvInts(b testing.TB, name string, def ...int) []int {
	b.Helper()
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	var out []int
	for _, f := range strings.Split(v, ",") {
		n, err := strconv.Atoi(strings.ReplaceAll(strings.TrimSpace(f), "_", ""))
		if err != nil || n <= 0 {
			b.Fatalf("%s=%q: want positive integers separated by commas", name, v)
		}
		out = append(out, n)
	}
	return out
}

// benchEnvDuration reads a duration from the environment, or returns def.
func benchEnvDuration(b testing.TB, name string, def time.Duration) time.Duration {
	b.Helper()
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		b.Fatalf("%s=%q: %v", name, v, err)
	}
	return d
}

// benchClientID is the id of client number i of a fleet; the same as
// testdata/benchhost's ClientID.
func benchClientID(prefix string, i int) string { return fmt.Sprintf("%s-%06d", prefix, i) }

// benchEnroll enrolls clients prefix-[0, n) with fleet.EnrollConsumer (the
// production consumer configuration), eight at a time, and returns how long
// it took. cfg, when not nil, replaces Enroll by a CreateOrUpdateConsumer of
// the configuration it returns (to compare consumer storage options).
func benchEnroll(b testing.TB, js jetstream.JetStream, prefix string, n int, cfg func(client string) jetstream.ConsumerConfig) time.Duration {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	start := time.Now()
	benchEach(b, prefix, n, func(client string) error {
		var err error
		if cfg != nil {
			_, err = js.CreateOrUpdateConsumer(ctx, events.StreamJobs, cfg(client))
		} else {
			_, err = fleet.EnrollConsumer(ctx, js, client, nil, fleet.ConsumerOptions{})
		}
		if err != nil {
			return fmt.Errorf("enrolling %s: %w", client, err)
		}
		return nil
	})
	return time.Since(start)
}

// benchAccounts makes the accounts of the clients prefix-[0, n) on an
// authenticated broker, eight at a time, and returns how long it took.
func benchAccounts(b testing.TB, accts *fleet.Accounts, prefix string, n int) time.Duration {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	start := time.Now()
	benchEach(b, prefix, n, func(client string) error {
		return accts.Ensure(ctx, auth.Principal{Kind: auth.KindClient, Name: client})
	})
	return time.Since(start)
}

// benchEach calls fn for the clients benchClientID(prefix, 0..n-1), eight at
// a time, and fails b with the first error.
func benchEach(b testing.TB, prefix string, n int, fn func(client string) error) {
	b.Helper()
	var (
		next   atomic.Int64
		wg     sync.WaitGroup
		failed atomic.Pointer[error]
	)
	for range 8 {
		wg.Go(func() {
			for failed.Load() == nil {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				if err := fn(benchClientID(prefix, i)); err != nil {
					failed.CompareAndSwap(nil, &err)
				}
			}
		})
	}
	wg.Wait()
	if err := failed.Load(); err != nil {
		b.Fatal(*err)
	}
}

// benchDropJobsOnCleanup deletes PCM_JOBS at cleanup, before the broker
// stops: stopping nats-server 2.15 stops file-backed consumers one by one,
// about 10 ms each, while deleting the stream removes them at once. Call it
// right after testenv.StartBroker (cleanups run last-in first-out).
func benchDropJobsOnCleanup(b testing.TB, env *testenv.Broker) {
	b.Cleanup(func() {
		if env.Server() == nil {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		if err := env.JS.DeleteStream(ctx, events.StreamJobs); err != nil {
			b.Logf("deleting %s before the broker stops: %v", events.StreamJobs, err)
		}
	})
}

// benchConsumers summarises the consumers of PCM_JOBS, read in-process
// from the server (no network round trip per consumer).
type benchConsumers struct {
	count      int
	waiting    int // pull requests waiting
	ackPending int
	pending    uint64
	ackFloor   uint64 // lowest stream ack floor
}

func benchConsumerState(b testing.TB, srv *server.Server) benchConsumers {
	b.Helper()
	// Every account's: the global one of an open broker, the pcm account
	// of an authenticated one.
	jsz, err := srv.Jsz(&server.JSzOptions{Accounts: true, Streams: true, Consumer: true})
	if err != nil {
		b.Fatal(err)
	}
	var streams []server.StreamDetail
	for _, acc := range jsz.AccountDetails {
		streams = append(streams, acc.Streams...)
	}
	var s benchConsumers
	first := true
	for _, st := range streams {
		if st.Name != events.StreamJobs {
			continue
		}
		for _, c := range st.Consumer {
			s.count++
			s.waiting += c.NumWaiting
			s.ackPending += c.NumAckPending
			s.pending += c.NumPending
			if first || c.AckFloor.Stream < s.ackFloor {
				s.ackFloor = c.AckFloor.Stream
			}
			first = false
		}
	}
	return s
}

// benchWaitConsumers polls the consumer state until cond holds.
func benchWaitConsumers(b testing.TB, srv *server.Server, timeout time.Duration, what string, cond func(benchConsumers) bool) benchConsumers {
	b.Helper()
	var s benchConsumers
	testenv.CheckFor(b, timeout, 20*time.Millisecond, func() error {
		if s = benchConsumerState(b, srv); !cond(s) {
			return fmt.Errorf("waiting for %s: consumers %+v", what, s)
		}
		return nil
	})
	return s
}

// benchHost is a child process hosting part of a fleet (testdata/benchhost).
type benchHost struct {
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	lines  chan string
	exited chan error
	log    string
}

// benchStartHost starts a host; wait for it with waitLine(b, "ready", ...).
func benchStartHost(b testing.TB, bin, logDir string, args ...string) *benchHost {
	b.Helper()
	cmd := exec.Command(bin, args...)
	logf := filepath.Join(logDir, fmt.Sprintf("host-%d.log", time.Now().UnixNano()))
	f, err := os.Create(logf)
	if err != nil {
		b.Fatal(err)
	}
	cmd.Stderr = f
	stdin, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	h := &benchHost{cmd: cmd, stdin: stdin, lines: make(chan string, 16), exited: make(chan error, 1), log: logf}
	go func() {
		s := bufio.NewScanner(out)
		for s.Scan() {
			h.lines <- s.Text()
		}
		close(h.lines)
	}()
	go func() { h.exited <- cmd.Wait(); f.Close() }()
	b.Cleanup(func() { h.stop(b, time.Minute) })
	return h
}

// waitLine waits for a stdout line starting with prefix and returns it.
func (h *benchHost) waitLine(b testing.TB, prefix string, timeout time.Duration) string {
	b.Helper()
	deadline := time.After(timeout)
	for {
		select {
		case l, ok := <-h.lines:
			if !ok {
				log, _ := os.ReadFile(h.log)
				b.Fatalf("benchhost exited before printing %q: %s", prefix, tail(string(log), 2000))
			}
			if strings.HasPrefix(l, prefix) {
				return l
			}
		case <-deadline:
			b.Fatalf("benchhost printed no %q line within %s", prefix, timeout)
			return ""
		}
	}
}

// send writes a command line to the host's stdin.
func (h *benchHost) send(b testing.TB, line string) {
	b.Helper()
	if _, err := io.WriteString(h.stdin, line+"\n"); err != nil {
		b.Fatalf("benchhost: %v", err)
	}
}

// stop closes the host's stdin (it stops its clients and exits) and waits,
// killing it after timeout. Stopping a stopped host does nothing.
func (h *benchHost) stop(b testing.TB, timeout time.Duration) {
	if h.stdin == nil {
		return
	}
	h.stdin.Close()
	h.stdin = nil
	select {
	case err := <-h.exited:
		log, _ := os.ReadFile(h.log)
		if err != nil {
			b.Errorf("benchhost exited with %v: %s", err, tail(string(log), 2000))
		} else if len(log) > 0 {
			lines := strings.Split(strings.TrimSpace(string(log)), "\n")
			b.Logf("benchhost %s wrote %d lines on stderr, the first: %s", strings.Join(h.cmd.Args[1:7], " "), len(lines),
				strings.Join(lines[:min(3, len(lines))], " | "))
		}
	case <-time.After(timeout):
		_ = h.cmd.Process.Kill()
		<-h.exited
		b.Errorf("benchhost did not stop within %s; killed", timeout)
	}
}

// benchClockTick is USER_HZ, the unit of utime and stime in /proc/<pid>/stat
// (100 on every Linux platform Go supports).
const benchClockTick = 100

// benchProcCPU is the user+system CPU time of process pid so far.
func benchProcCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, err
	}
	// Fields after the command name (which may hold spaces) in parentheses.
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(f))
	}
	utime, err1 := strconv.ParseInt(f[11], 10, 64)
	stime, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("/proc/%d/stat: utime %q stime %q", pid, f[11], f[12])
	}
	return time.Duration(utime+stime) * time.Second / benchClockTick, nil
}

// benchProcRunTime is the time the threads of pid have spent on a CPU, in
// nanoseconds, summed from /proc/<pid>/task/*/schedstat: finer than
// benchProcCPU's clock ticks (threads that exited are not counted).
func benchProcRunTime(pid int) (time.Duration, error) {
	tasks, err := filepath.Glob("/proc/" + strconv.Itoa(pid) + "/task/*/schedstat")
	if err != nil {
		return 0, err
	}
	var total int64
	for _, t := range tasks {
		b, err := os.ReadFile(t)
		if err != nil {
			continue // the thread exited
		}
		f := strings.Fields(string(b))
		if len(f) == 0 {
			continue
		}
		ns, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("%s: %q", t, b)
		}
		total += ns
	}
	return time.Duration(total), nil
}

// benchProcMem reads VmRSS, RssAnon and VmHWM of pid from
// /proc/<pid>/status, in bytes.
func benchProcMem(pid int) (rss, anon, hwm int64, err error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0, 0, 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		var dst *int64
		switch k {
		case "VmRSS":
			dst = &rss
		case "RssAnon":
			dst = &anon
		case "VmHWM":
			dst = &hwm
		default:
			continue
		}
		kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		if err != nil {
			return 0, 0, 0, fmt.Errorf("/proc/%d/status %s: %q", pid, k, v)
		}
		*dst = kb << 10
	}
	return rss, anon, hwm, nil
}

// benchSelfCPU is this process's user+system CPU time so far.
func benchSelfCPU() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// benchHeap is the live heap of this process after a full collection.
func benchHeap() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapInuse
}

// benchPercentile is the p-th percentile (0..100, nearest rank) of ds.
func benchPercentile[T cmp.Ordered](ds []T, p float64) T {
	var zero T
	if len(ds) == 0 {
		return zero
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := int(p/100*float64(len(s))+0.5) - 1
	return s[min(max(i, 0), len(s)-1)]
}

// benchMs renders d in milliseconds with two decimals.
// benchSay logs a result line and prints it on stdout too: go test keeps
// only the first lines a benchmark logs.
func benchSay(b testing.TB, format string, args ...any) {
	b.Helper()
	b.Logf(format, args...)
	fmt.Printf("    "+format+"\n", args...)
}

func benchMs(d time.Duration) string {
	return fmt.Sprintf("%.2f", float64(d)/float64(time.Millisecond))
}

// benchMiB renders n bytes in MiB with one decimal.
func benchMiB[T int64 | uint64 | int](n T) string { return fmt.Sprintf("%.1f", float64(n)/(1<<20)) }

// benchLoad is the 1, 5 and 15 minute load averages, to tell how busy the
// shared machine was.
func benchLoad() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}
