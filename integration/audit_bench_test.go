package integration_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/pcm-project/pcm/events"
	"github.com/pcm-project/pcm/testenv"
)

// storeHistory stores the events numbered [from, to) of a synthetic
// history: for each job an offer on PCM_JOBS, then a started and a
// succeeded status (with a 256-byte output tail) on PCM_STATUS, so that the
// replay merges both streams. Publishes are asynchronous, in windows.
func storeHistory(b *testing.B, js jetstream.JetStream, from, to int) {
	b.Helper()
	now := time.Now().UTC()
	tail := strings.Repeat("installing files... ", 13)[:256]
	for i := from; i < to; i++ {
		jobID := fmt.Sprintf("bench-%07d", i/3)
		client := fmt.Sprintf("ws-%04d", (i/3)%1000)
		var (
			ev      event.Event
			subject string
			err     error
		)
		switch i % 3 {
		case 0:
			j := job([]string{"msiexec", "/i", "app.msi", "/qn"}, toGroup("lab"))
			j.JobID = jobID
			j.ExpireAfter = now.Add(time.Hour)
			subject = events.JobSubject(toGroup("lab"))
			ev, err = events.NewJobOffered("bench", j)
		default:
			state := events.StateStarted
			if i%3 == 2 {
				state = events.StateSucceeded
			}
			exit := 0
			st := events.JobStatus{JobID: jobID, ClientID: client, Host: client, State: state, Attempt: 1, Runner: events.RunnerService,
				User: "root", ExitCode: &exit, OutputTail: tail, AgentVersion: "bench", Platform: "linux/amd64"}
			subject = events.StatusSubject(client, jobID)
			ev, err = events.NewJobStatus(st)
		}
		if err != nil {
			b.Fatal(err)
		}
		msg, err := events.NewMsg(subject, ev, "")
		if err != nil {
			b.Fatal(err)
		}
		if _, err := js.PublishMsgAsync(msg); err != nil {
			b.Fatal(err)
		}
		if i%4000 == 3999 {
			waitPublished(b, js)
		}
	}
	waitPublished(b, js)
}

// waitPublished waits for every asynchronous publish to be acknowledged.
func waitPublished(b *testing.B, js jetstream.JetStream) {
	b.Helper()
	select {
	case <-js.PublishAsyncComplete():
	case <-time.After(30 * time.Second):
		b.Fatal("asynchronous publishes not acknowledged after 30s")
	}
}

// replayResult is one run of pcm audit.
type replayResult struct {
	events   int
	elapsed  time.Duration
	maxRSS   int64 // bytes, pcm's peak
	launcher int64 // bytes, the launcher's RSS when it started pcm
}

func (r replayResult) rate() float64 { return float64(r.events) / r.elapsed.Seconds() }

// launcherEnv makes the test binary, re-executed, a launcher: it runs the
// command given as a JSON list in the variable with stdin, stdout and
// stderr inherited, and reports the command's wall time and peak RSS (from
// its rusage) on stderr.
//
// Why a launcher: Go starts a child with vfork (CLONE_VM), and Linux
// records the RSS high-water mark of the memory the child execs from into
// the child's ru_maxrss, so a pcm started by this test process would report
// the test's own peak RSS (which holds an embedded broker with 200,000
// events) whenever that is higher. The launcher is a small process; what
// it reports is pcm's own peak unless pcm stays below the launcher's RSS,
// which it reports too.
const launcherEnv = "PCM_TEST_RUSAGE_LAUNCH"

func init() {
	spec := os.Getenv(launcherEnv)
	if spec == "" {
		return
	}
	var args []string
	if err := json.Unmarshal([]byte(spec), &args); err != nil || len(args) == 0 {
		fmt.Fprintln(os.Stderr, "launcher: bad command:", spec)
		os.Exit(100)
	}
	own := selfRSS()
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, launcherEnv+"=") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	start := time.Now()
	err := cmd.Run()
	elapsed := time.Since(start)
	code := 0
	if err != nil {
		code = 101
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		}
		fmt.Fprintln(os.Stderr, "launcher:", err)
	}
	if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		// Linux reports ru_maxrss in KiB.
		fmt.Fprintf(os.Stderr, "\nlauncher-result maxrss-kib=%d launcher-rss-kib=%d elapsed-ns=%d\n", ru.Maxrss, own/1024, elapsed.Nanoseconds())
	}
	os.Exit(code)
}

