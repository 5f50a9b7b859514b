package events

import "time"

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
