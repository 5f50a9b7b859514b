// Package browser gives tests a real headless Chromium, driven through the
// DevTools protocol with chromedp: New starts one for the test (a fresh
// profile in a temporary directory, closed at cleanup) and returns a
// context whose chromedp actions run in its first tab. Screenshot saves
// what a page looks like at desktop and narrow widths as a build artifact.
//
// Chromium is found as PCM_TEST_CHROMIUM, or as chromium, chromium-browser,
// google-chrome or google-chrome-stable on PATH. Where none is, tests skip
// with the reason, unless PCM_TEST_BROWSER=require (CI sets it once it has
// installed Debian's chromium), where they fail.
package browser

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// Find returns the path of a Chromium (or Chrome) binary, or an error that
// says what was looked for.
func Find() (string, error) {
	if p := os.Getenv("PCM_TEST_CHROMIUM"); p != "" {
		if _, err := exec.LookPath(p); err != nil {
			return "", fmt.Errorf("PCM_TEST_CHROMIUM=%s: %w", p, err)
		}
		return p, nil
	}
	names := []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable"}
	for _, n := range names {
		if p, err := exec.LookPath(n); err == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("no Chromium on PATH (looked for %s; set PCM_TEST_CHROMIUM, or apt-get install chromium)", strings.Join(names, ", "))
}

// New starts a headless Chromium for t and returns the context of its
// first tab, cancelled when the test ends (chromedp.Do and chromedp.Run
// drive it: chromedp v0.23's actions are typed, chromedp.CSS selects). Every action run with it times
// out after timeout. It skips the test when no browser is installed and
// PCM_TEST_BROWSER is not "require".
func New(t testing.TB, timeout time.Duration) context.Context {
	t.Helper()
	exe, err := Find()
	if err != nil {
		if os.Getenv("PCM_TEST_BROWSER") == "require" {
			t.Fatalf("PCM_TEST_BROWSER=require: %v", err)
		}
		t.Skipf("skipping the browser test: %v", err)
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(exe),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.NoSandbox, // CI runs as root, where Chromium's sandbox refuses to start
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.WindowSize(1280, 800),
	)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelCtx := chromedp.NewContext(allocCtx, chromedp.WithErrorf(t.Logf))
	ctx, cancelTimeout := context.WithTimeout(ctx, timeout)
	t.Cleanup(func() {
		cancelTimeout()
		cancelCtx()
		cancelAlloc()
	})
	if err := chromedp.Do(ctx); err != nil { // starts the browser
		t.Fatalf("starting %s: %v", exe, err)
	}
	return ctx
}

// ArtifactsDir is where screenshots go: PCM_TEST_ARTIFACTS, or pcm-artifacts
// in the system's temporary directory. CI keeps it as a build artifact;
// nothing in it is committed.
func ArtifactsDir() string {
	if d := os.Getenv("PCM_TEST_ARTIFACTS"); d != "" {
		return d
	}
	return filepath.Join(os.TempDir(), "pcm-artifacts")
}

// Widths are the viewport widths Screenshot saves a page at: a desktop
// window and a narrow one (a phone, or a window docked to a side).
var Widths = []struct {
	Name          string
	Width, Height int64
}{{"desktop", 1280, 800}, {"narrow", 390, 844}}

var unsafeName = regexp.MustCompile(`[^A-Za-z0-9._-]+`)

// Screenshot saves full-page PNGs of what ctx's tab shows, at each of
// Widths, as ArtifactsDir()/<test>/<name>-<width>.png, and puts the
// viewport back to the desktop width. (Quality 100 is what makes
// chromedp write PNG rather than JPEG.) A failure to save is logged, not
// fatal: screenshots are for people, the assertions are the test.
func Screenshot(ctx context.Context, t testing.TB, name string) {
	t.Helper()
	dir := filepath.Join(ArtifactsDir(), unsafeName.ReplaceAllString(t.Name(), "_"))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Logf("screenshot %s: %v", name, err)
		return
	}
	for _, w := range Widths {
		if err := chromedp.Do(ctx, chromedp.EmulateViewport(w.Width, w.Height)); err != nil {
			t.Logf("screenshot %s at %s width: %v", name, w.Name, err)
			continue
		}
		png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
		if err != nil {
			t.Logf("screenshot %s at %s width: %v", name, w.Name, err)
			continue
		}
		file := filepath.Join(dir, unsafeName.ReplaceAllString(name, "_")+"-"+w.Name+".png")
		if err := os.WriteFile(file, png, 0o644); err != nil {
			t.Logf("screenshot %s: %v", name, err)
		}
	}
	if err := chromedp.Do(ctx, chromedp.EmulateViewport(Widths[0].Width, Widths[0].Height)); err != nil {
		t.Logf("restoring the viewport: %v", err)
	}
}
