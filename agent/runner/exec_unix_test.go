//go:build unix

package runner_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/pcm-project/pcm/agent/runner"
	"github.com/pcm-project/pcm/testenv"
)

// newSpec returns a spec running argv in a fresh temp dir, with a log in
// another one and a generous timeout.
func newSpec(t *testing.T, argv ...string) runner.Spec {
	t.Helper()
	root := t.TempDir()
	return runner.Spec{
		JobID: "job-1", ClientID: "client-1", Attempt: 2,
		Argv:    argv,
		Dir:     filepath.Join(root, "jobs", "job-1"),
		LogPath: filepath.Join(root, "logs", "job-1.log"),
		Timeout: 10 * time.Second,
	}
}

func shellSpec(t *testing.T, line string) runner.Spec {
	t.Helper()
	s := newSpec(t, line)
	s.Shell = true
	return s
}

func run(t *testing.T, spec runner.Spec) runner.Result {
	t.Helper()
	res, err := runner.NewExec().Run(t.Context(), spec, nil)
	if err != nil {
		t.Fatalf("Run(%q): %v", spec.Argv, err)
	}
	return res
}

// alive reports whether pid is a live process. A zombie counts as gone: it
// has been killed, and in a container the orphan may never be reaped.
func alive(pid int) bool {
	if err := syscall.Kill(pid, 0); err != nil {
		return false
	}
	if runtime.GOOS != "linux" {
		return true
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	i := bytes.LastIndexByte(stat, ')')
	return i < 0 || i+2 >= len(stat) || stat[i+2] != 'Z'
}

// pollPID polls path until it holds a pid, for at most d; ok is false when
// none came. It does not use t, so it may run on any goroutine.
func pollPID(path string, d time.Duration) (pid int, ok bool) {
	err := testenv.Poll(d, 5*time.Millisecond, func() error {
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if !bytes.HasSuffix(b, []byte("\n")) {
			return fmt.Errorf("%s holds no whole line yet", path)
		}
		pid, err = strconv.Atoi(strings.TrimSpace(string(b)))
		return err
	})
	return pid, err == nil
}

// readPID waits for path to hold a pid and returns it.
func readPID(t *testing.T, path string) int {
	t.Helper()
	pid, ok := pollPID(path, 5*time.Second)
	if !ok {
		t.Fatalf("no pid in %s after 5s", path)
	}
	return pid
}

func TestExitCodes(t *testing.T) {
	tests := []struct {
		name string
		spec func(t *testing.T) runner.Spec
		want int
	}{
		{"true", func(t *testing.T) runner.Spec { return newSpec(t, "true") }, 0},
		{"false", func(t *testing.T) runner.Spec { return newSpec(t, "false") }, 1},
		{"exit 3", func(t *testing.T) runner.Spec { return newSpec(t, "sh", "-c", "exit 3") }, 3},
		{"shell exit 3", func(t *testing.T) runner.Spec { return shellSpec(t, "exit 3") }, 3},
		{"killed by a signal", func(t *testing.T) runner.Spec { return shellSpec(t, "kill -9 $$") }, -1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := run(t, tt.spec(t))
			if res.ExitCode != tt.want || res.TimedOut {
				t.Fatalf("ExitCode = %d, TimedOut = %v; want %d, false", res.ExitCode, res.TimedOut, tt.want)
			}
			if res.PID <= 0 || res.StartedAt.IsZero() || res.FinishedAt.Before(res.StartedAt) {
				t.Fatalf("bad pid or times: %+v", res)
			}
		})
	}
}

func TestOutputTail(t *testing.T) {
	var long strings.Builder
	for i := range 300 {
		fmt.Fprintf(&long, "line-%03d-xxxxxxxx\n", i)
	}
	tests := []struct {
		name string
		argv []string
		tail int
		want string
		enc  string
	}{
		{"stdout and stderr", []string{"sh", "-c", "echo out; echo err >&2"}, 0, "out\nerr\n", ""},
		{"limited to TailBytes", []string{"sh", "-c", `i=0; while [ $i -lt 300 ]; do printf 'line-%03d-xxxxxxxx\n' $i; i=$((i+1)); done`}, 100, long.String()[long.Len()-100:], ""},
		{"default 4096", []string{"sh", "-c", `i=0; while [ $i -lt 300 ]; do printf 'line-%03d-xxxxxxxx\n' $i; i=$((i+1)); done`}, 0, long.String()[long.Len()-4096:], ""},
		// Three é (2 bytes each); the last 5 bytes start inside the first.
		{"cut inside a rune", []string{"printf", `\303\251\303\251\303\251`}, 5, "éé", ""},
		{"invalid bytes replaced", []string{"printf", `a\377b`}, 0, "a\uFFFDb", ""},
		{"no output", []string{"true"}, 0, "", ""},
		// What cmd /u writes: UTF-16LE, here with a byte-order mark.
		{"utf-16le decoded", []string{"printf", `\377\376h\000\351\000l\000l\000o\000\254\040\r\000\n\000`}, 0, "héllo€\r\n", runner.EncodingUTF16LE},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newSpec(t, tt.argv...)
			s.TailBytes = tt.tail
			res := run(t, s)
			if res.OutputTail != tt.want || res.OutputEncoding != tt.enc {
				t.Fatalf("OutputTail = %q (encoding %q), want %q (%q)", res.OutputTail, res.OutputEncoding, tt.want, tt.enc)
			}
			if !utf8.ValidString(res.OutputTail) {
				t.Fatalf("OutputTail %q is not valid UTF-8", res.OutputTail)
			}
		})
	}
}

