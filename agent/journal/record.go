package journal

import (
	"encoding/json"
	"fmt"
	"time"
)

// Phase is how far a job got on this client.
type Phase string

// The phases of a job, in the order a job goes through them. A job may go
// from PhaseFinished back to PhaseStarted for its next attempt; it never
// leaves PhaseDone.
const (
	// PhaseReceived: the offer was seen; nothing was run yet.
	PhaseReceived Phase = "received"
	// PhaseStarted: attempt Record.Attempt was started. The process may be
	// running, or the agent died while it ran: after a restart the attempt
	// counts as made.
	PhaseStarted Phase = "started"
	// PhaseFinished: attempt Record.Attempt finished; its final status may not
	// be on the broker yet (it is in the outbox until MarkSent).
	PhaseFinished Phase = "finished"
	// PhaseDone: the job is over on this client (its final status is persisted
	// on the broker); it is never run again.
	PhaseDone Phase = "done"
)

// valid reports whether p is one of the four phases.
func (p Phase) valid() bool {
	switch p {
	case PhaseReceived, PhaseStarted, PhaseFinished, PhaseDone:
		return true
	}
	return false
}

// MaxJobIDLen is the longest job id the journal stores, in bytes. pcm job ids
// are at most 64 characters; the journal itself only refuses ids that could
// not be a key.
const MaxJobIDLen = 1024

// Record is what the journal knows about one job on this client, keyed by
// JobID. The agent reads it, changes it and writes it back with Put.
type Record struct {
	// JobID identifies the job (the key of the record).
	JobID string `json:"job_id"`
	// Phase is how far the job got.
	Phase Phase `json:"phase"`
	// Attempt is the number of attempts started so far (1-based; 0 while
	// PhaseReceived).
	Attempt int `json:"attempt"`
	// PID is the process id of the attempt's process, while it runs.
	PID int `json:"pid,omitempty"`
	// ExitCode is the exit code of the last finished attempt.
	ExitCode int `json:"exit_code,omitempty"`
	// FinalState is the state of the last finished attempt ("succeeded",
	// "failed", ...).
	FinalState string `json:"final_state,omitempty"`
	// AckSubject is the reply subject of the latest delivery of the offer, so
	// the offer can be acked after a restart.
	AckSubject string `json:"ack_subject,omitempty"`
	// ForService is set for a job only the service runs (a background
	// job): a desktop's status of it is never believed (see agent.Decide).
	ForService bool `json:"for_service,omitempty"`
	// Cancelled is set once the job was cancelled by its publisher.
	Cancelled bool `json:"cancelled,omitempty"`
	// CancelReason is the reason given with the cancellation.
	CancelReason string `json:"cancel_reason,omitempty"`
	// StatusSeq is the PCM_STATUS stream sequence of the last reported final
	// status (set by MarkSent).
	StatusSeq uint64 `json:"status_seq,omitempty"`
	// UpdatedAt is when the record was last written. The journal sets it on
	// every write (Put, MarkSent); a value passed to Put is ignored.
	UpdatedAt time.Time `json:"updated_at"`
	// Times: first sight, deferral, restart (times.go).
	Times
}

// validate checks what Put needs to store rec safely.
func (rec Record) validate() error {
	switch {
	case rec.JobID == "":
		return fmt.Errorf("%w: record has an empty job id; set Record.JobID", ErrInvalid)
	case len(rec.JobID) > MaxJobIDLen:
		return fmt.Errorf("%w: job id of %d bytes is longer than %d", ErrInvalid, len(rec.JobID), MaxJobIDLen)
	case !rec.Phase.valid():
		return fmt.Errorf("%w: job %s: unknown phase %q; use PhaseReceived, PhaseStarted, PhaseFinished or PhaseDone",
			ErrInvalid, rec.JobID, rec.Phase)
	case rec.Attempt < 0:
		return fmt.Errorf("%w: job %s: negative attempt %d", ErrInvalid, rec.JobID, rec.Attempt)
	case (rec.Phase == PhaseStarted || rec.Phase == PhaseFinished) && rec.Attempt < 1:
		return fmt.Errorf("%w: job %s: phase %s needs the attempt number (1-based), got %d",
			ErrInvalid, rec.JobID, rec.Phase, rec.Attempt)
	}
	return rec.Times.validate(rec.JobID)
}

// decodeRecord decodes a stored record and checks it against its key.
func decodeRecord(key, v []byte) (Record, error) {
	var rec Record
	if err := json.Unmarshal(v, &rec); err != nil {
		return Record{}, fmt.Errorf("record %q does not decode: %v", key, err)
	}
	if rec.JobID != string(key) {
		return Record{}, fmt.Errorf("record under key %q names job %q", key, rec.JobID)
	}
	if !rec.Phase.valid() {
		return Record{}, fmt.Errorf("record %q has unknown phase %q", key, rec.Phase)
	}
	return rec, nil
}
