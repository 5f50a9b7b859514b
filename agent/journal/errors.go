package journal

import "errors"

// Sentinel errors. Every error the journal returns wraps exactly one of them
// (check with errors.Is); the message around it names the file or the job and
// says what to do.
var (
	// ErrCorrupt: the journal file is damaged or is not a pcm agent journal
	// (not a bbolt file, truncated, a page or a record that does not decode,
	// a failed consistency check). The journal is never recreated silently:
	// an operator must move the file aside.
	ErrCorrupt = errors.New("agent journal is corrupt")
	// ErrLocked: another process (normally another pcm agent) holds the
	// journal's file lock and did not release it within Options.Timeout.
	ErrLocked = errors.New("agent journal is locked")
	// ErrWrite: the journal could not be created, written, committed or
	// fsynced (disk full, read-only file system, permissions). Nothing of
	// the failed call was stored; the agent must not start the job whose
	// record it could not write.
	ErrWrite = errors.New("agent journal write failed")
	// ErrNotFound: MarkSent was given an outbox sequence the journal never
	// assigned.
	ErrNotFound = errors.New("not found in agent journal")
	// ErrClosed: the journal was used after Close.
	ErrClosed = errors.New("agent journal is closed")
	// ErrInvalid: Put was given an incomplete or inconsistent record or
	// outgoing message (empty job id, unknown phase, a started attempt
	// numbered 0, an outgoing message without subject or message id, or for
	// another job), or Open an empty path.
	ErrInvalid = errors.New("invalid agent journal entry")
	// ErrAlreadyDone: Put tried to move a job that is PhaseDone back to an
	// earlier phase. A done job is over on this client and never runs again;
	// nothing was written.
	ErrAlreadyDone = errors.New("job is already done on this client")
)
