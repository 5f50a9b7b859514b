//go:build windows

package selfupdate

import (
	"os"
	"os/exec"
)

// renameOver renames src over dst. A running executable cannot be
// replaced or deleted on Windows, but it can be renamed: dst moves aside
// to dst.old first (removed at the next swap).
func renameOver(src, dst string) error {
	old := dst + ".old"
	_ = os.Remove(old)
	if err := os.Rename(dst, old); err != nil && !os.IsNotExist(err) {
		return err
	}
	if err := os.Rename(src, dst); err != nil {
		_ = os.Rename(old, dst)
		return err
	}
	return nil
}

// Exec starts exe with args and env and exits: Windows has no exec(2).
// Under the Service Control Manager the service's recovery actions start
// the new binary instead (the caller exits with an error).
func Exec(exe string, args, env []string) error {
	cmd := exec.Command(exe, args[1:]...)
	cmd.Env = env
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	if err := cmd.Start(); err != nil {
		return err
	}
	os.Exit(0)
	return nil
}

// Alive reports whether process pid exists; on Windows the health
// deadline alone decides.
func Alive(pid int) bool { return true }

// Kill ends process pid.
func Kill(pid int) {
	if p, err := os.FindProcess(pid); err == nil {
		_ = p.Kill()
	}
}
