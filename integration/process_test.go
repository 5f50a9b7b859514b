package integration_test

import (
	"bufio"
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// proc is a pcm process started by a test.
type proc struct {
	cmd    *exec.Cmd
	stdout *lineReader
	exited chan error
	logf   string
}

// startPCM runs the built pcm binary with args and extra environment;
// stderr goes to a file in dir, stdout is read line by line. The process is
// killed at cleanup.
func startPCM(t testing.TB, dir string, env []string, args ...string) *proc {
	t.Helper()
	cmd := exec.Command(pcmBinary, args...)
	cmd.Env = append(os.Environ(), env...)
	return startCmd(t, dir, "pcm-"+strings.ReplaceAll(args[0], "/", "_"), cmd)
}

// startCmd starts cmd; its stderr goes to a file in dir named after name,
// its stdout is read line by line. The process is killed at cleanup.
func startCmd(t testing.TB, dir, name string, cmd *exec.Cmd) *proc {
	t.Helper()
	logf := filepath.Join(dir, name+"-"+time.Now().Format("150405.000000")+".log")
	f, err := os.Create(logf)
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = f
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &proc{cmd: cmd, stdout: newLineReader(out), exited: make(chan error, 1), logf: logf}
	go func() { p.exited <- cmd.Wait(); f.Close() }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGKILL)
		<-p.exited
		if t.Failed() {
			b, _ := os.ReadFile(logf)
			t.Logf("log of %s %s:\n%s", filepath.Base(cmd.Path), strings.Join(cmd.Args[1:], " "), tail(string(b), 4000))
		}
	})
	return p
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[len(s)-n:]
}

// waitExit waits for the process to end by itself.
func (p *proc) waitExit(t testing.TB, timeout time.Duration) {
	t.Helper()
	select {
	case <-p.exited:
		p.exited <- nil // later waits return at once
	case <-time.After(timeout):
		t.Fatalf("pcm did not exit within %s", timeout)
	}
}

// stopGracefully sends SIGTERM and waits for the exit.
func (p *proc) stopGracefully(t testing.TB, timeout time.Duration) error {
	t.Helper()
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-p.exited:
		p.exited <- err
		return err
	case <-time.After(timeout):
		t.Fatalf("pcm did not stop within %s of SIGTERM", timeout)
		return nil
	}
}

// lineReader collects stdout lines as they come.
type lineReader struct{ lines chan string }

func newLineReader(r io.Reader) *lineReader {
	lr := &lineReader{lines: make(chan string, 1024)}
	go func() {
		s := bufio.NewScanner(r)
		for s.Scan() {
			lr.lines <- s.Text()
		}
		close(lr.lines)
	}()
	return lr
}

// waitLine waits for a stdout line matching re and returns its submatches.
func (lr *lineReader) waitLine(t testing.TB, re *regexp.Regexp, timeout time.Duration) []string {
	t.Helper()
	deadline := time.After(timeout)
	for {
		select {
		case l, ok := <-lr.lines:
			if !ok {
				t.Fatalf("stdout closed before a line matching %s", re)
			}
			if m := re.FindStringSubmatch(l); m != nil {
				return m
			}
		case <-deadline:
			t.Fatalf("no stdout line matching %s within %s", re, timeout)
		}
	}
}

// runPCM runs pcm to completion and returns its stdout, stderr and exit code.
func runPCM(t testing.TB, env []string, args ...string) (string, string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, pcmBinary, args...)
	cmd.Env = append(os.Environ(), env...)
	return runCmd(t, cmd)
}

// runCmd runs cmd to completion and returns its stdout, stderr and exit
// code.
func runCmd(t testing.TB, cmd *exec.Cmd) (string, string, int) {
	t.Helper()
	var out, errb strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("running %v: %v", cmd.Args, err)
	}
	return out.String(), errb.String(), code
}
