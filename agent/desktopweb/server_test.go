package desktopweb_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pcm-project/pcm/agent"
	"github.com/pcm-project/pcm/agent/desktopweb"
	"github.com/pcm-project/pcm/events"
	"github.com/pcm-project/pcm/testenv"
)

// fakeFace is a desktop face with one optional job, whose run writes to
// its output file and succeeds.
type fakeFace struct {
	dir  string
	mu   sync.Mutex
	runs int
	hear func(events.JobStatus)
}

func (f *fakeFace) List(context.Context) ([]agent.Listed, error) {
	return []agent.Listed{{JobOffered: events.JobOffered{JobID: "j1", Name: "Viewer"}}}, nil
}

func (f *fakeFace) Run(_ context.Context, id string) (events.JobStatus, error) {
	f.mu.Lock()
	f.runs++
	hear := f.hear
	f.mu.Unlock()
	now := time.Now()
	hear(events.JobStatus{JobID: id, State: events.StateStarted, Runner: events.RunnerDesktop, StartedAt: &now})
	code := 0
	return events.JobStatus{JobID: id, State: events.StateSucceeded, ExitCode: &code, OutputTail: "done\n"}, nil
}

func (f *fakeFace) Defer(context.Context, string) (events.JobStatus, error) {
	return events.JobStatus{}, agent.ErrNoDeferral
}

func (f *fakeFace) History(context.Context) ([]agent.Ran, error) { return nil, nil }

func (f *fakeFace) Holder(context.Context) (events.LockInfo, bool, error) {
	return events.LockInfo{}, false, nil
}

func (f *fakeFace) HearStatuses(fn func(events.JobStatus)) (func(), error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.hear = fn
	return func() {}, nil
}

func (f *fakeFace) OutputPath(id string) string { return filepath.Join(f.dir, id+".log") }

func (f *fakeFace) Background(context.Context, string) string {
	return "a job is running in the background"
}

func startPage(t *testing.T) (*desktopweb.Server, *fakeFace, string) {
	t.Helper()
	face := &fakeFace{dir: t.TempDir()}
	srv, err := desktopweb.New(desktopweb.Config{Face: face, Client: "c1"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
	base, _, _ := strings.Cut(srv.URL(), "/?token=")
	return srv, face, base
}

func TestPageListensOnLoopbackOnly(t *testing.T) {
	for _, addr := range []string{"0.0.0.0:0", "192.0.2.1:0", "localhost:0", ":0"} {
		if _, err := desktopweb.New(desktopweb.Config{Face: &fakeFace{}, Addr: addr}); !errors.Is(err, desktopweb.ErrNotLoopback) && !errors.Is(err, desktopweb.ErrInvalidConfig) {
			t.Errorf("%s: %v, want refused", addr, err)
		}
	}
	if _, err := desktopweb.New(desktopweb.Config{}); !errors.Is(err, desktopweb.ErrInvalidConfig) {
		t.Errorf("no face: %v", err)
	}
}

// TestPageAnswersItsUserOnly: the secret in the URL sets the cookie and
// leaves the address; without it, with another Host or another Origin,
// the page refuses.
func TestPageAnswersItsUserOnly(t *testing.T) {
	srv, _, base := startPage(t)
	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := noRedirect.Get(srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	cookies := resp.Cookies()
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/" || len(cookies) != 1 ||
		!cookies[0].HttpOnly || cookies[0].SameSite != http.SameSiteStrictMode || cookies[0].Value != srv.Token() {
		t.Fatalf("the secret's URL: %s, Location %q, cookies %+v", resp.Status, resp.Header.Get("Location"), cookies)
	}
	cookie := cookies[0]
	cases := []struct {
		name, method, path string
		with               func(*http.Request)
		code               int
	}{
		{"the page with the cookie", "GET", "/", func(r *http.Request) { r.AddCookie(cookie) }, http.StatusOK},
		{"the state by bearer", "GET", "/api/state", func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+srv.Token()) }, http.StatusOK},
		{"localhost", "GET", "/api/state", func(r *http.Request) { r.AddCookie(cookie); r.Host = "localhost" + base[strings.LastIndex(base, ":"):] }, http.StatusOK},
		{"no secret", "GET", "/", func(*http.Request) {}, http.StatusUnauthorized},
		{"a wrong bearer", "GET", "/api/state", func(r *http.Request) { r.Header.Set("Authorization", "Bearer x") }, http.StatusUnauthorized},
		{"another host", "GET", "/api/state", func(r *http.Request) { r.AddCookie(cookie); r.Host = "attacker.example" }, http.StatusForbidden},
		{"another origin", "POST", "/api/jobs/j1/defer", func(r *http.Request) { r.AddCookie(cookie); r.Header.Set("Origin", "http://attacker.example") }, http.StatusForbidden},
		{"a change with no origin", "POST", "/api/jobs/j1/defer", func(r *http.Request) { r.AddCookie(cookie) }, http.StatusForbidden},
		{"a defer refused by the face", "POST", "/api/jobs/j1/defer", func(r *http.Request) { r.AddCookie(cookie); r.Header.Set("Origin", base) }, http.StatusConflict},
		{"an invalid job id", "POST", "/api/jobs/a.b/install", func(r *http.Request) { r.AddCookie(cookie); r.Header.Set("Origin", base) }, http.StatusBadRequest},
	}
	for _, c := range cases {
		r, _ := http.NewRequest(c.method, base+c.path, nil)
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
}

// TestPageInstallsOnce: Install runs the job through the face once; the
// snapshot follows the run to its end.
func TestPageInstallsOnce(t *testing.T) {
	srv, face, base := startPage(t)
	post := func() int {
		r, _ := http.NewRequest("POST", base+"/api/jobs/j1/install", nil)
		r.Header.Set("Authorization", "Bearer "+srv.Token())
		resp, err := http.DefaultClient.Do(r)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	snapshot := func() (desktopweb.Snapshot, error) {
		var snap desktopweb.Snapshot
		r, _ := http.NewRequest("GET", base+"/api/state", nil)
		r.Header.Set("Authorization", "Bearer "+srv.Token())
		resp, err := http.DefaultClient.Do(r)
		if err != nil {
			return snap, err
		}
		defer resp.Body.Close()
		return snap, json.NewDecoder(resp.Body).Decode(&snap)
	}
	testenv.CheckFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		snap, err := snapshot()
		if err == nil && len(snap.Available) != 1 {
			err = errors.New("the job is not listed yet")
		}
		return err
	})
	if code := post(); code != http.StatusAccepted {
		t.Fatalf("install: %d", code)
	}
	testenv.CheckFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		snap, err := snapshot()
		if err != nil {
			return err
		}
		run := snap.Runs["j1"]
		if run == nil || run.Phase != desktopweb.PhaseDone || run.State != events.StateSucceeded || run.OutputTail != "done\n" || run.Job == nil || run.Job.Name != "Viewer" {
			return errors.New("the run is not shown done yet")
		}
		return nil
	})
	face.mu.Lock()
	defer face.mu.Unlock()
	if face.runs != 1 {
		t.Fatalf("%d runs, want 1", face.runs)
	}
}
