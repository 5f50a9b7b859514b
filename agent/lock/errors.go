package lock

import (
	"errors"
	"fmt"
	"time"

	"github.com/pcm-project/pcm/events"
)

// Sentinel errors. Every error this package returns wraps one of them (or a
// context or NATS error) so that callers can tell them apart with errors.Is.
var (
	// ErrInvalidConfig: the Config, or an argument of New, is unusable.
	ErrInvalidConfig = errors.New("invalid lock config")
	// ErrInvalidInfo: the events.LockInfo given to TryAcquire or Acquire is
	// unusable.
	ErrInvalidInfo = errors.New("invalid lock info")
	// ErrHeld: the lock is held by someone else. The error is a *HeldError
	// that says who holds it.
	ErrHeld = errors.New("lock is held")
	// ErrNotHeld: Release found that the lease had been lost before (its
	// renewals failed for a whole lease, or the key changed under it).
	ErrNotHeld = errors.New("lock is not held")
	// ErrLeaseExpired: renewals failed for longer than the lease, so the key
	// may have expired and another holder may have taken it. It is the reason
	// given by Lease.Err.
	ErrLeaseExpired = errors.New("lock lease expired")
	// ErrLockChanged: the lock key no longer carries this lease's revision (it
	// was deleted, purged, expired or taken by another holder). It is the
	// reason given by Lease.Err.
	ErrLockChanged = errors.New("lock key changed under its holder")
	// ErrNoTTL: the bucket refuses per-key TTLs, so a lock could outlive a
	// dead holder.
	ErrNoTTL = errors.New("lock bucket does not allow per-key TTLs")
	// ErrBadValue: the lock key holds a value that is not a lock record.
	ErrBadValue = errors.New("lock key holds an unreadable value")
)

// HeldError is returned by TryAcquire when another holder has the lock. It
// matches ErrHeld with errors.Is.
type HeldError struct {
	// Client is the client id whose lock is held.
	Client string
	// Info says who holds the lock. It is zero if the key's value could not be read.
	Info events.LockInfo
	// Revision is the revision of the lock key when it was read (0 if unknown).
	Revision uint64

	expires time.Time // when the holding ends unless renewed (zero if unknown)
}

// Error names the holder.
func (e *HeldError) Error() string {
	i := e.Info
	if i.Holder == "" {
		return fmt.Sprintf("%s: the lock of client %q is held (holder unknown): wait for it with Acquire", ErrHeld, e.Client)
	}
	who := fmt.Sprintf("the %s (pid %d", i.Holder, i.PID)
	if i.User != "" {
		who += ", user " + i.User
	}
	if i.Host != "" {
		who += ", host " + i.Host
	}
	if i.JobID != "" {
		who += ", job " + i.JobID
	}
	who += ")"
	return fmt.Sprintf("%s: the lock of client %q is held by %s since %s: wait for it with Acquire",
		ErrHeld, e.Client, who, i.Since.Format(time.RFC3339))
}

// Unwrap makes errors.Is(err, ErrHeld) true.
func (e *HeldError) Unwrap() error { return ErrHeld }
