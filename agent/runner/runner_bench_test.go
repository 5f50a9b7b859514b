package runner_test

import (
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/pcm-project/pcm/agent/runner"
)

func benchRun(b *testing.B, r runner.Runner, argv ...string) {
	root := b.TempDir()
	s := runner.Spec{
		JobID: "bench", ClientID: "bench", Attempt: 1,
		Argv:    argv,
		Dir:     filepath.Join(root, "work"),
		LogPath: filepath.Join(root, "bench.log"),
		Timeout: 10 * time.Second,
	}
	for b.Loop() {
		res, err := r.Run(b.Context(), s, nil)
		if err != nil || res.ExitCode != 0 {
			b.Fatalf("Run: %+v, %v", res, err)
		}
	}
}

// BenchmarkExecTrue measures a whole run of a real process: spec checks,
// log open, fork/exec, wait and tail read.
func BenchmarkExecTrue(b *testing.B) {
	if runtime.GOOS == "windows" {
		b.Skip("no `true` program on Windows")
	}
	benchRun(b, runner.NewExec(), "true")
}

// BenchmarkNoop measures the in-process runner, the floor for callers.
func BenchmarkNoop(b *testing.B) {
	benchRun(b, runner.NewNoop(), "true")
}
