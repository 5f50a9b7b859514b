package integration_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"

	"github.com/pcm-project/pcm/agent"
	"github.com/pcm-project/pcm/agent/desktopweb"
	"github.com/pcm-project/pcm/agent/notify"
	"github.com/pcm-project/pcm/broker/auth"
	"github.com/pcm-project/pcm/events"
	"github.com/pcm-project/pcm/testenv"
	"github.com/pcm-project/pcm/testenv/browser"
	"github.com/pcm-project/pcm/testenv/desktopbus"
)

// pageSession is a desktop session with its Self Service page and a fake
// notifier, on a real broker beside a real service.
type pageSession struct {
	*testDesktop
	srv   *desktopweb.Server
	shown *notify.Recorder
}

func startPageSession(t *testing.T, url, client string) *pageSession {
	t.Helper()
	return startPageSessionWith(t, url, client, nil)
}

// startPageSessionWith is startPageSession with the notifier that
// notifier returns for the page's address (nil: the fake, ps.shown).
func startPageSessionWith(t *testing.T, url, client string, notifier func(pageURL string) notify.Notifier) *pageSession {
	t.Helper()
	ps := &pageSession{shown: &notify.Recorder{}}
	var forward func(agent.Notice) // set before the session starts
	ps.testDesktop = newTestDesktop(t, url, client, func(c *agent.DesktopConfig) {
		c.Grace = time.Hour // the required job is counted down, not run, during the test
		c.OnNotice = func(n agent.Notice) {
			forward(n)
			if ps.srv != nil {
				ps.srv.Notice(n)
			}
		}
	})
	srv, err := desktopweb.New(desktopweb.Config{Face: ps.Desktop, Client: client, Recheck: 200 * time.Millisecond,
		Ended: func(n agent.Notice) { forward(n) }})
	if err != nil {
		t.Fatal(err)
	}
	ps.srv = srv
	var n notify.Notifier = ps.shown
	if notifier != nil {
		n = notifier(srv.URL())
	}
	forward = notify.Forward(n, nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	ps.session(t)
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("page: %v", err)
		}
	})
	return ps
}

// waitPage waits until the JavaScript predicate cond is true on the page.
func (ps *pageSession) waitPage(t *testing.T, ctx context.Context, what, cond string) {
	t.Helper()
	pctx, cancel := context.WithTimeout(ctx, 45*time.Second)
	defer cancel()
	if _, err := chromedp.Run(pctx, chromedp.Poll[bool](cond, chromedp.WithPollingInterval(50*time.Millisecond), chromedp.WithPollingTimeout(0))); err != nil {
		t.Fatalf("waiting for %s: %v; the page's state is:\n%s", what, err, ps.state(t))
	}
}

