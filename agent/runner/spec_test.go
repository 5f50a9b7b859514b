package runner_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/pcm-project/pcm/agent/runner"
)

func validSpec() runner.Spec {
	return runner.Spec{
		JobID: "job-1", ClientID: "client-1", Attempt: 1,
		Argv:    []string{"true"},
		Dir:     "work",
		LogPath: "job.log",
		Timeout: time.Second,
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name   string
		modify func(*runner.Spec)
		want   error
	}{
		{"valid", func(*runner.Spec) {}, nil},
		{"valid with env and tail", func(s *runner.Spec) { s.Env = []string{"A=1", "B="}; s.TailBytes = 10 }, nil},
		{"nil argv", func(s *runner.Spec) { s.Argv = nil }, runner.ErrInvalidSpec},
		{"empty program", func(s *runner.Spec) { s.Argv = []string{""} }, runner.ErrInvalidSpec},
		{"NUL in program", func(s *runner.Spec) { s.Argv = []string{"tr\x00ue"} }, runner.ErrInvalidSpec},
		{"NUL in argument", func(s *runner.Spec) { s.Argv = []string{"echo", "a\x00b"} }, runner.ErrInvalidSpec},
		{"zero timeout", func(s *runner.Spec) { s.Timeout = 0 }, runner.ErrInvalidSpec},
		{"negative timeout", func(s *runner.Spec) { s.Timeout = -time.Second }, runner.ErrInvalidSpec},
		{"no dir", func(s *runner.Spec) { s.Dir = "" }, runner.ErrInvalidSpec},
		{"no log path", func(s *runner.Spec) { s.LogPath = "" }, runner.ErrInvalidSpec},
		{"negative tail", func(s *runner.Spec) { s.TailBytes = -1 }, runner.ErrInvalidSpec},
		{"env without =", func(s *runner.Spec) { s.Env = []string{"A"} }, runner.ErrInvalidSpec},
		{"env without key", func(s *runner.Spec) { s.Env = []string{"=1"} }, runner.ErrInvalidSpec},
		{"env with NUL", func(s *runner.Spec) { s.Env = []string{"A=1\x002"} }, runner.ErrInvalidSpec},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := validSpec()
			tt.modify(&s)
			err := s.Validate()
			if !errors.Is(err, tt.want) || (tt.want == nil) != (err == nil) {
				t.Fatalf("Validate() = %v, want %v", err, tt.want)
			}
		})
	}
}

func TestNoop(t *testing.T) {
	r := runner.NewNoop()
	var got []int
	res, err := r.Run(t.Context(), validSpec(), func(pid int) { got = append(got, pid) })
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if len(got) != 1 || got[0] != 0 {
		t.Fatalf("started called with %v, want [0]", got)
	}
	if res.ExitCode != 0 || res.TimedOut || res.PID != 0 || res.StartedAt.IsZero() {
		t.Fatalf("unexpected result %+v", res)
	}

	s := validSpec()
	s.Argv = nil
	if _, err := r.Run(t.Context(), s, nil); !errors.Is(err, runner.ErrStart) || !errors.Is(err, runner.ErrInvalidSpec) {
		t.Fatalf("invalid spec: err = %v, want ErrStart and ErrInvalidSpec", err)
	}

	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := r.Run(ctx, validSpec(), nil); !errors.Is(err, runner.ErrCancelled) || !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled ctx: err = %v, want ErrCancelled and context.Canceled", err)
	}
}
