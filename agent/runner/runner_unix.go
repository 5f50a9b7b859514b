//go:build unix

package runner

import (
	"errors"
	"os"
	"os/exec"
	"syscall"
)

// shellCommand runs line through /bin/sh -c.
func shellCommand(line string) *exec.Cmd {
	return exec.Command("/bin/sh", "-c", line)
}

// prepare puts the command in a process group of its own, whose id is its
// pid, so that its whole tree can be killed with one kill(-pgid).
func prepare(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
}

// processTree is a started command and everything it spawned in its process
// group.
type processTree struct{ p *os.Process }

// attach returns the tree of the started process p.
func attach(p *os.Process) processTree { return processTree{p: p} }

// kill sends SIGKILL to the whole process group; should that fail for
// another reason than the group being gone, it kills the leader at least.
func (t processTree) kill() error {
	err := syscall.Kill(-t.p.Pid, syscall.SIGKILL)
	if err == nil || errors.Is(err, syscall.ESRCH) {
		return nil
	}
	if kerr := t.p.Kill(); kerr != nil && !errors.Is(kerr, os.ErrProcessDone) {
		return errors.Join(err, kerr)
	}
	return nil
}

// release frees what attach took; nothing on unix.
func (processTree) release() {}
