package desktopweb

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"

	"github.com/pcm-project/pcm/internal/atomicfile"
)

// ErrNoSession: no desktop session has written its page's address.
var ErrNoSession = errors.New("no desktop session is running for this user")

// URLFile is where a session keeps its page's address (with its secret)
// for pcm desktop open: in the user's state dir, readable by the user only.
func URLFile(stateDir string) string { return filepath.Join(stateDir, "page-url") }

// WriteURL keeps the page's address for pcm desktop open.
func WriteURL(stateDir, url string) error {
	if err := os.MkdirAll(stateDir, 0o700); err != nil {
		return fmt.Errorf("keeping the page's address: %w", err)
	}
	// Atomically: pcm desktop open (and a test) reading it as it is
	// written read it empty.
	if err := atomicfile.Write(URLFile(stateDir), []byte(url+"\n"), 0o600); err != nil {
		return fmt.Errorf("keeping the page's address: %w", err)
	}
	return nil
}

// ReadURL reads the address a session keeps (ErrNoSession when none).
func ReadURL(stateDir string) (string, error) {
	b, err := os.ReadFile(URLFile(stateDir))
	if errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("%w: start it with: pcm desktop", ErrNoSession)
	}
	if err != nil {
		return "", fmt.Errorf("reading the page's address: %w", err)
	}
	return strings.TrimSpace(string(b)), nil
}

// Open opens url in the user's browser: xdg-open, open (macOS), or the
// URL protocol handler (Windows).
func Open(ctx context.Context, url string) error {
	var cmd *exec.Cmd
	switch runtime.GOOS {
	case "windows":
		cmd = exec.CommandContext(ctx, "rundll32", "url.dll,FileProtocolHandler", url)
	case "darwin":
		cmd = exec.CommandContext(ctx, "open", url)
	default:
		cmd = exec.CommandContext(ctx, "xdg-open", url)
	}
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("opening a browser (%s): %w: %s", cmd.Path, err, strings.TrimSpace(string(out)))
	}
	return nil
}
