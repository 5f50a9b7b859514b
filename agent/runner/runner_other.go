//go:build !unix && !windows

package runner

import (
	"errors"
	"os"
	"os/exec"
	"runtime"
)

// shellCommand refuses: this platform has no shell the runner knows of.
func shellCommand(string) *exec.Cmd {
	cmd := exec.Command("sh")
	cmd.Err = errors.New("shell mode is not supported on " + runtime.GOOS)
	return cmd
}

// prepare has nothing to do on this platform.
func prepare(*exec.Cmd) {}

// processTree is only the started process here: no tree kill is available.
type processTree struct{ p *os.Process }

// attach returns the tree of the started process p.
func attach(p *os.Process) processTree { return processTree{p: p} }

// kill kills the process itself.
func (t processTree) kill() error {
	if err := t.p.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return err
	}
	return nil
}

// release has nothing to free.
func (processTree) release() {}
