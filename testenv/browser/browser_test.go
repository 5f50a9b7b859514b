package browser_test

import (
	"bytes"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/pcm-project/pcm/testenv/browser"
)

// TestBrowserRunsAPage drives a real Chromium on a page served on
// loopback: it reads what a script wrote into the DOM, types and clicks,
// and saves screenshots.
func TestBrowserRunsAPage(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, `<!doctype html><title>t</title><label>Name <input id=n></label><button id=b onclick="document.getElementById('o').textContent='hello '+document.getElementById('n').value">Go</button><p id=o>script did not run</p>`)
	}))
	defer srv.Close()
	t.Setenv("PCM_TEST_ARTIFACTS", t.TempDir())
	ctx := browser.New(t, 60*time.Second)
	if err := chromedp.Do(ctx,
		chromedp.Navigate(srv.URL),
		chromedp.SendKeys(chromedp.CSS("#n"), "pcm"),
		chromedp.Click(chromedp.CSS("#b")),
	); err != nil {
		t.Fatal(err)
	}
	out, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS("#o")))
	if err != nil {
		t.Fatal(err)
	}
	if out != "hello pcm" {
		t.Fatalf("page says %q, want %q", out, "hello pcm")
	}
	browser.Screenshot(ctx, t, "page")
	for _, w := range browser.Widths {
		b, err := os.ReadFile(filepath.Join(browser.ArtifactsDir(), "TestBrowserRunsAPage", "page-"+w.Name+".png"))
		if err != nil || !bytes.HasPrefix(b, []byte("\x89PNG")) {
			t.Errorf("no %s screenshot in PNG: %v", w.Name, err)
		}
	}
}
