package integration_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/pcm-project/pcm/broker/auth"
	"github.com/pcm-project/pcm/console"
	"github.com/pcm-project/pcm/events"
	"github.com/pcm-project/pcm/fleet"
	"github.com/pcm-project/pcm/testenv"
)

// sseViewer is one open event stream of a job page: the count of clients
// succeeded in the last update it read.
type sseViewer struct {
	first     chan struct{}
	succeeded atomic.Int64
	updates   atomic.Int64
	halted    atomic.Bool
}

// openViewer opens a job page's event stream on the console at base and
// reads it until ctx ends.
func openViewer(ctx context.Context, t testing.TB, base, token, job string) *sseViewer {
	t.Helper()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+"/api/jobs/"+job+"/events", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("the job's event stream answered %s", resp.Status)
	}
	v := &sseViewer{first: make(chan struct{})}
	go func() {
		defer resp.Body.Close()
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(make([]byte, 1<<20), 64<<20)
		var once sync.Once
		for sc.Scan() {
			data, ok := strings.CutPrefix(sc.Text(), "data: ")
			if !ok {
				continue
			}
			var jv console.JobView
			if json.Unmarshal([]byte(data), &jv) != nil {
				continue
			}
			v.updates.Add(1)
			v.succeeded.Store(int64(jv.Counts[console.StateSucceeded]))
			v.halted.Store(jv.Halted != "")
			once.Do(func() { close(v.first) })
		}
	}()
	return v
}

// consoleSubs are the subjects the console's connection subscribes to, as
// the broker sees them.
func consoleSubs(t testing.TB, env *testenv.Broker, name string) []string {
	t.Helper()
	cz, err := env.Server().Server().Connz(&server.ConnzOptions{Subscriptions: true, Limit: 10000})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range cz.Conns {
		if c.Name == name {
			subs := slices.Clone(c.Subs)
			slices.Sort(subs)
			return subs
		}
	}
	t.Fatalf("the broker has no connection named %q", name)
	return nil
}

// procCPU is the CPU time a process has used (Linux).
func procCPU(t testing.TB, pid int) time.Duration {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * (time.Second / 100) // USER_HZ is 100 on Linux
}

// consoleLoad runs a pcm console process on a broker with clients
// enrolled clients and a job for all of them, opens viewers event streams
// on the job's page, publishes a succeeded status for every client and
// returns the console's CPU time per status, once every viewer has seen
// them all. It checks that the console's subscriptions at the broker do not
// grow with the viewers: one on the job's statuses, whatever their number.
func consoleLoad(t testing.TB, clients, viewers int) time.Duration {
	if runtime.GOOS != "linux" {
		t.Skip("reads the console's CPU time in /proc")
	}
	env := testenv.StartBroker(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	names := make([]string, clients)
	var wg sync.WaitGroup
	errs := make(chan error, clients)
	for i := range names {
		names[i] = fmt.Sprintf("load%04d", i)
	}
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < clients; i += 8 {
				if _, err := fleet.EnrollConsumer(ctx, env.JS, names[i], []string{"load"}, fleet.ConsumerOptions{}); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	later := time.Now().Add(time.Hour).UTC()
	j := job([]string{"true"}, toGroup("load"))
	j.MandatoryAfter = &later
	id := publish(t, newPublisher(t, env.JS), j)

	dir := t.TempDir()
	users := filepath.Join(dir, "users")
	if err := os.WriteFile(users, []byte("viewer vic "+viewerToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var procEnv []string
	for _, e := range env.Sec.ProcessEnv() {
		if !strings.HasPrefix(e, "PCM_CREDS=") && !strings.HasPrefix(e, "PCM_ISSUER=") {
			procEnv = append(procEnv, e)
		}
	}
	if env.Sec != nil && env.Sec.AdminCreds != "" {
		procEnv = append(procEnv, "PCM_CREDS="+env.Sec.Creds(t, auth.User{Role: auth.RoleAuditor, Name: "loadconsole"}))
	}
	p := startPCM(t, dir, procEnv, "console", "--url", env.URL, "--addr", "127.0.0.1:0", "--users", users)
	base := p.stdout.waitLine(t, regexp.MustCompile(`^pcm console: (http://\S+)/ `), 30*time.Second)[1]
	testenv.CheckFor(t, 30*time.Second, 50*time.Millisecond, func() error {
		resp, err := http.Get(base + "/readyz")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("/readyz: %s", resp.Status)
		}
		return nil
	})

	open := make([]*sseViewer, 0, viewers)
	wait := func(vs []*sseViewer) {
		for _, v := range vs {
			select {
			case <-v.first:
			case <-time.After(60 * time.Second):
				t.Fatal("a viewer had no update of the job page within 60s")
			}
		}
	}
	open = append(open, openViewer(ctx, t, base, viewerToken, id))
	wait(open)
	one := consoleSubs(t, env, "pcm console")
	for range viewers - 1 {
		open = append(open, openViewer(ctx, t, base, viewerToken, id))
	}
	wait(open)
	many := consoleSubs(t, env, "pcm console")
	if !slices.Equal(one, many) {
		t.Errorf("the console's subscriptions grew with its viewers:\n 1 viewer:  %v\n %d viewers: %v", one, viewers, many)
	}
	onJob := 0
	for _, s := range many {
		if strings.HasSuffix(s, "."+id) {
			onJob++
		}
	}
	if onJob != 1 {
		t.Errorf("the console subscribes %d times to the statuses of job %s, want once for %d viewers: %v", onJob, id, viewers, many)
	}
	t.Logf("the console's subscriptions with %d viewers: %v", viewers, many)

	cpu0 := procCPU(t, p.cmd.Process.Pid)
	start := time.Now()
	now := time.Now().UTC()
	for _, c := range names {
		st := events.JobStatus{JobID: id, ClientID: c, Host: c, State: events.StateSucceeded, Attempt: 1, MaxAttempts: 1,
			Runner: events.RunnerService, StartedAt: &now, FinishedAt: &now, ExitCode: new(int)}
		ev, err := events.NewJobStatus(st)
		if err != nil {
			t.Fatal(err)
		}
		msg, err := events.NewMsg(events.StatusSubject(c, id), ev, st.ID())
		if err != nil {
			t.Fatal(err)
		}
		if _, err := env.JS.PublishMsgAsync(msg); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case <-env.JS.PublishAsyncComplete():
	case <-time.After(60 * time.Second):
		t.Fatal("statuses not acked within 60s")
	}
	testenv.CheckFor(t, 120*time.Second, 20*time.Millisecond, func() error {
		for i, v := range open {
			if n := v.succeeded.Load(); n != int64(clients) {
				return fmt.Errorf("viewer %d sees %d clients succeeded, want %d", i, n, clients)
			}
		}
		return nil
	})
	elapsed := time.Since(start)
	cpu := procCPU(t, p.cmd.Process.Pid) - cpu0
	var updates int64
	for _, v := range open {
		updates += v.updates.Load()
	}
	per := cpu / time.Duration(clients)
	t.Logf("%d statuses to %d viewers in %s: console CPU %s (%s per status event), %d updates sent", clients, viewers, elapsed.Round(time.Millisecond),
		cpu, per, updates)
	return per
}

// TestConsoleLoad: 1,000 clients and 50 viewers of one job page; the
// console subscribes once to the job's statuses, whatever the viewers, and
// every viewer sees every status.
func TestConsoleLoad(t *testing.T) {
	consoleLoad(t, 1000, 50)
}
