package journal

import (
	"fmt"
	"time"
)

// Restart is how far the restart a job asked for got on this client.
type Restart string

// The phases of a restart, in order.
const (
	// RestartNone: the job asked for no restart.
	RestartNone Restart = ""
	// RestartPending: the job succeeded asking for a restart, which has not
	// been asked of the machine yet.
	RestartPending Restart = "pending"
	// RestartRequested: the agent asked the machine to restart (at
	// Times.RestartRequested, during boot Times.RestartBoot); it reports
	// the job restarted once the machine is back.
	RestartRequested Restart = "requested"
	// RestartDone: the machine restarted and the restarted status is
	// recorded.
	RestartDone Restart = "done"
)

func (r Restart) valid() bool {
	switch r {
	case RestartNone, RestartPending, RestartRequested, RestartDone:
		return true
	}
	return false
}

// Times is what the journal keeps of a job's time rules on this client
// (embedded in Record): when the agent first saw it, the user's deferral,
// and the restart it asked for.
type Times struct {
	// FirstSeen is when the agent first saw the offer: a client that saw it
	// after its mandatory time gives its user the job's grace after
	// offline, counted from then, also across restarts of the agent.
	FirstSeen time.Time `json:"first_seen,omitzero"`
	// Deferral is the number of the user's last deferral the agent knows,
	// DeferredUntil its end: kept here so that a deferral holds whatever
	// the broker's last status says later.
	Deferral      int       `json:"deferral,omitempty"`
	DeferredUntil time.Time `json:"deferred_until,omitzero"`
	// MayReboot and InWindow are the job's: a restart asked for by a run
	// of the desktop is the service's to make, inside a maintenance window
	// when the job requires one.
	MayReboot bool `json:"may_reboot,omitempty"`
	InWindow  bool `json:"in_window,omitempty"`
	// Restart is how far the restart the job asked for got; RestartAt is
	// when it may happen at the earliest (after the user's countdown),
	// RestartRequested when the agent asked the machine, during the boot
	// RestartBoot identifies (empty where the platform tells none).
	Restart          Restart   `json:"restart,omitempty"`
	RestartAt        time.Time `json:"restart_at,omitzero"`
	RestartRequested time.Time `json:"restart_requested,omitzero"`
	RestartBoot      string    `json:"restart_boot,omitempty"`
}

// validate checks the times of a record.
func (t Times) validate(job string) error {
	switch {
	case !t.Restart.valid():
		return fmt.Errorf("%w: job %s: unknown restart phase %q; use RestartPending, RestartRequested or RestartDone", ErrInvalid, job, t.Restart)
	case t.Deferral < 0:
		return fmt.Errorf("%w: job %s: negative deferral %d", ErrInvalid, job, t.Deferral)
	}
	return nil
}
