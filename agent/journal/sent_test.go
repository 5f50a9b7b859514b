package journal_test

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/pcm-project/pcm/agent/journal"
)

// crashCopy copies the journal file as it is on disk now and opens the
// copy: what an agent killed at this instant would find at its restart.
func crashCopy(t *testing.T, path string) *journal.Journal {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	cp := filepath.Join(t.TempDir(), "crashed.db")
	if err := os.WriteFile(cp, data, 0o600); err != nil {
		t.Fatal(err)
	}
	j, err := journal.Open(cp, journal.Options{})
	if err != nil {
		t.Fatalf("opening the crash copy: %v", err)
	}
	t.Cleanup(func() { _ = j.Close() })
	return j
}

// A MarkSent is seen at once by every read, written within MarkDelay, and
// a crash before that only puts the entry back in the outbox (to be
// published again with the same message id).
func TestMarkSentOffTheSyncPath(t *testing.T) {
	j, path := openJournal(t, journal.Options{MarkDelay: time.Hour})
	rec := journal.Record{JobID: "job-1", Phase: journal.PhaseFinished, Attempt: 1, FinalState: "succeeded", AckSubject: "$JS.ACK.x"}
	stored := mustPut(t, j, rec, status("job-1", "succeeded", true))
	if err := j.MarkSent(stored[0].Seq, 42); err != nil {
		t.Fatal(err)
	}
	// Every read sees it.
	if p, err := j.Pending(""); err != nil || len(p) != 0 {
		t.Fatalf("Pending after MarkSent = %v, %v; want empty", p, err)
	}
	if got := mustGet(t, j, "job-1"); got.Phase != journal.PhaseDone || got.StatusSeq != 42 || got.AckSubject != "$JS.ACK.x" {
		t.Fatalf("Get after MarkSent = %+v, want done with status seq 42", got)
	}
	var walked []journal.Record
	if err := j.Records(func(r journal.Record) error { walked = append(walked, r); return nil }); err != nil || len(walked) != 1 || walked[0].Phase != journal.PhaseDone {
		t.Fatalf("Records after MarkSent = %+v, %v", walked, err)
	}
	if s, err := j.Stats(); err != nil || s.Outbox != 0 || s.Done != 1 || s.Finished != 0 {
		t.Fatalf("Stats after MarkSent = %+v, %v", s, err)
	}
	// A done job cannot go back, in memory as on disk.
	if _, err := j.Put(journal.Record{JobID: "job-1", Phase: journal.PhaseStarted, Attempt: 2}); !errors.Is(err, journal.ErrAlreadyDone) {
		t.Fatalf("Put of a job marked done back to started = %v, want ErrAlreadyDone", err)
	}

	// Crash now: the status is published again (same message id), the record is finished.
	crashed := crashCopy(t, path)
	if p, err := crashed.Pending(""); err != nil || len(p) != 1 || p[0].MsgID != stored[0].MsgID {
		t.Fatalf("after a crash before the mark was written, Pending = %+v, %v; want the status again", p, err)
	}
	if got := mustGet(t, crashed, "job-1"); got.Phase != journal.PhaseFinished {
		t.Fatalf("after a crash before the mark was written, record = %+v, want finished", got)
	}

	// The next write carries the mark: a crash after it finds it done.
	mustPut(t, j, journal.Record{JobID: "job-2", Phase: journal.PhaseStarted, Attempt: 1})
	crashed = crashCopy(t, path)
	if p, err := crashed.Pending(""); err != nil || len(p) != 0 {
		t.Fatalf("after the next write, Pending on disk = %+v, %v; want empty", p, err)
	}
	if got := mustGet(t, crashed, "job-1"); got.Phase != journal.PhaseDone || got.StatusSeq != 42 {
		t.Fatalf("after the next write, record on disk = %+v, want done", got)
	}
}

// With no other write, a mark gets a transaction of its own after
// MarkDelay; Close writes what is left.
func TestMarkSentWrittenAfterDelayAndAtClose(t *testing.T) {
	j, path := openJournal(t, journal.Options{MarkDelay: 20 * time.Millisecond})
	stored := mustPut(t, j, journal.Record{JobID: "a", Phase: journal.PhaseFinished, Attempt: 1}, status("a", "failed", true))
	if err := j.MarkSent(stored[0].Seq, 7); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		crashed := crashCopy(t, path)
		rec, _, err := crashed.Get("a")
		if err == nil && rec.Phase == journal.PhaseDone && rec.StatusSeq == 7 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("mark not written after 5 s: record on disk %+v, %v", rec, err)
		}
		time.Sleep(20 * time.Millisecond)
	}

	j2, path2 := openJournal(t, journal.Options{MarkDelay: time.Hour})
	stored = mustPut(t, j2, journal.Record{JobID: "b", Phase: journal.PhaseFinished, Attempt: 1}, status("b", "failed", true))
	if err := j2.MarkSent(stored[0].Seq, 8); err != nil {
		t.Fatal(err)
	}
	j2 = reopen(t, j2, path2)
	if got := mustGet(t, j2, "b"); got.Phase != journal.PhaseDone || got.StatusSeq != 8 {
		t.Fatalf("after Close and reopen, record = %+v, want done", got)
	}
}
