package events

import (
	"encoding/json"
	"time"
)

// AgentInfo is the value an agent keeps under its client id in the
// PCM_AGENTS bucket: its inventory and heartbeat.
type AgentInfo struct {
	ClientID  string    `json:"client_id"`
	Host      string    `json:"host"`
	OS        string    `json:"os"`
	Arch      string    `json:"arch"`
	Groups    []string  `json:"groups,omitempty"`
	Version   string    `json:"version"`
	PID       int       `json:"pid"`
	StartedAt time.Time `json:"started_at"`
	LastSeen  time.Time `json:"last_seen"`
	// Heartbeat is how often LastSeen is refreshed; a reader calls the agent
	// stale when LastSeen is older than a few heartbeats.
	Heartbeat Duration `json:"heartbeat"`
	// CurrentJob is the job the agent is running, if any.
	CurrentJob string `json:"current_job,omitempty"`
	// Channel is the release channel the agent follows, if any.
	Channel string `json:"channel,omitempty"`
	// Update is the agent's last self-update, if any: the "update failed"
	// record says why.
	Update *UpdateInfo `json:"update,omitempty"`
	// StateDir is the agent's state directory: with Host, it tells the
	// agent that restarts from the one that would run beside it.
	StateDir string `json:"state_dir,omitempty"`
	// StoppedAt is when the agent stopped cleanly, if it did.
	StoppedAt *time.Time `json:"stopped_at,omitempty"`
}

// The states of an UpdateInfo.
const (
	// UpdateApplied: the new version runs and reported healthy.
	UpdateApplied = "applied"
	// UpdateFailed: the new version did not report healthy in time, or
	// exited; the previous binary was restored.
	UpdateFailed = "failed"
	// UpdateRefused: the release was not installed (bad signature, wrong
	// sha256, older version, no binary for this platform).
	UpdateRefused = "refused"
)

// UpdateInfo is an agent's last self-update.
type UpdateInfo struct {
	// Version is the release the update was to.
	Version string `json:"version"`
	// From is the version that ran before.
	From string `json:"from,omitempty"`
	// State is UpdateApplied, UpdateFailed or UpdateRefused.
	State string `json:"state"`
	// Reason says why an update failed or was refused.
	Reason string    `json:"reason,omitempty"`
	At     time.Time `json:"at"`
}

// Stale reports whether the agent has missed its heartbeats (three of them)
// at now.
func (a AgentInfo) Stale(now time.Time) bool {
	hb := time.Duration(a.Heartbeat)
	if hb <= 0 {
		hb = 30 * time.Second
	}
	return now.Sub(a.LastSeen) > 3*hb
}

// LockInfo is the value of key <client> in the PCM_LOCKS bucket: which face
// holds the client's service-versus-desktop lock, and since when.
type LockInfo struct {
	// Holder is the face holding the lock: RunnerService or RunnerDesktop.
	Holder Runner `json:"holder"`
	// PID is the holder's process id.
	PID int `json:"pid"`
	// User is the user the holder runs as, if known.
	User string `json:"user,omitempty"`
	// Host is the holder's host name.
	Host string `json:"host,omitempty"`
	// JobID is the job the holder runs, if any.
	JobID string `json:"job_id,omitempty"`
	// Since is when the holder took the lock.
	Since time.Time `json:"since"`
}

// ParseAgentInfo reads the PCM_AGENTS value of key; ok is false for a value
// that is not an AgentInfo, or is another client's (a missing client id is
// the key's).
func ParseAgentInfo(key string, value []byte) (a AgentInfo, ok bool) {
	if json.Unmarshal(value, &a) != nil {
		return AgentInfo{}, false
	}
	if a.ClientID == "" {
		a.ClientID = key
	}
	return a, a.ClientID == key
}

// ParseLockInfo reads a PCM_LOCKS value; ok is false for a value that
// names no holder.
func ParseLockInfo(value []byte) (l LockInfo, ok bool) {
	if json.Unmarshal(value, &l) != nil || l.Holder == "" {
		return LockInfo{}, false
	}
	return l, true
}
