package console

import (
	"github.com/pcm-project/pcm/events"
	"github.com/pcm-project/pcm/rollout"
)

// The states a console shows, in the order of its progress bars.
const (
	StateSucceeded     = "succeeded"
	StateFailed        = "failed"
	StateRunning       = "running"
	StatePending       = "pending"
	StateNotReceived   = "not_received"
	StateOffline       = "offline"
	StateNotApplicable = "not_applicable"
	StateCancelled     = "cancelled"
	StateHalted        = "halted"
	// StateNotReported is the jobs list's count of expected clients that
	// have not reported, before the console has read the fleet (then it
	// tells pending, not received and offline apart).
	StateNotReported = "not_reported"
)

// States are the console's states in display order.
var States = []string{StateSucceeded, StateFailed, StateRunning, StatePending, StateNotReceived, StateOffline,
	StateNotApplicable, StateCancelled, StateHalted, StateNotReported}

// statusState is the console state of a client's latest status.
func statusState(s events.State) string {
	switch s {
	case events.StateSucceeded:
		return StateSucceeded
	case events.StateStarted:
		return StateRunning
	case events.StateNotApplicable:
		return StateNotApplicable
	case events.StateCancelled:
		return StateCancelled
	case events.StateFailed, events.StateTimedOut, events.StateExpired, events.StateRejected:
		return StateFailed
	}
	return StatePending
}

// clientState is the console state of a client in a rollout.
func clientState(s rollout.ClientState) string {
	switch s {
	case rollout.ClientPending, rollout.ClientQueued, rollout.ClientLocked:
		return StatePending
	case rollout.ClientNotReceived:
		return StateNotReceived
	case rollout.ClientOffline:
		return StateOffline
	case rollout.ClientHalted:
		return StateHalted
	}
	return statusState(events.State(s))
}