// state is what the page's API says.
func (ps *pageSession) state(t *testing.T) string {
	base, _, _ := strings.Cut(ps.srv.URL(), "/?token=")
	r, _ := http.NewRequest("GET", base+"/api/state", nil)
	r.Header.Set("Authorization", "Bearer "+ps.srv.Token())
	resp, err := http.DefaultClient.Do(r)
	if err != nil {
		return err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// gated is a shell command that appends to marker, prints line, and waits
// for gate to exist.
func gated(marker, line, gate string) []string {
	return []string{"sh", "-c", fmt.Sprintf("echo ran >> %s; echo %s; while [ ! -e %s ]; do sleep 0.05; done; echo done", marker, line, gate)}
}

// TestSelfServicePage drives the desktop's Self Service page in a real
// headless Chromium, against a real broker, service face and desktop face:
// the page lists an optional job and not a background one; the banner
// shows while the service runs the background job (and a job installed
// meanwhile waits, with a busy notification) and goes when it is done;
// Install runs the optional job once, showing its live state and the tail
// of its output; Defer on a required job is recorded as a deferred status;
// the history says who ran what; a request without the session's secret,
// from another origin or to another host name is refused. Screenshots of
// each page are saved as artifacts.
func TestSelfServicePage(t *testing.T) {
	env := testenv.StartBroker(t)
	const client = "page1"
	enroll(t, env.JS, client)
	dir := t.TempDir()
	startAgent(t, env.URL, client, filepath.Join(dir, "svc")).waitReady(t)
	p := newPublisher(t, env.JS)

	bgMarker, bgGate := filepath.Join(dir, "bg-ran"), filepath.Join(dir, "bg-gate")
	bg := job(gated(bgMarker, "background-work", bgGate), toClient(client))
	bg.Name, bg.Command.Background = "Disk encryption update", true
	bgID := publish(t, p, bg)
	testenv.WaitFor(t, 30*time.Second, "the service runs the background job", func() bool { return markerLines(t, bgMarker) == 1 })

	optMarker, optGate := filepath.Join(dir, "opt-ran"), filepath.Join(dir, "opt-gate")
	opt := job(gated(optMarker, "hello-from-install", optGate), toClient(client))
	opt.Name, opt.Command.Name, opt.Command.Automated, opt.MandatoryAfter = "Graph Editor", "installs Graph Editor 3.1", false, nil
	opt.ExpireAfter = time.Now().Add(24 * time.Hour)
	optID := publish(t, p, opt)

	req := job(appendTo(filepath.Join(dir, "req-ran")), toClient(client))
	req.Name, req.Command.MayReboot = "Security update", true
	req.Deferrals = &events.Deferrals{Max: 2, Each: events.Duration(2 * time.Hour)}
	reqID := publish(t, p, req)

	ps := startPageSession(t, env.URL, client)
	ctx := browser.New(t, 3*time.Minute)
	if err := chromedp.Do(ctx, chromedp.Navigate(ps.srv.URL())); err != nil {
		t.Fatal(err)
	}
	card := func(id string) string { return fmt.Sprintf(`document.querySelector('article[data-job=%q]')`, id) }

	// Available: the optional job, never the background one; the banner
	// names the background job.
	ps.waitPage(t, ctx, "the optional job listed", card(optID)+` !== null`)
	ps.waitPage(t, ctx, "the busy banner", `!document.getElementById('banner').hidden && document.getElementById('banner').textContent.includes('Disk encryption update')`)
	if listed, err := chromedp.Run(ctx, chromedp.Evaluate[bool](card(bgID)+` !== null`)); err != nil || listed {
		t.Fatalf("the background job is listed: %v %v", listed, err)
	}
	if loc, err := chromedp.Run(ctx, chromedp.Evaluate[string](`location.href`)); err != nil || strings.Contains(loc, "token") {
		t.Fatalf("the secret stays in the address bar: %q %v", loc, err)
	}

	// Install while the service holds the client: the job waits, and the
	// user is told why.
	install := fmt.Sprintf(`article[data-job=%q] button.install`, optID)
	if err := chromedp.Do(ctx, chromedp.Click(chromedp.CSS(install))); err != nil {
		t.Fatal(err)
	}
	ps.waitPage(t, ctx, "the install waiting for the background job", card(optID)+`.querySelector('.run-state[data-state=waiting]') !== null`)
	browser.Screenshot(ctx, t, "available-busy")
	testenv.WaitFor(t, 30*time.Second, "a busy notification", func() bool { return shownKind(ps.shown, agent.NoticeBusy) })

	// The background job ends: the banner goes; the install runs, live.
	if err := os.WriteFile(bgGate, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	ps.waitPage(t, ctx, "the banner gone", `document.getElementById('banner').hidden`)
	ps.waitPage(t, ctx, "the install running with its output", card(optID)+`.querySelector('.run-state[data-state=running]') !== null && `+
		card(optID)+`.querySelector('pre.output') !== null && `+card(optID)+`.querySelector('pre.output').textContent.includes('hello-from-install')`)
	if elapsed, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(fmt.Sprintf(`article[data-job=%q] .elapsed`, optID)))); err != nil || !strings.Contains(elapsed, "elapsed") {
		t.Fatalf("no elapsed time: %q %v", elapsed, err)
	}
	if disabled, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`document.querySelector('`+strings.ReplaceAll(install, `'`, `\'`)+`').disabled`)); err != nil || !disabled {
		t.Fatalf("Install can be clicked again while the job runs: %v", err)
	}
	browser.Screenshot(ctx, t, "available-running")
	if err := os.WriteFile(optGate, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	ps.waitPage(t, ctx, "the install succeeded", card(optID)+`.querySelector('.run-state[data-state=succeeded]') !== null`)
	if n := markerLines(t, optMarker); n != 1 {
		t.Fatalf("the optional job ran %d times, want 1", n)
	}
	testenv.WaitFor(t, 10*time.Second, "a notification of the installed job", func() bool { return shownKind(ps.shown, agent.NoticeFinished) })
	if sts := finals(waitFinal(t, env.JS, client, optID, 10*time.Second)); len(sts) != 1 || sts[0].Runner != events.RunnerDesktop || sts[0].State != events.StateSucceeded {
		t.Fatalf("final statuses of the optional job: %+v", sts)
	}

	// Required, reached with the keyboard: the mandatory job with its
	// countdown, deferrals and restart warning; Defer is recorded.
	if err := chromedp.Do(ctx, chromedp.Focus(chromedp.CSS("#tab-available")), chromedp.KeyEvent(kb.ArrowRight)); err != nil {
		t.Fatal(err)
	}
	ps.waitPage(t, ctx, "the Required page shown from the keyboard", `!document.getElementById('panel-required').hidden && document.activeElement.id === 'tab-required'`)
	ps.waitPage(t, ctx, "the required job with 2 of 2 deferrals left", card(reqID)+` !== null && `+card(reqID)+`.querySelector('.deferrals-left').textContent === '2 of 2' && `+
		card(reqID)+`.querySelector('.warning') !== null && `+card(reqID)+`.querySelector('.countdown').textContent !== ''`)
	testenv.WaitFor(t, 30*time.Second, "a notification of the required job", func() bool { return shownKind(ps.shown, agent.NoticeMandatory) })
	// The notices speak the page's words: its countdown says the job can be
	// put off, and the Defer button does it; the terminal's hint (pcm
	// desktop defer ...) is not there, nor in the API's snapshot.
	ps.waitPage(t, ctx, "the required job's countdown in the notices", `[...document.querySelectorAll('#notices li[data-kind=countdown]')].some((li) => li.textContent.includes('can be put off'))`)
	if said, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS("#notices"))); err != nil || strings.Contains(said, "pcm desktop") {
		t.Fatalf("the page's notices speak of the command line: %q %v", said, err)
	}
	if st := ps.state(t); strings.Contains(st, "pcm desktop") {
		t.Fatalf("the page's snapshot speaks of the command line: %s", st)
	}
	browser.Screenshot(ctx, t, "required")
	if err := chromedp.Do(ctx, chromedp.Click(chromedp.CSS(fmt.Sprintf(`article[data-job=%q] button.defer`, reqID)))); err != nil {
		t.Fatal(err)
	}
	testenv.CheckFor(t, 30*time.Second, 100*time.Millisecond, func() error {
		sts := readStatuses(t, env.JS, client, reqID)
		for _, st := range sts {
			if st.State == events.StateDeferred && st.Deferral == 1 && st.DeferralsMax == 2 && st.Runner == events.RunnerDesktop {
				return nil
			}
		}
		return fmt.Errorf("no deferred status of %s: %+v", reqID, sts)
	})
	ps.waitPage(t, ctx, "1 of 2 deferrals left", card(reqID)+`.querySelector('.deferrals-left').textContent === '1 of 2'`)

	// History: who ran what.
	if err := chromedp.Do(ctx, chromedp.Click(chromedp.CSS("#tab-history"))); err != nil {
		t.Fatal(err)
	}
	row := func(id string) string { return fmt.Sprintf(`document.querySelector('#history tr[data-job=%q]')`, id) }
	ps.waitPage(t, ctx, "the history", row(optID)+` !== null && `+row(optID)+`.querySelector('.by').textContent.includes('you') && `+
		row(bgID)+` !== null && `+row(bgID)+`.querySelector('.by').textContent.includes('system') && `+row(reqID)+` !== null`)
	browser.Screenshot(ctx, t, "history")

	// Only this session's user, on this loopback address, from this page.
	u := ps.srv.URL()
	base, _, _ := strings.Cut(u, "/?token=")
	cookie := &http.Cookie{Name: "pcm_desktop_" + base[strings.LastIndex(base, ":")+1:], Value: ps.srv.Token()}
	refused := []struct {
		name   string
		method string
		path   string
		with   func(*http.Request)
		code   int
	}{
		{"no secret", "GET", "/api/state", func(*http.Request) {}, http.StatusUnauthorized},
		{"a wrong secret", "GET", "/?token=wrong", func(*http.Request) {}, http.StatusUnauthorized},
		{"a wrong cookie", "GET", "/api/state", func(r *http.Request) { r.AddCookie(&http.Cookie{Name: cookie.Name, Value: "guess"}) }, http.StatusUnauthorized},
		{"another origin", "POST", "/api/jobs/" + optID + "/install", func(r *http.Request) { r.AddCookie(cookie); r.Header.Set("Origin", "http://evil.example") }, http.StatusForbidden},
		{"no origin on a change", "POST", "/api/jobs/" + optID + "/install", func(r *http.Request) { r.AddCookie(cookie) }, http.StatusForbidden},
		{"another host name (DNS rebinding)", "GET", "/api/state", func(r *http.Request) {
			r.AddCookie(cookie)
			r.Host = "evil.example" + base[strings.LastIndex(base, ":"):]
		}, http.StatusForbidden},
		{"a cross-site fetch", "GET", "/api/state", func(r *http.Request) { r.AddCookie(cookie); r.Header.Set("Sec-Fetch-Site", "cross-site") }, http.StatusForbidden},
	}
	for _, c := range refused {
		r, err := http.NewRequest(c.method, base+c.path, nil)
		if err != nil {
			t.Fatal(err)
		}
		c.with(r)
		resp, err := http.DefaultClient.Do(r)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != c.code {
			t.Errorf("%s: %s, want %d", c.name, resp.Status, c.code)
		}
	}
	// The same cookie with this page's origin is answered, as a bearer
	// token is.
	r, _ := http.NewRequest("GET", base+"/api/state", nil)
	r.Header.Set("Authorization", "Bearer "+ps.srv.Token())
	if resp, err := http.DefaultClient.Do(r); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("a bearer request refused: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}
	if n := markerLines(t, optMarker); n != 1 {
		t.Fatalf("the optional job ran %d times, want 1", n)
	}
}

