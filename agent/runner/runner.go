package runner

import (
	"context"
	"fmt"
	"time"
)

// Runner runs a command.
//
// Run validates spec, starts the command and waits for it. started is called
// (synchronously, once) right after the process has started, with its pid,
// before Run waits for it; it may be nil.
//
// A non-nil error means the command could not be started at all (it wraps
// [ErrStart], and [ErrInvalidSpec] when the spec is invalid) or was stopped
// because ctx was cancelled (it wraps [ErrCancelled] and the context's cause;
// the process tree is killed first, and the Result describing the killed run
// is returned alongside). A command that ran and exited non-zero, or that
// timed out, is NOT an error: see Result.ExitCode and Result.TimedOut.
//
// Implementations are safe for concurrent use.
type Runner interface {
	Run(ctx context.Context, spec Spec, started func(pid int)) (Result, error)
}

// NewNoop returns a Runner that runs nothing, in-process: after validating
// the spec it calls started(0) and returns exit code 0 at once, writing no
// log. It is meant for benchmarks of the code around the runner.
func NewNoop() Runner { return noop{} }

type noop struct{}

// Run implements [Runner].
func (noop) Run(ctx context.Context, spec Spec, started func(pid int)) (Result, error) {
	if err := spec.Validate(); err != nil {
		return Result{ExitCode: -1}, fmt.Errorf("%w: %w", ErrStart, err)
	}
	if ctx.Err() != nil {
		return Result{ExitCode: -1}, fmt.Errorf("%w before the command started: %w", ErrCancelled, context.Cause(ctx))
	}
	now := time.Now()
	if started != nil {
		started(0)
	}
	return Result{StartedAt: now, FinishedAt: now}, nil
}