func TestTailExcludesPreviousRun(t *testing.T) {
	s := newSpec(t, "echo", "first attempt")
	if res := run(t, s); res.OutputTail != "first attempt\n" {
		t.Fatalf("first OutputTail = %q", res.OutputTail)
	}
	s.Argv = []string{"echo", "second attempt"}
	if res := run(t, s); res.OutputTail != "second attempt\n" {
		t.Fatalf("second OutputTail = %q, want only this run's output", res.OutputTail)
	}
	log, err := os.ReadFile(s.LogPath)
	if err != nil {
		t.Fatal(err)
	}
	if string(log) != "first attempt\nsecond attempt\n" {
		t.Fatalf("log = %q, want both runs appended", log)
	}
}

func TestDirAndLogCreated(t *testing.T) {
	s := newSpec(t, "pwd")
	res := run(t, s)
	if res.OutputTail != s.Dir+"\n" {
		t.Fatalf("pwd = %q, want %q", res.OutputTail, s.Dir+"\n")
	}
	for path, perm := range map[string]os.FileMode{s.Dir: 0o750, filepath.Dir(s.LogPath): 0o750, s.LogPath: 0o640} {
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm()&^perm != 0 {
			t.Errorf("%s has mode %v, want at most %v", path, fi.Mode().Perm(), perm)
		}
	}
}

func TestStdinClosed(t *testing.T) {
	s := newSpec(t, "cat")
	s.Timeout = 5 * time.Second
	res := run(t, s)
	if res.ExitCode != 0 || res.TimedOut || res.OutputTail != "" {
		t.Fatalf("cat: %+v, want exit 0 at once with no output", res)
	}
}

func TestEnvironment(t *testing.T) {
	s := shellSpec(t, `echo "$PCM_JOB_ID|$PCM_CLIENT_ID|$PCM_ATTEMPT|$PCM_JOB_DIR|$EXTRA|${PATH:+path}"`)
	s.Env = []string{"EXTRA=extra value"}
	res := run(t, s)
	want := "job-1|client-1|2|" + s.Dir + "|extra value|path\n"
	if res.OutputTail != want {
		t.Fatalf("env = %q, want %q", res.OutputTail, want)
	}
}

func TestShellExpansion(t *testing.T) {
	tests := []struct {
		name  string
		shell bool
		want  string
	}{
		{"argv is not expanded", false, "$HOME\n"},
		{"shell expands", true, "/pcm-test-home\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newSpec(t, "echo", "$HOME")
			s.Shell = tt.shell
			s.Env = []string{"HOME=/pcm-test-home"}
			if res := run(t, s); res.OutputTail != tt.want {
				t.Fatalf("OutputTail = %q, want %q", res.OutputTail, tt.want)
			}
		})
	}
}

