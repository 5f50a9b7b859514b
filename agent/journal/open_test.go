package journal_test

import (
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pcm-project/pcm/agent/journal"
	bolt "go.etcd.io/bbolt"
)

func TestOpenCreatesPrivateFileAndDirs(t *testing.T) {
	path := filepath.Join(t.TempDir(), "a", "b", "journal.db")
	j, err := journal.Open(path, journal.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	if j.Path() != path {
		t.Errorf("Path() = %q, want %q", j.Path(), path)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		t.Errorf("journal file mode %v, want no group/other access (0600)", perm)
	}
	di, err := os.Stat(filepath.Dir(path))
	if err != nil {
		t.Fatal(err)
	}
	if perm := di.Mode().Perm(); perm&0o077 != 0 {
		t.Errorf("journal dir mode %v, want no group/other access (0700)", perm)
	}
}

func TestOpenLocked(t *testing.T) {
	j, path := openJournal(t, journal.Options{})
	tests := []struct {
		name     string
		timeout  time.Duration
		min, max time.Duration
	}{
		{"try once", -1, 0, 500 * time.Millisecond},
		{"explicit timeout", 300 * time.Millisecond, 200 * time.Millisecond, 2 * time.Second},
		{"default timeout", 0, journal.DefaultTimeout - 100*time.Millisecond, journal.DefaultTimeout + 2*time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			start := time.Now()
			j2, err := journal.Open(path, journal.Options{Timeout: tt.timeout})
			took := time.Since(start)
			if err == nil {
				j2.Close()
				t.Fatal("second Open of a locked journal succeeded")
			}
			if !errors.Is(err, journal.ErrLocked) {
				t.Fatalf("second Open = %v, want ErrLocked", err)
			}
			if !strings.Contains(err.Error(), "another pcm agent is using "+path) {
				t.Errorf("error %q does not say another agent is using %s", err, path)
			}
			if took < tt.min || took > tt.max {
				t.Errorf("Open gave up after %v, want between %v and %v", took, tt.min, tt.max)
			}
		})
	}
	// The holder is unaffected, and the lock goes with Close.
	mustPut(t, j, journal.Record{JobID: "a", Phase: journal.PhaseReceived})
	j2 := reopen(t, j, path)
	mustGet(t, j2, "a")
}

