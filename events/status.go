package events

import (
	"fmt"
	"strconv"
	"time"
)

// State is the state a status reports.
type State string

// The states of a job on a client. Started is the only non-final state; each
// attempt ends in exactly one final state.
const (
	StateStarted       State = "started"
	StateSucceeded     State = "succeeded"
	StateFailed        State = "failed"
	StateTimedOut      State = "timed_out"
	StateCancelled     State = "cancelled"
	StateExpired       State = "expired"
	StateNotApplicable State = "not_applicable"
	StateRejected      State = "rejected"
	// StateDeferred is not final: the user at the desktop put the job off
	// (before its attempt ran) until the status's deferred_until.
	StateDeferred State = "deferred"
	// StateRestarted is not final either, and it ends the job: the machine
	// restarted after the attempt that succeeded asking for it.
	StateRestarted State = "restarted"
)

// States lists every state, started first.
var States = []State{StateStarted, StateSucceeded, StateFailed, StateTimedOut,
	StateCancelled, StateExpired, StateNotApplicable, StateRejected, StateDeferred, StateRestarted}

// Known reports whether s is one of States.
func (s State) Known() bool {
	for _, k := range States {
		if s == k {
			return true
		}
	}
	return false
}

// Final reports whether s ends an attempt: neither started, deferred (no
// attempt ran yet) nor restarted (which follows the final status of its
// attempt).
func (s State) Final() bool {
	return s.Known() && s != StateStarted && s != StateDeferred && s != StateRestarted
}

// Retryable reports whether an attempt that ended in s may be followed by
// another one, within the job's max_attempts.
func (s State) Retryable() bool { return s == StateFailed || s == StateTimedOut }

// Runner says which face of the agent produced a status.
type Runner string

// The two faces of an agent.
const (
	RunnerService Runner = "service"
	RunnerDesktop Runner = "desktop"
)

// MaxOutputTail is the largest output tail a status carries, in bytes.
const MaxOutputTail = 4096

// JobStatus is the data of a pcm.job.status.v1 event: the status MIF of one
// attempt of one job on one client.
type JobStatus struct {
	JobID    string `json:"job_id"`
	ClientID string `json:"client_id"`
	Host     string `json:"host,omitempty"`
	State    State  `json:"state"`
	// Attempt numbers the runs of the job on this client from 1. A final
	// status that ends a job without running it carries the attempt it would
	// have been.
	Attempt     int        `json:"attempt"`
	MaxAttempts int        `json:"max_attempts,omitempty"`
	ExitCode    *int       `json:"exit_code,omitempty"`
	PID         int        `json:"pid,omitempty"`
	StartedAt   *time.Time `json:"started_at,omitempty"`
	FinishedAt  *time.Time `json:"finished_at,omitempty"`
	Runner      Runner     `json:"runner"`
	User        string     `json:"user,omitempty"`
	OutputTail  string     `json:"output_tail,omitempty"`
	Reason      string     `json:"reason,omitempty"`
	// AgentVersion is the version of the pcm agent that reported.
	AgentVersion string `json:"agent_version,omitempty"`
	// Platform is the client's os/arch.
	Platform string `json:"platform,omitempty"`
	// LockRevision is the fencing token: the revision of the lock the
	// reporting face held while running (0 when it ran nothing).
	LockRevision uint64 `json:"lock_revision,omitempty"`
	// TimeRulesStatus: a deferral, a restart required (schedule.go).
	TimeRulesStatus
}

// StatusID is the event id (and Nats-Msg-Id) of a status:
// <job>.<client>.<state>.<attempt>. A retried publish of the same status is
// stored once.
func StatusID(job, client string, state State, attempt int) string {
	return job + "." + client + "." + string(state) + "." + strconv.Itoa(attempt)
}

// ID is the status's event id: StatusID, but for a deferred status, whose
// state token is deferred-<deferral> (each deferral of an attempt is a
// status of its own).
func (s JobStatus) ID() string {
	if s.State == StateDeferred {
		return StatusID(s.JobID, s.ClientID, State(string(s.State)+"-"+strconv.Itoa(s.Deferral)), s.Attempt)
	}
	return StatusID(s.JobID, s.ClientID, s.State, s.Attempt)
}

// Validate checks the rules of a status.
func (s JobStatus) Validate() error {
	if err := ValidID("job id", s.JobID); err != nil {
		return err
	}
	if err := ValidID("client id", s.ClientID); err != nil {
		return err
	}
	if !s.State.Known() {
		return fmt.Errorf("%w: state %q: use one of started, succeeded, failed, timed_out, cancelled, expired, not_applicable, rejected, deferred, restarted", ErrInvalidState, s.State)
	}
	if s.Runner != RunnerService && s.Runner != RunnerDesktop {
		return fmt.Errorf("%w: runner %q: use service or desktop", ErrInvalidState, s.Runner)
	}
	if s.Attempt < 1 || s.Attempt > MaxAttemptsLimit {
		return fmt.Errorf("%w: attempt is %d: attempts are numbered 1 to %d", ErrMaxAttempts, s.Attempt, MaxAttemptsLimit)
	}
	if s.MaxAttempts < 0 || s.MaxAttempts > MaxAttemptsLimit {
		return fmt.Errorf("%w: max_attempts is %d: use 1 to %d (or leave it out)", ErrMaxAttempts, s.MaxAttempts, MaxAttemptsLimit)
	}
	if s.PID < 0 {
		return fmt.Errorf("%w: pid is %d: a process id is 0 or more (0 when nothing ran)", ErrInvalidState, s.PID)
	}
	if len(s.OutputTail) > MaxOutputTail {
		return fmt.Errorf("%w: output_tail is %d bytes: keep the last %d", ErrTooLarge, len(s.OutputTail), MaxOutputTail)
	}
	return s.validateTimeRules()
}

// JobCancelled is the data of a pcm.job.cancelled.v1 event.
type JobCancelled struct {
	// JobID is the job being cancelled; it is the event's subject.
	JobID string `json:"job_id"`
	// Reason says why, for the audit record.
	Reason string `json:"reason,omitempty"`
	// Targets are the targets the job was offered to; the cancellation is
	// published to the same subjects.
	Targets []Target `json:"targets"`
}

// maxReasonLen bounds the reason of a cancellation.
const maxReasonLen = 1024

// Validate checks the rules of a cancellation.
func (c JobCancelled) Validate() error {
	if err := ValidID("job id", c.JobID); err != nil {
		return err
	}
	if len(c.Reason) > maxReasonLen {
		return fmt.Errorf("%w: reason is %d bytes: use at most %d", ErrTooLarge, len(c.Reason), maxReasonLen)
	}
	return validateTargets(c.Targets)
}
