package lock

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"time"

	"github.com/pcm-project/pcm/events"
)

// The lock key's value is an events.LockInfo (PID defaults to the calling
// process, Host to os.Hostname, Since to now), stored as JSON with one more
// field, "lease", the random id of the lease that wrote it, so that a
// holder recognises its own writes.

// record is what the lock key stores: the Info and the id of the lease that
// wrote it, which lets a holder recognise its own write when the reply to a
// publish was lost.
type record struct {
	events.LockInfo
	Lease string `json:"lease"`
}

// prepare fills the defaults of info and checks it.
func prepare(info events.LockInfo) (events.LockInfo, error) {
	switch info.Holder {
	case events.RunnerService, events.RunnerDesktop, events.HolderController:
	default:
		return events.LockInfo{}, fmt.Errorf("%w: holder %q: use %q or %q (or %q for the rollout controller's lease)", ErrInvalidInfo, info.Holder, events.RunnerService, events.RunnerDesktop, events.HolderController)
	}
	if info.PID < 0 {
		return events.LockInfo{}, fmt.Errorf("%w: pid %d is negative: leave it 0 to use the calling process's pid", ErrInvalidInfo, info.PID)
	}
	if info.JobID != "" {
		if err := events.ValidID("job id", info.JobID); err != nil {
			return events.LockInfo{}, fmt.Errorf("%w: %w", ErrInvalidInfo, err)
		}
	}
	if info.PID == 0 {
		info.PID = os.Getpid()
	}
	if info.Host == "" {
		info.Host, _ = os.Hostname()
	}
	if info.Since.IsZero() {
		info.Since = time.Now()
	}
	info.Since = info.Since.UTC().Round(0)
	return info, nil
}

// sameHolder tells whether a and b describe the same holding.
func sameHolder(a, b events.LockInfo) bool {
	return a.Holder == b.Holder && a.PID == b.PID && a.User == b.User && a.Host == b.Host &&
		a.JobID == b.JobID && a.Since.Equal(b.Since)
}

// newLeaseID returns a random id for one lease.
func newLeaseID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails
	return hex.EncodeToString(b[:])
}

// decodeRecord reads the value of the lock key of cfg.
func decodeRecord(cfg Config, value []byte) (record, error) {
	var r record
	if err := json.Unmarshal(value, &r); err != nil || r.Holder == "" {
		if err == nil {
			err = fmt.Errorf("no holder")
		}
		return record{}, fmt.Errorf("%w: key %q of bucket %s: %v: if no agent of this client runs, delete the key (nats kv del %s %s)",
			ErrBadValue, cfg.Client, cfg.Bucket, err, cfg.Bucket, cfg.Client)
	}
	return r, nil
}