// writeJournal creates a closed journal holding n records with outbox
// entries, big enough for the records bucket to have pages of its own.
func writeJournal(t *testing.T, path string, n int) {
	t.Helper()
	j, err := journal.Open(path, journal.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	pad := bytes.Repeat([]byte("x"), 300)
	for i := range n {
		id := fmt.Sprintf("job-%04d", i)
		if _, err := j.Put(journal.Record{JobID: id, Phase: journal.PhaseFinished, Attempt: 1, CancelReason: string(pad)},
			journal.Outgoing{Subject: "pcm.status.c1." + id, MsgID: id, Data: pad, Final: true}); err != nil {
			t.Fatal(err)
		}
	}
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
}

// boltUpdate edits a closed file with bbolt directly, behind the journal's back.
func boltUpdate(t *testing.T, path string, fn func(tx *bolt.Tx) error) {
	t.Helper()
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.Update(fn); err != nil {
		t.Fatal(err)
	}
}

// boltView reads a closed file with bbolt directly.
func boltView(t *testing.T, path string, fn func(tx *bolt.Tx) error) {
	t.Helper()
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second, ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.View(fn); err != nil {
		t.Fatal(err)
	}
}

func randomBytes(t *testing.T, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

func TestOpenCorrupt(t *testing.T) {
	tests := []struct {
		name string
		make func(t *testing.T, path string)
	}{
		{"random bytes, 100", func(t *testing.T, path string) {
			os.WriteFile(path, randomBytes(t, 100), 0o600)
		}},
		{"random bytes, 64KiB", func(t *testing.T, path string) {
			os.WriteFile(path, randomBytes(t, 64<<10), 0o600)
		}},
		{"truncated to half its pages", func(t *testing.T, path string) {
			writeJournal(t, path, 400)
			var size int64
			boltView(t, path, func(tx *bolt.Tx) error { size = tx.Size(); return nil })
			if err := os.Truncate(path, size/2); err != nil {
				t.Fatal(err)
			}
		}},
		{"truncated to its last page", func(t *testing.T, path string) {
			writeJournal(t, path, 400)
			var size int64
			boltView(t, path, func(tx *bolt.Tx) error { size = tx.Size(); return nil })
			if err := os.Truncate(path, size-4096); err != nil {
				t.Fatal(err)
			}
		}},
		{"records page overwritten", func(t *testing.T, path string) {
			writeJournal(t, path, 400)
			var page uint64
			var pageSize int
			boltView(t, path, func(tx *bolt.Tx) error {
				page = uint64(tx.Bucket([]byte("records")).RootPage())
				pageSize = tx.DB().Info().PageSize
				return nil
			})
			if page == 0 {
				t.Fatal("records bucket is inline; write more records")
			}
			f, err := os.OpenFile(path, os.O_WRONLY, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if _, err := f.WriteAt(randomBytes(t, pageSize), int64(page)*int64(pageSize)); err != nil {
				t.Fatal(err)
			}
		}},
		{"record that does not decode", func(t *testing.T, path string) {
			writeJournal(t, path, 1)
			boltUpdate(t, path, func(tx *bolt.Tx) error {
				return tx.Bucket([]byte("records")).Put([]byte("job-x"), []byte("{not json"))
			})
		}},
		{"record under another job's key", func(t *testing.T, path string) {
			writeJournal(t, path, 1)
			boltUpdate(t, path, func(tx *bolt.Tx) error {
				return tx.Bucket([]byte("records")).Put([]byte("job-x"), []byte(`{"job_id":"job-y","phase":"done"}`))
			})
		}},
		{"outbox entry that does not decode", func(t *testing.T, path string) {
			writeJournal(t, path, 1)
			boltUpdate(t, path, func(tx *bolt.Tx) error {
				return tx.Bucket([]byte("outbox")).Put([]byte{0, 0, 0, 0, 0, 0, 0, 1}, []byte("garbage"))
			})
		}},
		{"bbolt file of something else", func(t *testing.T, path string) {
			boltUpdate(t, path, func(tx *bolt.Tx) error {
				_, err := tx.CreateBucket([]byte("other"))
				return err
			})
		}},
		{"unknown journal format", func(t *testing.T, path string) {
			writeJournal(t, path, 1)
			boltUpdate(t, path, func(tx *bolt.Tx) error {
				return tx.Bucket([]byte("meta")).Put([]byte("format"), []byte("pcm-agent-journal/9"))
			})
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "journal.db")
			tt.make(t, path)
			before, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			// Twice: a failed Open must release the file lock.
			for range 2 {
				j, err := journal.Open(path, journal.Options{Timeout: -1})
				if err == nil {
					j.Close()
					t.Fatal("Open of a damaged journal succeeded")
				}
				if !errors.Is(err, journal.ErrCorrupt) {
					t.Fatalf("Open = %v, want ErrCorrupt", err)
				}
				t.Log(err)
				if msg := err.Error(); !strings.Contains(msg, path) || !strings.Contains(msg, "move the file aside") {
					t.Fatalf("error %q does not name %s and say to move it aside", msg, path)
				}
			}
			after, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(before, after) {
				t.Fatal("Open modified the damaged file")
			}
		})
	}
}

func TestOpenTruncatedPastDataIsFine(t *testing.T) {
	path := filepath.Join(t.TempDir(), "journal.db")
	writeJournal(t, path, 50)
	var size int64
	boltView(t, path, func(tx *bolt.Tx) error { size = tx.Size(); return nil })
	if err := os.Truncate(path, size); err != nil { // drop only the preallocated tail
		t.Fatal(err)
	}
	j, err := journal.Open(path, journal.Options{})
	if err != nil {
		t.Fatalf("Open after trimming unused space = %v", err)
	}
	defer j.Close()
	if s, err := j.Stats(); err != nil || s.Records != 50 || s.Outbox != 50 {
		t.Fatalf("Stats = %+v, %v", s, err)
	}
}

func TestOpenWriteErrors(t *testing.T) {
	base := t.TempDir()
	file := filepath.Join(base, "a-file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		path string
		want error
	}{
		{"empty path", "", journal.ErrInvalid},
		{"parent is a file", filepath.Join(file, "journal.db"), journal.ErrWrite},
		{"ancestor is a file", filepath.Join(file, "sub", "journal.db"), journal.ErrWrite},
		{"path is a directory", base, journal.ErrWrite},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			j, err := journal.Open(tt.path, journal.Options{})
			if err == nil {
				j.Close()
			}
			if !errors.Is(err, tt.want) {
				t.Fatalf("Open(%q) = %v, want %v", tt.path, err, tt.want)
			}
		})
	}
}

func TestOpenReadOnlyDirectory(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "ro")
	if err := os.Mkdir(dir, 0o500); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Chmod(dir, 0o700) })
	if f, err := os.Create(filepath.Join(dir, "probe")); err == nil {
		f.Close()
		t.Skip("directory permissions are not enforced for this user (root?)")
	}
	for _, path := range []string{filepath.Join(dir, "journal.db"), filepath.Join(dir, "sub", "journal.db")} {
		j, err := journal.Open(path, journal.Options{})
		if err == nil {
			j.Close()
		}
		if !errors.Is(err, journal.ErrWrite) {
			t.Fatalf("Open(%s) = %v, want ErrWrite", path, err)
		}
	}
}
