package integration_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/pcm-project/pcm/broker/auth"
	"github.com/pcm-project/pcm/console"
	"github.com/pcm-project/pcm/events"
	"github.com/pcm-project/pcm/publisher"
	"github.com/pcm-project/pcm/testenv"
	"github.com/pcm-project/pcm/testenv/browser"
)

// The console users of the tests.
const (
	operatorToken = "operator-token-0123456789"
	viewerToken   = "viewer-token-0123456789"
)

// runningConsole is a console served on loopback for a test.
type runningConsole struct {
	c   *console.Console
	srv *httptest.Server
	nc  *nats.Conn
}

// startConsole runs a console connected to env as a principal of role (an
// auditor reads; a publisher's or an admin's console acts), with an
// operator and a viewer.
func startConsole(t testing.TB, env *testenv.Broker, role auth.Role, name string) *runningConsole {
	t.Helper()
	nc, err := nats.Connect(env.URL, append([]nats.Option{nats.Name("console " + name)},
		testenv.ClientOptions(t, env.URL, auth.User{Role: role, Name: name})...)...)
	if err != nil {
		t.Fatal(err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	cfg := console.Config{JS: js, Throttle: 100 * time.Millisecond, Refresh: time.Second,
		Users: console.NewUsers(console.NewUser("olga", console.RoleOperator, operatorToken), console.NewUser("vic", console.RoleViewer, viewerToken))}
	if role == auth.RolePublisher || role == auth.RoleAdmin {
		if cfg.Publisher, err = publisher.New(js, publisher.Config{Name: name}); err != nil {
			t.Fatal(err)
		}
	}
	c, err := console.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	srv := httptest.NewServer(c.Handler())
	t.Cleanup(func() {
		srv.CloseClientConnections()
		cancel()
		srv.Close()
		if err := <-done; err != nil {
			t.Errorf("console: %v", err)
		}
		nc.Close()
	})
	testenv.CheckFor(t, 10*time.Second, 20*time.Millisecond, c.Ready)
	return &runningConsole{c: c, srv: srv, nc: nc}
}

// post asks the console's API for an action with token.
func (rc *runningConsole) post(t testing.TB, token, path string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, rc.srv.URL+path, strings.NewReader("{}"))
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("X-PCM-Console", "1")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// domCounts reads the job page's counts by state.
func domCounts(ctx context.Context) (map[string]int, error) {
	return chromedp.Run(ctx, chromedp.Evaluate[map[string]int](
		`Object.fromEntries([...document.querySelectorAll('#counts .count')].map(e => [e.id.replace('count-', ''), +e.querySelector('b').textContent]))`))
}

// waitDOMCount waits until the job page counts n clients in state.
func waitDOMCount(t testing.TB, ctx context.Context, state string, n int) {
	t.Helper()
	testenv.CheckFor(t, 60*time.Second, 100*time.Millisecond, func() error {
		got, err := domCounts(ctx)
		if err != nil {
			return err
		}
		if got[state] != n {
			return fmt.Errorf("waiting for the page to count %d clients %s: %v", n, state, got)
		}
		return nil
	})
}

// TestConsoleJobPageLive drives the console in a real Chromium: 20 clients
// (18 with an agent), a job that fails on 5 of them; the job page's counts
// follow the statuses live without a reload, the chart draws, a client
// with no agent says why it has not run; a job held for its mandatory time
// is cancelled from the page and no client starts it; a viewer sees no
// action and the API refuses the viewer's.
func TestConsoleJobPageLive(t *testing.T) {
	env := testenv.StartBroker(t)
	var clients []string
	for i := range 20 {
		c := fmt.Sprintf("c%02d", i)
		clients = append(clients, c)
		enroll(t, env.JS, c, "fleet")
	}
	for _, c := range clients[:18] {
		startAgent(t, env.URL, c, t.TempDir())
	}
	rc := startConsole(t, env, auth.RolePublisher, "console")
	ctx := browser.New(t, 3*time.Minute)
	if err := chromedp.Do(ctx, chromedp.Navigate(rc.srv.URL+"/login?token="+operatorToken), chromedp.WaitVisible(chromedp.CSS("#jobs"))); err != nil {
		t.Fatal(err)
	}

	p := newPublisher(t, env.JS)
	j := job([]string{"sh", "-c", `n=${PCM_CLIENT_ID#c}; n=${n#0}; sleep $((1 + n % 4)); case "$PCM_CLIENT_ID" in c0[0-4]) echo "boom on $PCM_CLIENT_ID"; exit 3;; *) echo fine;; esac`}, toGroup("fleet"))
	j.Name = "fails-on-five"
	id := publish(t, p, j)

	// The jobs list shows it, live.
	if err := chromedp.Do(ctx, chromedp.WaitVisible(chromedp.CSS(`tr[data-job="`+id+`"]`))); err != nil {
		t.Fatalf("the jobs list does not show the job: %v", err)
	}
	if err := chromedp.Do(ctx, chromedp.Navigate(rc.srv.URL+"/jobs/"+id), chromedp.WaitVisible(chromedp.CSS("#counts .count"))); err != nil {
		t.Fatal(err)
	}
	if _, err := chromedp.Run(ctx, chromedp.Evaluate[int](`window.__sameLoad = 1`)); err != nil {
		t.Fatal(err)
	}
	want := map[string]int{"succeeded": 13, "failed": 5, "offline": 2}
	var seen []int
	testenv.CheckFor(t, 90*time.Second, 100*time.Millisecond, func() error {
		got, err := domCounts(ctx)
		if err != nil {
			return err
		}
		done := got["succeeded"] + got["failed"]
		if len(seen) == 0 || seen[len(seen)-1] != done {
			seen = append(seen, done)
		}
		sum := 0
		for s, n := range got {
			if s != "total" {
				sum += n
			}
		}
		if sum != 20 {
			return fmt.Errorf("the counts %v add up to %d clients, not 20", got, sum)
		}
		for s, n := range want {
			if got[s] != n {
				return fmt.Errorf("the page counts %v, want %v", got, want)
			}
		}
		return nil
	})
	t.Logf("finished clients as the page showed them: %v", seen)
	for i := 1; i < len(seen); i++ {
		if seen[i] < seen[i-1] {
			t.Errorf("the finished count went back: %v", seen)
		}
	}
	// The clients finish in four waves a second apart: the page shows
	// some of them finished before all are.
	if !slices.ContainsFunc(seen, func(n int) bool { return n > 0 && n < 18 }) {
		t.Errorf("the page never showed some clients finished and others not (%v): the counts must arrive as the statuses do", seen)
	}
	same, err := chromedp.Run(ctx, chromedp.Evaluate[int](`window.__sameLoad || 0`))
	if err != nil || same != 1 {
		t.Errorf("the page was reloaded (marker %d, %v): the counts must arrive live", same, err)
	}
	series, err := chromedp.Run(ctx, chromedp.Evaluate[[]string](`[...document.querySelectorAll('#chart path.series')].map(p => p.dataset.state + ':' + (p.getAttribute('d').match(/L/g) || []).length)`))
	if err != nil {
		t.Fatal(err)
	}
	if len(series) != 2 || !strings.HasPrefix(series[0], "succeeded:") || !strings.HasPrefix(series[1], "failed:") {
		t.Errorf("the chart draws %v, want a succeeded and a failed series", series)
	}
	why, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(`tr[data-client="c19"] td.why`)))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(why, "offline") || !strings.Contains(why, "never seen") {
		t.Errorf("c19 has no agent; its row says %q", why)
	}
	failedWhy, _ := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(`tr[data-client="c02"] td:nth-child(2)`)))
	if failedWhy != "failed" {
		t.Errorf("c02's row says %q, want failed", failedWhy)
	}
	browser.Screenshot(ctx, t, "job")

	// A job held for its mandatory time, cancelled from the page.
	held := job([]string{"sh", "-c", "echo must not run"}, toGroup("fleet"))
	later := time.Now().Add(time.Hour).UTC()
	held.MandatoryAfter = &later
	held.Name = "held-then-cancelled"
	heldID := publish(t, p, held)
	if err := chromedp.Do(ctx, chromedp.Navigate(rc.srv.URL+"/jobs/"+heldID), chromedp.WaitVisible(chromedp.CSS("#cancel"))); err != nil {
		t.Fatal(err)
	}
	waitDOMCount(t, ctx, "pending", 18)
	if _, err := chromedp.Run(ctx, chromedp.Evaluate[int](`(window.confirm = () => true, 1)`)); err != nil {
		t.Fatal(err)
	}
	if err := chromedp.Do(ctx, chromedp.Click(chromedp.CSS("#cancel")), chromedp.WaitVisible(chromedp.CSS("#act-done"))); err != nil {
		t.Fatal(err)
	}
	waitDOMCount(t, ctx, "cancelled", 18)
	for _, c := range clients[:18] {
		for _, st := range readStatuses(t, env.JS, c, heldID) {
			if st.State == events.StateStarted {
				t.Errorf("%s started the cancelled job", c)
			}
		}
	}
	browser.Screenshot(ctx, t, "job-cancelled")

	// The other pages.
	for _, pg := range []struct{ path, ready, name string }{
		{"/", `tr[data-job="` + id + `"]`, "jobs"},
		{"/fleet", `tr[data-client="c00"]`, "fleet"},
		{"/fleet/c03", "#history", "client"},
		{"/audit?job=" + id, "#audit tr[data-seq]", "audit"},
	} {
		if err := chromedp.Do(ctx, chromedp.Navigate(rc.srv.URL+pg.path), chromedp.WaitVisible(chromedp.CSS(pg.ready))); err != nil {
			t.Fatalf("%s: %v", pg.path, err)
		}
		browser.Screenshot(ctx, t, pg.name)
	}
	if err := chromedp.Do(ctx, chromedp.Click(chromedp.CSS("#audit tr[data-seq]"))); err != nil {
		t.Fatal(err)
	}
	stored, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS("#event-json")))
	if err != nil || !strings.Contains(stored, `"specversion"`) {
		t.Errorf("the audit page shows %q as the stored event (%v)", stored, err)
	}

	// A viewer sees no action; the API refuses it.
	if err := chromedp.Do(ctx, chromedp.Navigate(rc.srv.URL+"/login?token="+viewerToken), chromedp.WaitVisible(chromedp.CSS("#jobs")),
		chromedp.Navigate(rc.srv.URL+"/jobs/"+id), chromedp.WaitVisible(chromedp.CSS("#read-only"))); err != nil {
		t.Fatal(err)
	}
	buttons, err := chromedp.Run(ctx, chromedp.Evaluate[int](`document.querySelectorAll('#actions button').length`))
	if err != nil || buttons != 0 {
		t.Errorf("a viewer sees %d action buttons (%v)", buttons, err)
	}
	status, err := chromedp.Run(ctx, chromedp.Evaluate[int](`fetch('/api/jobs/`+id+`/halt', {method: 'POST', headers: {'X-PCM-Console': '1'}}).then(r => r.status)`,
		chromedp.EvalAwaitPromise))
	if err != nil || status != http.StatusForbidden {
		t.Errorf("a viewer's halt from the page answered %d (%v), want 403", status, err)
	}
	if code, body := rc.post(t, viewerToken, "/api/jobs/"+id+"/cancel"); code != http.StatusForbidden {
		t.Errorf("a viewer's cancel answered %d %s, want 403", code, body)
	}
	browser.Screenshot(ctx, t, "job-viewer")
}

