package integration_test

import (
	"io"
	"net/http"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// httpGet answers a GET of url: its status code and body.
func httpGet(t testing.TB, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestBrokerServesMetricsAndConsole: pcm broker --metrics serves
// Prometheus metrics and its health, --console the console in the broker.
func TestBrokerServesMetricsAndConsole(t *testing.T) {
	dir := t.TempDir()
	b := startPCM(t, dir, nil, "broker", "--data", filepath.Join(dir, "data"), "--listen", "127.0.0.1:-1",
		"--metrics", "127.0.0.1:0", "--console", "127.0.0.1:0")
	// The three lines come in any order.
	var metricsURL, consoleURL string
	any := regexp.MustCompile(`^(?:pcm broker metrics: (http://\S+)/metrics|pcm console: (http://\S+)/ \(read-only\))$`)
	for metricsURL == "" || consoleURL == "" {
		m := b.stdout.waitLine(t, any, 10*time.Second)
		metricsURL, consoleURL = metricsURL+m[1], consoleURL+m[2]
	}
	for _, u := range []string{metricsURL, consoleURL} {
		for _, p := range []string{"/healthz", "/readyz"} {
			var code int
			var body string
			testenvCheck(t, func() bool { code, body = httpGet(t, u+p); return code == http.StatusOK })
			if code != http.StatusOK {
				t.Errorf("%s%s: %d %s", u, p, code, body)
			}
		}
	}
	var body string
	testenvCheck(t, func() bool {
		_, body = httpGet(t, metricsURL+"/metrics")
		return strings.Contains(body, "pcm_jobs_published_total 0")
	})
	for _, m := range []string{"pcm_jobs_published_total 0", "pcm_consumers_read_ok 1", `pcm_nats_reconnects_total{component="broker"} 0`} {
		if !strings.Contains(body, m) {
			t.Errorf("the broker's /metrics has no %q", m)
		}
	}
	if code, _ := httpGet(t, consoleURL+"/api/jobs"); code != http.StatusOK {
		t.Errorf("the broker's console on loopback without users answered %d", code)
	}
}

// testenvCheck polls cond for 10 s.
func testenvCheck(t testing.TB, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if cond() {
			return
		}
	}
}

// TestConsoleRefusesOpenListen: beyond loopback, pcm console and pcm
// broker --console refuse to serve without users, saying why.
func TestConsoleRefusesOpenListen(t *testing.T) {
	dir := t.TempDir()
	_, stderr, code := runPCM(t, nil, "console", "--url", "nats://127.0.0.1:1", "--addr", "0.0.0.0:0")
	if code == 0 || !strings.Contains(stderr, "refuses to listen beyond loopback without authentication") {
		t.Errorf("pcm console --addr 0.0.0.0:0 exited %d: %s", code, stderr)
	}
	_, stderr, code = runPCM(t, nil, "broker", "--data", filepath.Join(dir, "data"), "--listen", "127.0.0.1:-1", "--console", ":0")
	if code == 0 || !strings.Contains(stderr, "refuses to listen beyond loopback without authentication") {
		t.Errorf("pcm broker --console :0 exited %d: %s", code, stderr)
	}
}