// selfRSS is this process's resident set size in bytes (0 when unknown).
func selfRSS() int64 {
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return 0
	}
	var size, resident int64
	if _, err := fmt.Sscan(string(b), &size, &resident); err != nil {
		return 0
	}
	return resident * int64(os.Getpagesize())
}

var launcherResult = regexp.MustCompile(`launcher-result maxrss-kib=(\d+) launcher-rss-kib=(\d+) elapsed-ns=(\d+)`)

// replay runs pcm audit -o json over the whole history through the
// launcher, stdout to /dev/null (or counted, when count is set), and
// returns pcm's wall time and peak RSS.
func replay(b *testing.B, url string, events int, count bool) replayResult {
	b.Helper()
	if runtime.GOOS != "linux" {
		b.Skip("peak RSS is read from Linux's rusage")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	spec, _ := json.Marshal([]string{pcmBinary, "audit", "--url", url, "-o", "json"})
	cmd := exec.CommandContext(ctx, os.Args[0])
	cmd.Env = append(os.Environ(), launcherEnv+"="+string(spec))
	var stderr strings.Builder
	cmd.Stderr = &stderr
	lines := make(chan int, 1)
	if count {
		out, err := cmd.StdoutPipe()
		if err != nil {
			b.Fatal(err)
		}
		go func() {
			n := 0
			s := bufio.NewScanner(out)
			s.Buffer(make([]byte, 1<<20), 1<<20)
			for s.Scan() {
				n++
			}
			lines <- n
		}()
	} else {
		null, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
		if err != nil {
			b.Fatal(err)
		}
		defer null.Close()
		cmd.Stdout = null
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	if count {
		if n := <-lines; n != events {
			b.Fatalf("pcm audit printed %d events, want %d", n, events)
		}
	}
	if err := cmd.Wait(); err != nil {
		b.Fatalf("pcm audit: %v: %s", err, tail(stderr.String(), 2000))
	}
	m := launcherResult.FindStringSubmatch(stderr.String())
	if m == nil {
		b.Fatalf("the launcher reported no result: %s", tail(stderr.String(), 2000))
	}
	maxKiB, _ := strconv.ParseInt(m[1], 10, 64)
	ownKiB, _ := strconv.ParseInt(m[2], 10, 64)
	ns, _ := strconv.ParseInt(m[3], 10, 64)
	return replayResult{events: events, elapsed: time.Duration(ns), maxRSS: maxKiB * 1024, launcher: ownKiB * 1024}
}

// BenchmarkAuditReplay stores 200,000 events (an offer and two statuses per
// job) and replays them through pcm audit -o json to /dev/null, reporting
// events/s and the child's peak RSS. The peak RSS must stay within 2x of a
// replay of the first 20,000 events: the replay streams, its memory does not
// grow with the history. Run it with:
//
//	go test -run '^$' -bench BenchmarkAuditReplay -benchtime 1x ./integration/
func BenchmarkAuditReplay(b *testing.B) {
	const small, large = 20_000, 200_000
	env := testenv.StartBroker(b)
	start := time.Now()
	storeHistory(b, env.JS, 0, small)
	base := replay(b, env.URL, small, true) // counted: every event is printed
	storeHistory(b, env.JS, small, large)
	b.Logf("stored %d events in %s", large, time.Since(start).Round(time.Millisecond))
	b.ResetTimer()
	var res replayResult
	for b.Loop() {
		res = replay(b, env.URL, large, false)
	}
	b.ReportMetric(res.rate(), "events/s")
	b.ReportMetric(float64(res.maxRSS)/(1<<20), "peakRSS-MiB")
	b.ReportMetric(float64(base.maxRSS)/(1<<20), "peakRSS-20k-MiB")
	b.Logf("%d events: %s, %.0f events/s, peak RSS %.1f MiB; %d events: %s, %.0f events/s, peak RSS %.1f MiB (launcher RSS %.1f MiB)",
		large, res.elapsed.Round(time.Millisecond), res.rate(), float64(res.maxRSS)/(1<<20),
		small, base.elapsed.Round(time.Millisecond), base.rate(), float64(base.maxRSS)/(1<<20), float64(res.launcher)/(1<<20))
	if res.maxRSS > 2*base.maxRSS {
		b.Fatalf("peak RSS %d bytes for %d events is more than twice the %d bytes for %d: the replay does not stream",
			res.maxRSS, large, base.maxRSS, small)
	}
}