// TestNotificationClickOpensPage: a real desktop session tells its user
// of a required job with a native notification, on the freedesktop
// notification service of a private D-Bus session bus (a real
// dbus-daemon); the user clicks it, and a real headless Chromium opens the
// session's Self Service page (through its secret address), which lists
// the job. Nothing opens the page before the click.
func TestNotificationClickOpensPage(t *testing.T) {
	bus := desktopbus.Start(t)
	notes := desktopbus.StartServer(t, bus)
	env := testenv.StartBroker(t)
	const client = "click1"
	enroll(t, env.JS, client)
	req := job(appendTo(filepath.Join(t.TempDir(), "req-ran")), toClient(client))
	req.Name = "Security update"
	req.Deferrals = &events.Deferrals{Max: 1, Each: events.Duration(time.Hour)}
	reqID := publish(t, newPublisher(t, env.JS), req)

	ctx := browser.New(t, 2*time.Minute)
	ps := startPageSessionWith(t, env.URL, client, func(pageURL string) notify.Notifier {
		n := notify.Native(notify.Config{Bus: bus.Address, PageURL: pageURL, Open: func(_ context.Context, u string) error {
			return chromedp.Do(ctx, chromedp.Navigate(u))
		}})
		t.Cleanup(func() { n.Close() })
		return n
	})
	var shown desktopbus.Notified
	testenv.CheckFor(t, 30*time.Second, 20*time.Millisecond, func() error {
		for _, n := range notes.Notified() {
			if n.Summary == "Installation required" && strings.Contains(n.Body, "Security update") {
				shown = n
				return nil
			}
		}
		return fmt.Errorf("no notification of the required job: %+v", notes.Notified())
	})
	if !shown.HasAction("default") || strings.Contains(shown.Body, "pcm desktop") {
		t.Fatalf("the notification: %+v", shown)
	}
	if loc, err := chromedp.Run(ctx, chromedp.Evaluate[string](`location.href`)); err != nil || loc != "about:blank" {
		t.Fatalf("a page opened before the click: %q %v", loc, err)
	}
	if err := notes.Click(shown.ID, "default"); err != nil {
		t.Fatal(err)
	}
	ps.waitPage(t, ctx, "the page opened by the click, listing the required job",
		fmt.Sprintf(`location.origin !== 'null' && !location.href.includes('token') && document.querySelector('article[data-job=%q]') !== null`, reqID))
	browser.Screenshot(ctx, t, "opened-by-a-click")
}