// TestConsoleReadOnly: a console with an auditor's credentials shows no
// action to anyone and refuses them all.
func TestConsoleReadOnly(t *testing.T) {
	env := testenv.StartBroker(t)
	enroll(t, env.JS, "ro1")
	id := publish(t, newPublisher(t, env.JS), job([]string{"true"}, toClient("ro1")))
	rc := startConsole(t, env, auth.RoleAuditor, "watcher")
	for _, a := range []string{"cancel", "halt", "resume"} {
		if code, body := rc.post(t, operatorToken, "/api/jobs/"+id+"/"+a); code != http.StatusForbidden {
			t.Errorf("%s on a read-only console answered %d %s, want 403", a, code, body)
		}
	}
	req, _ := http.NewRequest(http.MethodGet, rc.srv.URL+"/api/jobs", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("the API without a login answered %d, want 401", resp.StatusCode)
	}
	for _, p := range []string{"/healthz", "/readyz"} {
		resp, err := http.Get(rc.srv.URL + p)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("%s answered %d", p, resp.StatusCode)
		}
	}
}

// TestConsoleAcrossBrokerRestart: a console keeps serving across a
// restart of its broker: the jobs list and a new job's page follow what
// happens after it, and it is ready again.
func TestConsoleAcrossBrokerRestart(t *testing.T) {
	env := testenv.StartBroker(t)
	enroll(t, env.JS, "r1")
	startAgent(t, env.URL, "r1", t.TempDir()).waitReady(t)
	rc := startConsole(t, env, auth.RoleAuditor, "restart")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	succeeded := func(v *sseViewer) func() error {
		return func() error {
			if n := v.succeeded.Load(); n != 1 {
				return fmt.Errorf("the job page counts %d clients succeeded, want 1", n)
			}
			return nil
		}
	}
	id := publish(t, newPublisher(t, env.JS), job([]string{"true"}, toClient("r1")))
	testenv.CheckFor(t, 30*time.Second, 50*time.Millisecond, succeeded(openViewer(ctx, t, rc.srv.URL, viewerToken, id)))

	env.Restart(t)
	restarted := time.Now()
	defer func() {
		t.Logf("the jobs list caught up %s after the restart", time.Since(restarted).Round(time.Millisecond))
	}()
	id2 := publish(t, newPublisher(t, env.JS), job([]string{"true"}, toClient("r1")))
	testenv.CheckFor(t, 60*time.Second, 50*time.Millisecond, succeeded(openViewer(ctx, t, rc.srv.URL, viewerToken, id2)))
	testenv.CheckFor(t, 30*time.Second, 50*time.Millisecond, func() error {
		req, _ := http.NewRequest(http.MethodGet, rc.srv.URL+"/api/jobs", nil)
		req.Header.Set("Authorization", "Bearer "+viewerToken)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		var jobs []console.JobSummary
		if err := json.NewDecoder(resp.Body).Decode(&jobs); err != nil {
			return err
		}
		if len(jobs) != 2 || jobs[0].ID != id2 || jobs[0].Counts[console.StateSucceeded] != 1 {
			return fmt.Errorf("the jobs list after the restart: %+v", jobs)
		}
		return nil
	})
	testenv.CheckFor(t, 30*time.Second, 50*time.Millisecond, rc.c.Ready)
}

