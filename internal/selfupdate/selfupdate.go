// Package selfupdate swaps the running pcm binary for another one and
// back: the new binary is written next to the running one and renamed over
// it (atomic on one file system; on Windows the running executable, which
// cannot be replaced, is renamed aside first), and the previous binary is
// kept next to it for a rollback. Exec starts a binary in place of the
// running process (the same process on Unix).
//
// It never downloads or verifies anything: the agent's updater does, before.
package selfupdate

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// ErrSwap: the binary could not be replaced or restored.
var ErrSwap = errors.New("binary swap failed")

// PreviousPath is where the previous binary of exe is kept:
// pcm -> pcm.previous, pcm.exe -> pcm.previous.exe.
func PreviousPath(exe string) string {
	ext := filepath.Ext(exe)
	if !strings.EqualFold(ext, ".exe") {
		ext = ""
	}
	return strings.TrimSuffix(exe, ext) + ".previous" + ext
}

// Executable is the running binary's path, symbolic links resolved.
func Executable() (string, error) {
	exe, err := os.Executable()
	if err != nil {
		return "", err
	}
	return filepath.EvalSymlinks(exe)
}

// Swap keeps a copy of exe at PreviousPath(exe), then replaces exe with a
// copy of next. On error exe is the binary it was.
func Swap(exe, next string) (previous string, err error) {
	previous = PreviousPath(exe)
	if err := copyInto(exe, previous); err != nil {
		return "", fmt.Errorf("%w: keeping the previous binary %s: %w", ErrSwap, previous, err)
	}
	if err := replace(exe, next); err != nil {
		return "", err
	}
	return previous, nil
}

// Restore puts the previous binary back at exe.
func Restore(exe, previous string) error { return replace(exe, previous) }

// replace writes a copy of src next to exe and renames it over exe.
func replace(exe, src string) error {
	tmp := exe + ".new"
	if err := copyInto(src, tmp); err != nil {
		return fmt.Errorf("%w: writing %s: %w", ErrSwap, tmp, err)
	}
	if err := renameOver(tmp, exe); err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("%w: renaming %s over %s: %w", ErrSwap, tmp, exe, err)
	}
	return nil
}

// copyInto copies src to dst (through a temporary file renamed at the
// end, fsynced), executable.
func copyInto(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	tmp := dst + ".tmp"
	out, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o755)
	if err != nil {
		return err
	}
	_, err = io.Copy(out, in)
	if err == nil {
		err = out.Sync()
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(tmp, 0o755)
	}
	if err == nil {
		err = renameOver(tmp, dst)
	}
	if err != nil {
		_ = os.Remove(tmp)
	}
	return err
}