// shownKind reports whether the fake notifier showed a notification of kind.
func shownKind(r *notify.Recorder, kind agent.NoticeKind) bool {
	for _, n := range r.Shown() {
		if n.Kind == kind {
			return true
		}
	}
	return false
}

// TestDesktopCommandsSpeakToPeople runs the built pcm as the user at the
// desktop would: pcm desktop list prints its table and nothing else (the
// logs, the unsigned-jobs warning among them, go to desktop.log in the
// state dir); pcm desktop open without a session says how to start one;
// pcm desktop serves its page and keeps its address for pcm desktop open.
func TestDesktopCommandsSpeakToPeople(t *testing.T) {
	env := testenv.StartBroker(t)
	const client = "plaindesk"
	enroll(t, env.JS, client)
	p := newPublisher(t, env.JS)
	opt := job([]string{"true"}, toClient(client))
	opt.Name, opt.Command.Automated, opt.MandatoryAfter = "Viewer", false, nil
	opt.ExpireAfter = time.Now().Add(time.Hour)
	id := publish(t, p, opt)
	stateDir := t.TempDir()
	procEnv := processEnv(t, env.URL, auth.User{Role: auth.RoleDesktop, Name: client})
	args := []string{"--url", env.URL, "--client-id", client, "--state-dir", stateDir}

	out, errOut, code := runPCM(t, procEnv, append([]string{"desktop", "list"}, args...)...)
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	if code != 0 || errOut != "" || len(lines) != 2 || !strings.HasPrefix(lines[0], "JOB ") || !strings.HasPrefix(lines[1], id+" ") {
		t.Fatalf("pcm desktop list: exit %d, stdout %q, stderr %q; want the table only", code, out, errOut)
	}
	if b, err := os.ReadFile(filepath.Join(stateDir, "desktop.log")); err != nil || !strings.Contains(string(b), "NO TRUSTED KEYS") {
		t.Fatalf("desktop.log does not hold the logs: %v %q", err, b)
	}
	// --log-level brings the logs back to stderr.
	if _, errOut, code := runPCM(t, procEnv, append([]string{"desktop", "list", "--log-level", "warn"}, args...)...); code != 0 || !strings.Contains(errOut, "NO TRUSTED KEYS") {
		t.Fatalf("pcm desktop list --log-level warn: exit %d, stderr %q", code, errOut)
	}

	if _, errOut, code := runPCM(t, procEnv, append([]string{"desktop", "open"}, args...)...); code == 0 || !strings.Contains(errOut, "no desktop session is running") || !strings.Contains(errOut, "pcm desktop") {
		t.Fatalf("pcm desktop open without a session: exit %d, stderr %q", code, errOut)
	}

	ctx, cancel := context.WithCancel(context.Background())
	session := exec.CommandContext(ctx, pcmBinary, append([]string{"desktop", "--notify=false"}, args...)...)
	session.Env = append(os.Environ(), procEnv...)
	var sessionOut strings.Builder
	session.Stdout = &sessionOut
	if err := session.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); _ = session.Wait() })
	var u string
	testenv.WaitFor(t, 20*time.Second, "the session's page address", func() bool {
		var err error
		u, err = desktopweb.ReadURL(stateDir)
		return err == nil
	})
	base, token, _ := strings.Cut(u, "/?token=")
	if !strings.HasPrefix(base, "http://127.0.0.1:") {
		t.Fatalf("the page is not on loopback: %s", u)
	}
	testenv.CheckFor(t, 20*time.Second, 100*time.Millisecond, func() error {
		r, _ := http.NewRequest("GET", base+"/api/state", nil)
		r.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(r)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		var snap desktopweb.Snapshot
		if err := json.NewDecoder(resp.Body).Decode(&snap); err != nil {
			return err
		}
		if len(snap.Available) != 1 || snap.Available[0].JobID != id {
			return fmt.Errorf("the page lists %+v", snap.Available)
		}
		return nil
	})
}
