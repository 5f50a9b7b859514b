//go:build !windows

package selfupdate

import (
	"os"
	"syscall"
)

func renameOver(src, dst string) error { return os.Rename(src, dst) }

// Exec replaces the running process with exe (the same pid): it returns
// only on error.
func Exec(exe string, args, env []string) error { return syscall.Exec(exe, args, env) }

// Alive reports whether process pid exists.
func Alive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || err == syscall.EPERM
}

// Kill ends process pid.
func Kill(pid int) { _ = syscall.Kill(pid, syscall.SIGKILL) }
