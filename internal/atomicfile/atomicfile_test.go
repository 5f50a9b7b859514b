package atomicfile_test

import (
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/pcm-project/pcm/internal/atomicfile"
)

// TestReadersNeverSeeAPart: while one goroutine rewrites a file many
// times, a reader always reads a whole version (os.WriteFile truncates
// first, and a reader of a file being written saw it empty: the desktop
// session's page-url in CI).
func TestReadersNeverSeeAPart(t *testing.T) {
	path := filepath.Join(t.TempDir(), "page-url")
	whole := strings.Repeat("x", 64<<10)
	if err := atomicfile.Write(path, []byte(whole), 0o600); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	stop := make(chan struct{})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			if err := atomicfile.Write(path, []byte(whole), 0o600); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	for i := 0; i < 2000; i++ {
		b, err := os.ReadFile(path)
		if err != nil || len(b) != len(whole) {
			close(stop)
			wg.Wait()
			t.Fatalf("read %d bytes (%v), want %d", len(b), err, len(whole))
		}
	}
	close(stop)
	wg.Wait()
	st, err := os.Stat(path)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v (%v), want 0600", st.Mode().Perm(), err)
	}
	left, _ := filepath.Glob(filepath.Join(filepath.Dir(path), ".*tmp*"))
	if len(left) != 0 {
		t.Fatalf("temporary files left: %v", left)
	}
}
