package runner

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// killWait bounds how long Run waits for a killed process to be reaped. A
// SIGKILLed process is normally reaped at once; this only keeps Run from
// hanging on a process stuck in the kernel.
const killWait = 5 * time.Second

// NewExec returns the Runner that runs real processes, as described in the
// package documentation.
func NewExec() Runner { return execRunner{} }

type execRunner struct{}

// Run implements [Runner].
func (execRunner) Run(ctx context.Context, spec Spec, started func(pid int)) (Result, error) {
	res := Result{ExitCode: -1}
	if err := spec.Validate(); err != nil {
		return res, fmt.Errorf("%w: %w", ErrStart, err)
	}
	if ctx.Err() != nil {
		return res, fmt.Errorf("%w before the command started: %w", ErrCancelled, context.Cause(ctx))
	}
	dir, err := filepath.Abs(spec.Dir)
	if err != nil {
		return res, fmt.Errorf("%w: working directory %q: %w", ErrStart, spec.Dir, err)
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return res, fmt.Errorf("%w: create working directory %q: %w: choose a directory the agent may create", ErrStart, dir, err)
	}
	logf, offset, err := openLog(spec.LogPath)
	if err != nil {
		return res, fmt.Errorf("%w: open log %q: %w: choose a log path the agent may write", ErrStart, spec.LogPath, err)
	}
	defer logf.Close()

	cmd := command(spec)
	cmd.Dir = dir
	cmd.Env = environ(spec, dir)
	// A nil Stdin is the null device. Stdout and Stderr are the log file
	// itself, handed to the child: no pipe and no copying goroutine, so Wait
	// returns as soon as the process is reaped even when a grandchild keeps
	// the file open.
	cmd.Stdin = nil
	cmd.Stdout = logf
	cmd.Stderr = logf
	prepare(cmd)
	if err := cmd.Start(); err != nil {
		return res, fmt.Errorf("%w: %q in %s: %w: check that the program exists and is executable", ErrStart, cmd.Path, dir, err)
	}
	res.StartedAt = time.Now()
	res.PID = cmd.Process.Pid
	tree := attach(cmd.Process)
	defer tree.release()

	timer := time.NewTimer(spec.Timeout)
	defer timer.Stop()
	if started != nil {
		started(res.PID)
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait() // the outcome is read from cmd.ProcessState
		close(done)
	}()

	var killed, cancelled, reaped bool
	select {
	case <-done:
		reaped = true
	case <-timer.C:
		killed, reaped = killUnlessDone(tree, done)
		res.TimedOut = killed
	case <-ctx.Done():
		killed, reaped = killUnlessDone(tree, done)
		cancelled = killed
	}
	res.FinishedAt = time.Now()
	if reaped && !killed && cmd.ProcessState != nil {
		res.ExitCode = cmd.ProcessState.ExitCode()
	}
	res.OutputTail, res.OutputEncoding = readTail(spec.LogPath, offset, spec.tailBytes())
	if cancelled {
		return res, fmt.Errorf("%w: process tree of pid %d killed: %w", ErrCancelled, res.PID, context.Cause(ctx))
	}
	return res, nil
}

// killUnlessDone kills the process tree unless the process has already
// exited, then waits (at most killWait) for it to be reaped. killed tells
// whether the tree was killed, reaped whether the process was reaped.
func killUnlessDone(tree processTree, done <-chan struct{}) (killed, reaped bool) {
	select {
	case <-done:
		return false, true
	default:
	}
	_ = tree.kill() // best effort; a failure shows as the process not being reaped
	t := time.NewTimer(killWait)
	defer t.Stop()
	select {
	case <-done:
		return true, true
	case <-t.C:
		return true, false
	}
}

// command builds the command for spec, direct or through the shell.
func command(spec Spec) *exec.Cmd {
	if spec.Shell {
		return shellCommand(strings.Join(spec.Argv, " "))
	}
	return exec.Command(spec.Argv[0], spec.Argv[1:]...)
}

// environ returns the command's environment: the agent's, then the PCM_*
// variables, then spec.Env. exec.Cmd keeps the last value of a repeated key.
func environ(spec Spec, dir string) []string {
	env := os.Environ()
	env = append(env,
		"PCM_JOB_ID="+spec.JobID,
		"PCM_CLIENT_ID="+spec.ClientID,
		"PCM_ATTEMPT="+strconv.Itoa(spec.Attempt),
		"PCM_JOB_DIR="+dir,
	)
	return append(env, spec.Env...)
}

// openLog opens (creating it and its directories if needed) the log file for
// appending and returns it with its current size, where this run's output
// starts.
func openLog(path string) (*os.File, int64, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return nil, 0, err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
	if err != nil {
		return nil, 0, err
	}
	fi, err := f.Stat()
	if err != nil {
		return nil, 0, errors.Join(err, f.Close())
	}
	return f, fi.Size(), nil
}