func TestStartErrors(t *testing.T) {
	tests := []struct {
		name   string
		modify func(t *testing.T, s *runner.Spec)
		want   []error
	}{
		{"missing program", func(t *testing.T, s *runner.Spec) { s.Argv = []string{"pcm-no-such-program"} }, []error{runner.ErrStart}},
		{"missing program path", func(t *testing.T, s *runner.Spec) { s.Argv = []string{"./no-such-program"} }, []error{runner.ErrStart}},
		{"not executable", func(t *testing.T, s *runner.Spec) {
			p := filepath.Join(t.TempDir(), "script")
			if err := os.WriteFile(p, []byte("#!/bin/sh\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			s.Argv = []string{p}
		}, []error{runner.ErrStart}},
		{"dir under a file", func(t *testing.T, s *runner.Spec) {
			f := filepath.Join(t.TempDir(), "file")
			if err := os.WriteFile(f, nil, 0o600); err != nil {
				t.Fatal(err)
			}
			s.Dir = filepath.Join(f, "work")
		}, []error{runner.ErrStart}},
		{"log under a file", func(t *testing.T, s *runner.Spec) {
			f := filepath.Join(t.TempDir(), "file")
			if err := os.WriteFile(f, nil, 0o600); err != nil {
				t.Fatal(err)
			}
			s.LogPath = filepath.Join(f, "job.log")
		}, []error{runner.ErrStart}},
		{"invalid spec", func(t *testing.T, s *runner.Spec) { s.Timeout = 0 }, []error{runner.ErrStart, runner.ErrInvalidSpec}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newSpec(t, "true")
			tt.modify(t, &s)
			called := false
			_, err := runner.NewExec().Run(t.Context(), s, func(int) { called = true })
			for _, want := range tt.want {
				if !errors.Is(err, want) {
					t.Fatalf("err = %v, want %v", err, want)
				}
			}
			if errors.Is(err, runner.ErrCancelled) {
				t.Fatalf("err = %v also wraps ErrCancelled", err)
			}
			if called {
				t.Fatal("started was called for a command that did not start")
			}
		})
	}
}

func TestStartedGetsRealPID(t *testing.T) {
	s := shellSpec(t, "echo $$")
	var calls []int
	res, err := runner.NewExec().Run(t.Context(), s, func(pid int) { calls = append(calls, pid) })
	if err != nil {
		t.Fatal(err)
	}
	if len(calls) != 1 || calls[0] != res.PID || res.OutputTail != strconv.Itoa(res.PID)+"\n" {
		t.Fatalf("started calls %v, Result.PID %d, pid seen by the command %q: want one call with the same pid", calls, res.PID, res.OutputTail)
	}
}

// treeLine starts a grandchild sleep in the background, writes its pid to
// pidFile and waits for it.
func treeLine(pidFile string) string {
	return "sleep 30 & echo $! > " + pidFile + "; wait"
}

func TestTimeoutKillsTree(t *testing.T) {
	pidFile := filepath.Join(t.TempDir(), "child.pid")
	s := shellSpec(t, treeLine(pidFile))
	s.Timeout = 300 * time.Millisecond
	begin := time.Now()
	res, err := runner.NewExec().Run(t.Context(), s, nil)
	if err != nil {
		t.Fatalf("Run: %v (a timeout is a result, not an error)", err)
	}
	if !res.TimedOut || res.ExitCode != -1 {
		t.Fatalf("TimedOut = %v, ExitCode = %d; want true, -1", res.TimedOut, res.ExitCode)
	}
	if took := time.Since(begin); took < s.Timeout || took > 5*time.Second {
		t.Fatalf("Run took %v with a %v timeout", took, s.Timeout)
	}
	child := readPID(t, pidFile)
	testenv.WaitFor(t, 5*time.Second, fmt.Sprintf("grandchild %d to die", child), func() bool { return !alive(child) })
}

func TestCancelKillsTree(t *testing.T) {
	pidFile := filepath.Join(t.TempDir(), "child.pid")
	s := shellSpec(t, treeLine(pidFile))
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	childc := make(chan int, 1)
	go func() {
		pid, _ := pollPID(pidFile, 5*time.Second)
		childc <- pid
		cancel()
	}()
	res, err := runner.NewExec().Run(ctx, s, nil)
	if !errors.Is(err, runner.ErrCancelled) || !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want ErrCancelled wrapping context.Canceled", err)
	}
	if res.TimedOut || res.ExitCode != -1 || res.PID <= 0 {
		t.Fatalf("result %+v, want ExitCode -1, not timed out, with a pid", res)
	}
	child := <-childc
	if child == 0 {
		t.Fatalf("no pid in %s", pidFile)
	}
	testenv.WaitFor(t, 5*time.Second, fmt.Sprintf("grandchild %d to die", child), func() bool { return !alive(child) })
}

func TestCancelledBeforeStart(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	s := newSpec(t, "true")
	_, err := runner.NewExec().Run(ctx, s, func(int) { t.Error("started called") })
	if !errors.Is(err, runner.ErrCancelled) {
		t.Fatalf("err = %v, want ErrCancelled", err)
	}
}

// A grandchild left running in the background keeps the log file open; with
// no pipe involved, Run still returns when the command itself exits, and
// the grandchild is not killed.
func TestBackgroundGrandchildDoesNotBlock(t *testing.T) {
	pidFile := filepath.Join(t.TempDir(), "child.pid")
	s := shellSpec(t, "sleep 30 & echo $! > "+pidFile+"; echo done")
	res := run(t, s)
	child := readPID(t, pidFile)
	t.Cleanup(func() { _ = syscall.Kill(child, syscall.SIGKILL) })
	if res.TimedOut || res.ExitCode != 0 || res.OutputTail != "done\n" {
		t.Fatalf("result %+v, want exit 0 with output %q", res, "done\n")
	}
	if !alive(child) {
		t.Fatalf("background grandchild %d was killed after a normal exit", child)
	}
}
