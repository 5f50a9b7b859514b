package journal

import (
	"errors"
	"fmt"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
)

// DefaultTimeout is how long Open waits for another process's lock on the
// journal when Options.Timeout is zero.
const DefaultTimeout = time.Second

// Bucket names and the format marker of a pcm agent journal.
var (
	bucketMeta    = []byte("meta")
	bucketRecords = []byte("records")
	bucketOutbox  = []byte("outbox")
	keyFormat     = []byte("format")
	formatV1      = []byte("pcm-agent-journal/1")
)

// Options configure Open. The zero value is the production setting.
type Options struct {
	// Timeout is how long Open waits for the file lock held by another
	// process before it fails with ErrLocked: 0 means DefaultTimeout, a
	// negative value means try once.
	Timeout time.Duration
	// NoSync skips the fsync of every commit. Only for benchmarks and tests:
	// with it a crash can lose or corrupt the journal.
	NoSync bool
	// MarkDelay is how long a MarkSent may wait in memory for another
	// write to carry it to the file before it gets a transaction of its
	// own (see MarkSent): 0 means DefaultMarkDelay, a negative value
	// commits every MarkSent at once.
	MarkDelay time.Duration

	// maxSize caps the file size (bbolt MaxSize) so tests can simulate a
	// full disk; 0 means no limit.
	maxSize int
}

// Journal is an open agent journal. It is safe for concurrent use; writes
// are serialised by bbolt, each is one fsynced transaction (MarkSent rides
// on the next one: see MarkSent).
type Journal struct {
	path string
	db   *bolt.DB

	mu     sync.RWMutex // write-held by Close; read-held by every operation
	closed bool

	markDelay time.Duration
	marksMu   sync.Mutex
	marks     map[uint64]sentMark // outbox entries reported sent, not committed yet
	markTimer *time.Timer         // commits marks after markDelay
}

// Path returns the path of the journal file as given to Open.
func (j *Journal) Path() string { return j.path }

// Close writes the sent marks not yet in the file, releases the file lock
// and closes the file, waiting for operations in progress. Closing twice is a no-op; any other call after Close fails
// with ErrClosed.
func (j *Journal) Close() error {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.closed {
		return nil
	}
	j.closed = true
	j.marksMu.Lock()
	if j.markTimer != nil {
		j.markTimer.Stop()
		j.markTimer = nil
	}
	j.marksMu.Unlock()
	// Unwritten marks are lost with a failure here, as in a crash.
	markErr := j.commit("writing sent marks", func(*bolt.Tx) error { return nil })
	if err := j.db.Close(); err != nil {
		return fmt.Errorf("%w: closing %s: %v", ErrWrite, j.path, err)
	}
	return markErr
}

// acquire read-locks the journal for one operation, or fails with ErrClosed.
// The caller must call the returned release function.
func (j *Journal) acquire(op string) (release func(), err error) {
	j.mu.RLock()
	if j.closed {
		j.mu.RUnlock()
		return nil, fmt.Errorf("%w: cannot %s: the journal %s was closed; open it again", ErrClosed, op, j.path)
	}
	return j.mu.RUnlock, nil
}

// writeErr wraps a failed write transaction: sentinel errors produced inside
// the transaction pass through, anything else (commit, fsync, disk full) is
// ErrWrite.
func (j *Journal) writeErr(what string, err error) error {
	for _, s := range []error{ErrInvalid, ErrAlreadyDone, ErrNotFound, ErrCorrupt} {
		if errors.Is(err, s) {
			return err
		}
	}
	return fmt.Errorf("%w: %s in %s: %v; nothing was stored: free disk space or fix the file's permissions",
		ErrWrite, what, j.path, err)
}
