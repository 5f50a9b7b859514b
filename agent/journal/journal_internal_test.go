package journal

import (
	"bytes"
	"errors"
	"path/filepath"
	"strings"
	"testing"
)

// TestPutDiskFull fills the file up to a size cap, which fails a commit the
// way a full disk does, and checks that Put reports ErrWrite, stores nothing
// of the failed call and leaves the journal usable.
func TestPutDiskFull(t *testing.T) {
	path := filepath.Join(t.TempDir(), "journal.db")
	j, err := Open(path, Options{maxSize: 256 << 10})
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()

	big := Outgoing{Subject: "pcm.status.c1.big", MsgID: "big", Data: bytes.Repeat([]byte("x"), 1<<20), Final: true}
	_, err = j.Put(Record{JobID: "big", Phase: PhaseFinished, Attempt: 1}, big)
	if !errors.Is(err, ErrWrite) {
		t.Fatalf("Put beyond the size cap = %v, want ErrWrite", err)
	}
	if !strings.Contains(err.Error(), path) {
		t.Errorf("error %q does not name %s", err, path)
	}
	if _, ok, err := j.Get("big"); ok || err != nil {
		t.Fatalf("record of the failed Put: found=%v err=%v; want nothing stored", ok, err)
	}
	if p, err := j.Pending(""); len(p) != 0 || err != nil {
		t.Fatalf("outbox after the failed Put = %v, %v; want empty", p, err)
	}

	small := Outgoing{Subject: "pcm.status.c1.small", MsgID: "small"}
	out, err := j.Put(Record{JobID: "small", Phase: PhaseFinished, Attempt: 1}, small)
	if err != nil {
		t.Fatalf("Put after a failed one: %v", err)
	}
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}

	j, err = Open(path, Options{})
	if err != nil {
		t.Fatalf("reopen after a failed Put: %v", err)
	}
	defer j.Close()
	p, err := j.Pending("")
	if err != nil || len(p) != 1 || p[0].MsgID != "small" || p[0].Seq != out[0].Seq {
		t.Fatalf("outbox after reopen = %+v, %v; want only the small message", p, err)
	}
	if _, ok, _ := j.Get("big"); ok {
		t.Fatal("the failed record appeared after reopen")
	}
}
