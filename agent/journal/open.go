package journal

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"syscall"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// Open opens the journal at path, creating the file (mode 0600) and its
// missing directories (mode 0700) when absent.
//
// It takes an exclusive lock on the file: when another process holds it for
// longer than opts.Timeout, Open fails with ErrLocked. It then checks the
// whole file (bbolt structure, truncation, every record and outbox entry): a
// file that is not a pcm agent journal or is damaged fails with ErrCorrupt
// and is left untouched, never recreated. A directory or file that cannot be
// created or written fails with ErrWrite.
func Open(path string, opts Options) (*Journal, error) {
	if path == "" {
		return nil, fmt.Errorf("%w: empty journal path; give the agent a journal file path", ErrInvalid)
	}
	timeout := opts.Timeout
	switch {
	case timeout == 0:
		timeout = DefaultTimeout
	case timeout < 0:
		timeout = time.Nanosecond // bbolt: fail after the first attempt
	}

	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("%w: cannot create the journal directory %s: %v; create it writable for the agent or choose another journal path",
			ErrWrite, dir, err)
	}
	existed := true
	fresh := false
	switch fi, err := os.Stat(path); {
	case errors.Is(err, fs.ErrNotExist):
		existed, fresh = false, true
	case err != nil:
		return nil, fmt.Errorf("%w: cannot stat journal %s: %v", ErrWrite, path, err)
	case fi.Size() == 0:
		fresh = true
	}

	db, err := openBolt(path, &bolt.Options{
		Timeout: timeout,
		NoSync:  opts.NoSync,
		MaxSize: opts.maxSize,
	})
	if err != nil {
		err = classifyOpenErr(path, timeout, fresh, err)
		if !existed && errors.Is(err, ErrWrite) {
			_ = os.Remove(path) // do not leave a half-initialised file we created
		}
		return nil, err
	}
	markDelay := opts.MarkDelay
	if markDelay == 0 {
		markDelay = DefaultMarkDelay
	}
	j := &Journal{path: path, db: db, markDelay: markDelay, marks: map[uint64]sentMark{}}
	if err := j.verify(); err != nil {
		_ = db.Close()
		return nil, err
	}
	if !existed {
		if err := syncDir(dir); err != nil {
			_ = db.Close()
			return nil, fmt.Errorf("%w: cannot fsync directory %s after creating the journal: %v", ErrWrite, dir, err)
		}
	}
	return j, nil
}

// openFileError marks an error of opening the file itself, as opposed to an
// error of reading what is in it.
type openFileError struct{ err error }

func (e *openFileError) Error() string { return e.err.Error() }
func (e *openFileError) Unwrap() error { return e.err }

// panicError is a panic (or memory fault) bbolt raised on a damaged file.
type panicError struct{ v any }

func (e *panicError) Error() string { return fmt.Sprintf("reading the file panicked: %v", e.v) }

// openBolt is bolt.Open made safe against damaged files: bbolt panics on
// some of them, and a truncated file faults (SIGBUS) when a page beyond its
// end is read; both are turned into a *panicError. On a panic the file is
// unlocked and closed (its memory mapping cannot be released: it leaks).
func openBolt(path string, o *bolt.Options) (db *bolt.DB, err error) {
	var file *os.File
	o.OpenFile = func(name string, flag int, perm os.FileMode) (*os.File, error) {
		f, err := os.OpenFile(name, flag, perm)
		if err != nil {
			return nil, &openFileError{err}
		}
		file = f
		return f, nil
	}
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if v := recover(); v != nil {
			if file != nil {
				unlockFile(file)
				_ = file.Close()
			}
			db, err = nil, &panicError{v}
		}
	}()
	return bolt.Open(path, 0o600, o)
}

// classifyOpenErr maps an error of bolt.Open to ErrLocked, ErrCorrupt or
// ErrWrite.
func classifyOpenErr(path string, timeout time.Duration, fresh bool, err error) error {
	var ofe *openFileError
	var pe *panicError
	switch {
	case errors.Is(err, berrors.ErrTimeout):
		return fmt.Errorf("%w: another pcm agent is using %s (its lock was not released within %v); stop that agent or give this one another journal path",
			ErrLocked, path, timeout)
	case errors.As(err, &ofe):
		return fmt.Errorf("%w: cannot open journal %s for writing: %v; make it and its directory writable by the agent or choose another journal path",
			ErrWrite, path, ofe.err)
	case errors.As(err, &pe),
		errors.Is(err, berrors.ErrInvalid),
		errors.Is(err, berrors.ErrVersionMismatch),
		errors.Is(err, berrors.ErrChecksum):
		return corrupt(path, err)
	case !fresh && !isOSErr(err):
		// bbolt reports some damage with plain errors ("file size too small").
		return corrupt(path, err)
	}
	return fmt.Errorf("%w: cannot initialise journal %s: %v; free disk space or fix permissions", ErrWrite, path, err)
}

