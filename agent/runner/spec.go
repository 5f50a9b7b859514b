package runner

import (
	"fmt"
	"strings"
	"time"
)

// DefaultTailBytes is the size of [Result.OutputTail] when [Spec.TailBytes]
// is zero.
const DefaultTailBytes = 4096

// Spec describes one run of one job's command line.
type Spec struct {
	// JobID and ClientID are exported to the command as PCM_JOB_ID and
	// PCM_CLIENT_ID; the runner does not otherwise interpret them.
	JobID, ClientID string
	// Attempt is the 1-based attempt number, exported as PCM_ATTEMPT.
	Attempt int
	// Argv is the command line. argv[0] is the program, exec'd directly
	// (looked up in PATH when it contains no path separator; a relative path
	// is relative to Dir); no shell is involved unless Shell is set.
	Argv []string
	// Shell runs the command through the platform shell instead: on unix
	// /bin/sh -c with the elements of Argv joined by spaces, on Windows
	// %ComSpec% (cmd.exe) /S /C with the same joined line.
	Shell bool
	// Dir is the working directory of the command, exported as PCM_JOB_DIR
	// (made absolute). It is created with mode 0o750 if missing.
	Dir string
	// Env holds extra KEY=VALUE pairs, added after os.Environ() and the
	// PCM_* variables (so a key given here wins).
	Env []string
	// Timeout bounds the run; when it elapses the whole process tree is
	// killed and Result.TimedOut is set. It must be positive.
	Timeout time.Duration
	// LogPath is the file stdout and stderr of the run are appended to. It
	// is created with mode 0o640 (its directories with 0o750) if missing.
	LogPath string
	// TailBytes is how many bytes of the end of this run's output go into
	// Result.OutputTail; 0 means DefaultTailBytes.
	TailBytes int
}

// Result is what happened to a command that was started.
type Result struct {
	// PID is the process id of the command (0 for the no-op runner).
	PID int
	// ExitCode is the command's exit code, or -1 when it was killed by a
	// signal, by the timeout or by cancellation.
	ExitCode int
	// TimedOut is true when Spec.Timeout elapsed and the runner killed the
	// process tree.
	TimedOut bool
	// StartedAt is when the process had started; FinishedAt when it was
	// reaped.
	StartedAt, FinishedAt time.Time
	// OutputTail holds at most TailBytes bytes of the end of this run's
	// output (earlier runs appended to the same log are excluded). It is
	// always valid UTF-8, decoded from what the program wrote: UTF-16 (a
	// byte-order mark or the NUL pattern), UTF-8, or on Windows the OEM or
	// ANSI code page; a cut never splits a rune and bytes that decode to
	// nothing are replaced by U+FFFD. The log file keeps the raw bytes.
	OutputTail string
	// OutputEncoding names the encoding OutputTail was decoded from when it
	// was not UTF-8: EncodingUTF16LE, EncodingUTF16BE, or a code page such
	// as "cp437" or "cp1252"; empty for UTF-8.
	OutputEncoding string
}

// Validate reports whether the spec can be run. Every error it returns wraps
// [ErrInvalidSpec] and names the offending field.
func (s Spec) Validate() error {
	if len(s.Argv) == 0 || s.Argv[0] == "" {
		return fmt.Errorf("%w: argv is empty: give the program to run as argv[0]", ErrInvalidSpec)
	}
	for i, a := range s.Argv {
		if strings.IndexByte(a, 0) >= 0 {
			return fmt.Errorf("%w: argv[%d] contains a NUL byte, which no operating system accepts in a command line", ErrInvalidSpec, i)
		}
	}
	if s.Timeout <= 0 {
		return fmt.Errorf("%w: timeout is %v: set a positive timeout", ErrInvalidSpec, s.Timeout)
	}
	if s.Dir == "" {
		return fmt.Errorf("%w: dir is empty: set the job's working directory", ErrInvalidSpec)
	}
	if s.LogPath == "" {
		return fmt.Errorf("%w: log path is empty: set the file the output is appended to", ErrInvalidSpec)
	}
	if s.TailBytes < 0 {
		return fmt.Errorf("%w: tail bytes is %d: use 0 for the default or a positive size", ErrInvalidSpec, s.TailBytes)
	}
	for i, kv := range s.Env {
		k, _, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return fmt.Errorf("%w: env[%d] %q is not KEY=VALUE", ErrInvalidSpec, i, kv)
		}
		if strings.IndexByte(kv, 0) >= 0 {
			return fmt.Errorf("%w: env[%d] for %q contains a NUL byte", ErrInvalidSpec, i, k)
		}
	}
	return nil
}

// tailBytes returns the effective tail size.
func (s Spec) tailBytes() int {
	if s.TailBytes == 0 {
		return DefaultTailBytes
	}
	return s.TailBytes
}