// TestConsoleHaltsAndResumes: an operator halts and resumes a staged
// rollout through the console's API (an admin's console: only the pcm
// account stores on a halt subject); the job's page says halted, then not.
func TestConsoleHaltsAndResumes(t *testing.T) {
	env := testenv.StartBroker(t)
	enroll(t, env.JS, "h1")
	j := job([]string{"true"}, toClient("h1"))
	later := time.Now().Add(time.Hour).UTC()
	j.MandatoryAfter = &later
	j.Rollout = &events.RolloutPlan{Rings: []events.Ring{{Percent: 100}}}
	id := publish(t, newPublisher(t, env.JS), j)
	rc := startConsole(t, env, auth.RoleAdmin, "admin")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	halted := func(want bool) {
		t.Helper()
		v := openViewer(ctx, t, rc.srv.URL, viewerToken, id)
		testenv.CheckFor(t, 30*time.Second, 50*time.Millisecond, func() error {
			if got := v.halted.Load(); got != want {
				return fmt.Errorf("the job page says halted %v, want %v", got, want)
			}
			return nil
		})
	}
	for _, step := range []struct {
		action string
		halted bool
	}{{"halt", true}, {"resume", false}} {
		if code, body := rc.post(t, operatorToken, "/api/jobs/"+id+"/"+step.action); code != http.StatusOK {
			t.Fatalf("%s: %d %s", step.action, code, body)
		}
		halted(step.halted)
	}
}