// corrupt wraps cause as ErrCorrupt with the fix an operator must apply.
func corrupt(path string, cause error) error {
	return fmt.Errorf("%w: %s is damaged or is not a pcm agent journal (%v); stop the agent, move the file aside (mv %s %s.corrupt) and start it again to create a new journal",
		ErrCorrupt, path, cause, path, path)
}

// isOSErr reports whether err comes from the operating system (an I/O,
// mapping or permission failure) rather than from the file's content.
func isOSErr(err error) bool {
	var errno syscall.Errno
	var pathErr *fs.PathError
	var sysErr *os.SyscallError
	return errors.As(err, &errno) || errors.As(err, &pathErr) || errors.As(err, &sysErr)
}

// verify checks the whole file and creates the buckets of a new journal. It
// is the only place that reads every page, so a damaged journal stops the
// agent here, at start, rather than mid-run. It runs with faults turned into
// panics, which it reports as ErrCorrupt.
func (j *Journal) verify() (err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if v := recover(); v != nil {
			err = corrupt(j.path, &panicError{v})
		}
	}()

	fi, err := os.Stat(j.path)
	if err != nil {
		return fmt.Errorf("%w: cannot stat journal %s: %v", ErrWrite, j.path, err)
	}
	empty := false
	err = j.db.View(func(tx *bolt.Tx) error {
		// A page beyond the end of the file means the file was truncated.
		if tx.Size() > fi.Size() {
			return corrupt(j.path, fmt.Errorf("the file is %d bytes but its pages reach byte %d: it was truncated", fi.Size(), tx.Size()))
		}
		meta := tx.Bucket(bucketMeta)
		if meta == nil {
			if k, _ := tx.Cursor().First(); k != nil {
				return corrupt(j.path, fmt.Errorf("a bbolt file without the journal's %q bucket (it has %q)", bucketMeta, k))
			}
			empty = true // a new file, or one whose initialisation never committed
			return nil
		}
		if f := meta.Get(keyFormat); string(f) != string(formatV1) {
			return corrupt(j.path, fmt.Errorf("format %q, this agent reads %q", f, formatV1))
		}
		recs, out := tx.Bucket(bucketRecords), tx.Bucket(bucketOutbox)
		if recs == nil || out == nil {
			return corrupt(j.path, errors.New("the records or outbox bucket is missing"))
		}
		if err := recs.ForEach(func(k, v []byte) error {
			if v == nil {
				return fmt.Errorf("unexpected bucket %q among the records", k)
			}
			_, err := decodeRecord(k, v)
			return err
		}); err != nil {
			return corrupt(j.path, err)
		}
		if err := out.ForEach(func(k, v []byte) error {
			if v == nil {
				return fmt.Errorf("unexpected bucket %q in the outbox", k)
			}
			o, err := decodeOutgoing(k, v)
			if err == nil && o.Seq > out.Sequence() {
				err = fmt.Errorf("outbox entry %d is beyond the outbox sequence %d", o.Seq, out.Sequence())
			}
			return err
		}); err != nil {
			return corrupt(j.path, err)
		}
		// Every page our buckets use was read above without fault, so bbolt's
		// own check (free list, page references, key order) cannot fault now.
		var problems []error
		for e := range tx.Check() {
			problems = append(problems, e)
		}
		if len(problems) > 0 {
			return corrupt(j.path, fmt.Errorf("consistency check: %w", errors.Join(problems...)))
		}
		return nil
	})
	if err != nil {
		if errors.Is(err, ErrCorrupt) {
			return err
		}
		return corrupt(j.path, err)
	}
	if !empty {
		return nil
	}
	if err := j.db.Update(func(tx *bolt.Tx) error {
		meta, err := tx.CreateBucket(bucketMeta)
		if err != nil {
			return err
		}
		if err := meta.Put(keyFormat, formatV1); err != nil {
			return err
		}
		if _, err := tx.CreateBucket(bucketRecords); err != nil {
			return err
		}
		_, err = tx.CreateBucket(bucketOutbox)
		return err
	}); err != nil {
		return fmt.Errorf("%w: cannot initialise journal %s: %v; free disk space or fix permissions", ErrWrite, j.path, err)
	}
	return nil
}

// syncDir fsyncs dir so a newly created journal file survives a crash.
// Windows cannot open a directory for syncing; its file system journals
// directory entries itself.
func syncDir(dir string) error {
	if runtime.GOOS == "windows" {
		return nil
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
