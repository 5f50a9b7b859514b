package journal

import (
	"os"
	"path/filepath"
	"testing"

	bolt "go.etcd.io/bbolt"
)

// previousRelease is a journal written by the previous release of pcm
// (main at 40c9c87, with the journal code this one has): a done job, a job
// started and never finished, a finished job whose status waits in the
// outbox. A new agent reads it as it is, without rewriting it.
const previousRelease = "testdata/journal-main-40c9c87.db"

func copyFixture(t *testing.T, src string) string {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(t.TempDir(), "journal.db")
	if err := os.WriteFile(dst, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return dst
}

func TestOpensTheJournalOfThePreviousRelease(t *testing.T) {
	j, err := Open(copyFixture(t, previousRelease), Options{})
	if err != nil {
		t.Fatalf("opening the previous release's journal: %v", err)
	}
	defer j.Close()
	for _, want := range []Record{
		{JobID: "done-job", Phase: PhaseDone, Attempt: 1, FinalState: "succeeded", AckSubject: "$JS.ACK.x"},
		{JobID: "started-job", Phase: PhaseStarted, Attempt: 1, PID: 4242, ForService: true},
		{JobID: "finished-job", Phase: PhaseFinished, Attempt: 2, ExitCode: 3, FinalState: "failed"},
	} {
		got, ok, err := j.Get(want.JobID)
		if err != nil || !ok {
			t.Fatalf("record %s: ok %v, %v", want.JobID, ok, err)
		}
		got.UpdatedAt = want.UpdatedAt
		if got != want {
			t.Errorf("record %s = %+v, want %+v", want.JobID, got, want)
		}
	}
	out, err := j.Pending("")
	if err != nil {
		t.Fatal(err)
	}
	if len(out) != 1 || out[0].MsgID != "finished-job.c1.failed.2" || string(out[0].Data) != `{"x":1}` {
		t.Fatalf("outbox %+v: want the finished job's status", out)
	}
}

// A newer release may add fields to a record: this one reads past them,
// as the previous one reads past the fields this one adds.
func TestReadsRecordsWithFieldsOfANewerRelease(t *testing.T) {
	path := copyFixture(t, previousRelease)
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketRecords).Put([]byte("next-job"),
			[]byte(`{"job_id":"next-job","phase":"done","attempt":1,"final_state":"succeeded","a_field_of_v2":{"x":[1,2]},"updated_at":"2026-11-30T00:00:00Z"}`))
	}); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	j, err := Open(path, Options{})
	if err != nil {
		t.Fatalf("opening a journal with a newer release's record: %v", err)
	}
	defer j.Close()
	rec, ok, err := j.Get("next-job")
	if err != nil || !ok || rec.Phase != PhaseDone || rec.FinalState != "succeeded" {
		t.Fatalf("record of a newer release: %+v ok %v err %v", rec, ok, err)
	}
}
