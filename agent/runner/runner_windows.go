//go:build windows

package runner

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"

	"golang.org/x/sys/windows"
)

// shellCommand runs line through %ComSpec% (cmd.exe) /S /C "line". The
// command line is given verbatim: cmd.exe does not follow the quoting rules
// exec.Cmd would apply to an argument.
func shellCommand(line string) *exec.Cmd {
	comspec := os.Getenv("ComSpec")
	if comspec == "" {
		comspec = "cmd.exe"
	}
	cmd := exec.Command(comspec)
	cmd.SysProcAttr = &syscall.SysProcAttr{
		CmdLine: syscall.EscapeArg(comspec) + ` /S /C "` + line + `"`,
	}
	return cmd
}

// prepare has nothing to do on Windows: the tree is tracked by a job object
// created by attach.
func prepare(*exec.Cmd) {}

// processTree is a started command and, through a job object, every process
// it spawned after attach. job is 0 when no job object could be set up; kill
// then falls back to taskkill /T, which finds descendants by parent pid.
type processTree struct {
	p   *os.Process
	job windows.Handle
}

// attach puts p in a new job object. Failures are not errors: the tree is
// then killed the best-effort way.
func attach(p *os.Process) processTree {
	t := processTree{p: p}
	job, err := windows.CreateJobObject(nil, nil)
	if err != nil {
		return t
	}
	h, err := windows.OpenProcess(windows.PROCESS_SET_QUOTA|windows.PROCESS_TERMINATE, false, uint32(p.Pid))
	if err != nil {
		_ = windows.CloseHandle(job)
		return t
	}
	defer windows.CloseHandle(h)
	if err := windows.AssignProcessToJobObject(job, h); err != nil {
		_ = windows.CloseHandle(job)
		return t
	}
	t.job = job
	return t
}

// kill terminates every process of the job object, or, without one, runs
// taskkill /T /F on the tree and kills the leader.
func (t processTree) kill() error {
	if t.job != 0 {
		if err := windows.TerminateJobObject(t.job, 1); err == nil {
			return nil
		}
	}
	taskkill := "taskkill.exe"
	if root := os.Getenv("SystemRoot"); root != "" {
		taskkill = filepath.Join(root, "System32", "taskkill.exe")
	}
	err := exec.Command(taskkill, "/T", "/F", "/PID", strconv.Itoa(t.p.Pid)).Run()
	if kerr := t.p.Kill(); kerr != nil && !errors.Is(kerr, os.ErrProcessDone) {
		return errors.Join(err, kerr)
	}
	return nil
}

// release closes the job object. The job is not created with
// KILL_ON_JOB_CLOSE, so processes the command left running survive it, as on
// unix.
func (t processTree) release() {
	if t.job != 0 {
		_ = windows.CloseHandle(t.job)
	}
}
