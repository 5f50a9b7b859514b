package journal_test

import (
	"errors"
	"fmt"
	"path/filepath"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/pcm-project/pcm/agent/journal"
)

// openJournal opens a journal in a fresh temp dir and closes it at cleanup.
func openJournal(t *testing.T, opts journal.Options) (*journal.Journal, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "agent", "journal.db")
	j, err := journal.Open(path, opts)
	if err != nil {
		t.Fatalf("Open(%s): %v", path, err)
	}
	t.Cleanup(func() { _ = j.Close() })
	return j, path
}

// reopen closes j and opens path again.
func reopen(t *testing.T, j *journal.Journal, path string) *journal.Journal {
	t.Helper()
	if err := j.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	j2, err := journal.Open(path, journal.Options{})
	if err != nil {
		t.Fatalf("reopen %s: %v", path, err)
	}
	t.Cleanup(func() { _ = j2.Close() })
	return j2
}

func mustGet(t *testing.T, j *journal.Journal, jobID string) journal.Record {
	t.Helper()
	rec, ok, err := j.Get(jobID)
	if err != nil {
		t.Fatalf("Get(%s): %v", jobID, err)
	}
	if !ok {
		t.Fatalf("Get(%s): no record", jobID)
	}
	return rec
}

func mustPut(t *testing.T, j *journal.Journal, rec journal.Record, out ...journal.Outgoing) []journal.Outgoing {
	t.Helper()
	stored, err := j.Put(rec, out...)
	if err != nil {
		t.Fatalf("Put(%s): %v", rec.JobID, err)
	}
	return stored
}

func status(jobID, state string, final bool) journal.Outgoing {
	return journal.Outgoing{
		Subject: "pcm.status.c1." + jobID,
		MsgID:   jobID + ".c1." + state + ".1",
		Header:  map[string]string{"Content-Type": "application/cloudevents+json"},
		Data:    []byte(`{"state":"` + state + `"}`),
		Final:   final,
	}
}

func seqs(out []journal.Outgoing) []uint64 {
	s := make([]uint64, len(out))
	for i, o := range out {
		s[i] = o.Seq
	}
	return s
}

func TestPutGetRoundTripAndPersistence(t *testing.T) {
	j, path := openJournal(t, journal.Options{})
	if _, ok, err := j.Get("nope"); err != nil || ok {
		t.Fatalf("Get of an unknown job = %v, %v; want not found, nil", ok, err)
	}
	want := journal.Record{
		JobID: "job-1", Phase: journal.PhaseFinished, Attempt: 2, PID: 4242, ExitCode: 3,
		FinalState: "failed", AckSubject: "$JS.ACK.PCM_JOBS.agent-c1.1.7.7.1.0", Cancelled: true,
		CancelReason: "operator", StatusSeq: 9,
		UpdatedAt: time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC), // ignored: the journal stamps it
	}
	before := time.Now()
	mustPut(t, j, want)
	got := mustGet(t, j, "job-1")
	if got.UpdatedAt.Before(before) || got.UpdatedAt.After(time.Now()) {
		t.Errorf("UpdatedAt = %v, want the time of Put", got.UpdatedAt)
	}
	want.UpdatedAt = got.UpdatedAt
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("Get = %+v\nwant %+v", got, want)
	}

	j = reopen(t, j, path)
	if got := mustGet(t, j, "job-1"); !reflect.DeepEqual(got, want) {
		t.Fatalf("after reopen Get = %+v\nwant %+v", got, want)
	}
}

func TestPutWithOutgoingIsOneTransaction(t *testing.T) {
	j, path := openJournal(t, journal.Options{})
	rec := journal.Record{JobID: "job-1", Phase: journal.PhaseFinished, Attempt: 1, FinalState: "succeeded"}
	stored := mustPut(t, j, rec, status("job-1", "started", false), status("job-1", "succeeded", true))
	if !reflect.DeepEqual(seqs(stored), []uint64{1, 2}) {
		t.Fatalf("Put assigned seqs %v, want [1 2]", seqs(stored))
	}
	if stored[0].JobID != "job-1" || stored[1].JobID != "job-1" {
		t.Fatalf("Put did not fill JobID: %+v", stored)
	}

	j = reopen(t, j, path)
	if got := mustGet(t, j, "job-1"); got.Phase != journal.PhaseFinished || got.FinalState != "succeeded" {
		t.Fatalf("record after reopen = %+v", got)
	}
	pending, err := j.Pending("")
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(pending, stored) {
		t.Fatalf("Pending after reopen = %+v\nwant %+v", pending, stored)
	}
}

func TestOutboxOrderAndSeqNeverReused(t *testing.T) {
	j, path := openJournal(t, journal.Options{})
	for i, job := range []string{"b", "a", "c", "a"} {
		mustPut(t, j, journal.Record{JobID: job, Phase: journal.PhaseReceived},
			status(job, fmt.Sprint("s", i), false))
	}
	j = reopen(t, j, path)
	all, err := j.Pending("")
	if err != nil {
		t.Fatal(err)
	}
	if got := seqs(all); !reflect.DeepEqual(got, []uint64{1, 2, 3, 4}) {
		t.Fatalf("Pending seqs = %v, want [1 2 3 4]", got)
	}
	for i, job := range []string{"b", "a", "c", "a"} {
		if all[i].JobID != job || all[i].MsgID != fmt.Sprintf("%s.c1.s%d.1", job, i) {
			t.Fatalf("Pending[%d] = %+v, want job %s message s%d", i, all[i], job, i)
		}
	}
	onlyA, err := j.Pending("a")
	if err != nil {
		t.Fatal(err)
	}
	if got := seqs(onlyA); !reflect.DeepEqual(got, []uint64{2, 4}) {
		t.Fatalf("Pending(a) seqs = %v, want [2 4]", got)
	}

	for _, o := range all {
		if err := j.MarkSent(o.Seq, 100+o.Seq); err != nil {
			t.Fatalf("MarkSent(%d): %v", o.Seq, err)
		}
	}
	j = reopen(t, j, path)
	if rest, err := j.Pending(""); err != nil || len(rest) != 0 {
		t.Fatalf("Pending after sending all = %v, %v; want empty", rest, err)
	}
	stored := mustPut(t, j, journal.Record{JobID: "d", Phase: journal.PhaseReceived}, status("d", "x", false))
	if stored[0].Seq != 5 {
		t.Fatalf("seq after MarkSent of 1..4 and reopen = %d, want 5 (never reused)", stored[0].Seq)
	}
}

func TestMarkSent(t *testing.T) {
	j, path := openJournal(t, journal.Options{})
	rec := journal.Record{JobID: "job-1", Phase: journal.PhaseFinished, Attempt: 1, FinalState: "succeeded",
		AckSubject: "$JS.ACK.x"}
	stored := mustPut(t, j, rec, status("job-1", "started", false), status("job-1", "succeeded", true))

	// A non-final message leaves the record alone.
	if err := j.MarkSent(stored[0].Seq, 41); err != nil {
		t.Fatal(err)
	}
	if got := mustGet(t, j, "job-1"); got.Phase != journal.PhaseFinished || got.StatusSeq != 0 {
		t.Fatalf("after non-final MarkSent record = %+v, want unchanged", got)
	}

	// The final one moves it to PhaseDone with the stream sequence.
	if err := j.MarkSent(stored[1].Seq, 42); err != nil {
		t.Fatal(err)
	}
	done := mustGet(t, j, "job-1")
	if done.Phase != journal.PhaseDone || done.StatusSeq != 42 || done.FinalState != "succeeded" ||
		done.AckSubject != "$JS.ACK.x" || done.Attempt != 1 {
		t.Fatalf("after final MarkSent record = %+v, want done with status seq 42 and the rest kept", done)
	}

	// Idempotent, also across a reopen.
	j = reopen(t, j, path)
	for _, seq := range seqs(stored) {
		if err := j.MarkSent(seq, 99); err != nil {
			t.Fatalf("second MarkSent(%d) = %v, want nil", seq, err)
		}
	}
	if got := mustGet(t, j, "job-1"); !reflect.DeepEqual(got, done) {
		t.Fatalf("second MarkSent changed the record: %+v, want %+v", got, done)
	}
	if pending, _ := j.Pending(""); len(pending) != 0 {
		t.Fatalf("outbox not empty: %+v", pending)
	}

	// A sequence never assigned.
	for _, seq := range []uint64{0, 3, 1 << 40} {
		if err := j.MarkSent(seq, 1); !errors.Is(err, journal.ErrNotFound) {
			t.Errorf("MarkSent(%d) = %v, want ErrNotFound", seq, err)
		}
	}

	// A done job cannot go back; it can be updated while staying done.
	if _, err := j.Put(journal.Record{JobID: "job-1", Phase: journal.PhaseReceived}); !errors.Is(err, journal.ErrAlreadyDone) {
		t.Fatalf("Put of a done job back to received = %v, want ErrAlreadyDone", err)
	}
	if got := mustGet(t, j, "job-1"); got.Phase != journal.PhaseDone {
		t.Fatalf("refused Put changed the record: %+v", got)
	}
	done.AckSubject = "$JS.ACK.redelivery"
	mustPut(t, j, done)
	if got := mustGet(t, j, "job-1"); got.AckSubject != "$JS.ACK.redelivery" || got.Phase != journal.PhaseDone {
		t.Fatalf("Put of a done record = %+v", got)
	}
}

func TestMarkSentFinalWithoutRecord(t *testing.T) {
	j, _ := openJournal(t, journal.Options{})
	stored := mustPut(t, j, journal.Record{JobID: "a", Phase: journal.PhaseFinished, Attempt: 1},
		journal.Outgoing{JobID: "a", Subject: "s", MsgID: "m", Final: true})
	// Simulate the record being pruned while its final status waited.
	if n, err := j.PruneDone(time.Now().Add(time.Hour)); err != nil || n != 0 {
		t.Fatalf("PruneDone = %d, %v; want 0 (the job is not done)", n, err)
	}
	if err := j.MarkSent(stored[0].Seq, 7); err != nil {
		t.Fatal(err)
	}
	if got := mustGet(t, j, "a"); got.Phase != journal.PhaseDone || got.StatusSeq != 7 {
		t.Fatalf("record = %+v", got)
	}
}

func TestPutRejectsInvalidInput(t *testing.T) {
	j, _ := openJournal(t, journal.Options{})
	ok := journal.Outgoing{Subject: "pcm.status.c1.j", MsgID: "m"}
	tests := []struct {
		name string
		rec  journal.Record
		out  []journal.Outgoing
		want error
	}{
		{"empty job id", journal.Record{Phase: journal.PhaseReceived}, nil, journal.ErrInvalid},
		{"job id too long", journal.Record{JobID: string(make([]byte, journal.MaxJobIDLen+1)), Phase: journal.PhaseReceived}, nil, journal.ErrInvalid},
		{"unknown phase", journal.Record{JobID: "j", Phase: "running"}, nil, journal.ErrInvalid},
		{"empty phase", journal.Record{JobID: "j"}, nil, journal.ErrInvalid},
		{"negative attempt", journal.Record{JobID: "j", Phase: journal.PhaseReceived, Attempt: -1}, nil, journal.ErrInvalid},
		{"started attempt 0", journal.Record{JobID: "j", Phase: journal.PhaseStarted}, nil, journal.ErrInvalid},
		{"finished attempt 0", journal.Record{JobID: "j", Phase: journal.PhaseFinished}, nil, journal.ErrInvalid},
		{"outgoing without subject", journal.Record{JobID: "j", Phase: journal.PhaseReceived},
			[]journal.Outgoing{ok, {MsgID: "m"}}, journal.ErrInvalid},
		{"outgoing without msg id", journal.Record{JobID: "j", Phase: journal.PhaseReceived},
			[]journal.Outgoing{{Subject: "s"}}, journal.ErrInvalid},
		{"outgoing of another job", journal.Record{JobID: "j", Phase: journal.PhaseReceived},
			[]journal.Outgoing{{JobID: "k", Subject: "s", MsgID: "m"}}, journal.ErrInvalid},
		{"valid", journal.Record{JobID: "j", Phase: journal.PhaseStarted, Attempt: 1}, []journal.Outgoing{ok}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := j.Put(tt.rec, tt.out...)
			if !errors.Is(err, tt.want) || (tt.want == nil) != (err == nil) {
				t.Fatalf("Put = %v, want %v", err, tt.want)
			}
		})
	}
	// Nothing of the refused calls was stored.
	s, err := j.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if s.Records != 1 || s.Outbox != 1 {
		t.Fatalf("Stats = %+v, want only the valid call stored", s)
	}
}

func TestRecordsWalk(t *testing.T) {
	j, _ := openJournal(t, journal.Options{})
	for _, id := range []string{"c", "a", "b"} {
		mustPut(t, j, journal.Record{JobID: id, Phase: journal.PhaseStarted, Attempt: 1})
	}
	var seen []string
	err := j.Records(func(r journal.Record) error {
		seen = append(seen, r.JobID)
		// fn may write: it runs outside any transaction.
		r.Phase = journal.PhaseFinished
		_, err := j.Put(r, journal.Outgoing{Subject: "s", MsgID: r.JobID})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(seen, []string{"a", "b", "c"}) {
		t.Fatalf("Records order = %v, want [a b c]", seen)
	}
	if got := mustGet(t, j, "b"); got.Phase != journal.PhaseFinished {
		t.Fatalf("Put from inside Records not stored: %+v", got)
	}

	stop := errors.New("stop")
	seen = nil
	err = j.Records(func(r journal.Record) error {
		seen = append(seen, r.JobID)
		return stop
	})
	if !errors.Is(err, stop) || len(seen) != 1 {
		t.Fatalf("Records with fn error = %v after %v, want stop after one record", err, seen)
	}
}

func TestPruneDoneAndStats(t *testing.T) {
	j, _ := openJournal(t, journal.Options{})
	mustPut(t, j, journal.Record{JobID: "r", Phase: journal.PhaseReceived})
	mustPut(t, j, journal.Record{JobID: "s", Phase: journal.PhaseStarted, Attempt: 1})
	mustPut(t, j, journal.Record{JobID: "f", Phase: journal.PhaseFinished, Attempt: 1}, status("f", "failed", true))
	mustPut(t, j, journal.Record{JobID: "d1", Phase: journal.PhaseDone, Attempt: 1})
	mustPut(t, j, journal.Record{JobID: "d2", Phase: journal.PhaseDone, Attempt: 1})

	s, err := j.Stats()
	if err != nil {
		t.Fatal(err)
	}
	want := journal.Stats{Records: 5, Received: 1, Started: 1, Finished: 1, Done: 2, Outbox: 1, Size: s.Size}
	if s != want || s.Size <= 0 {
		t.Fatalf("Stats = %+v, want %+v", s, want)
	}

	if n, err := j.PruneDone(time.Now().Add(-time.Hour)); err != nil || n != 0 {
		t.Fatalf("PruneDone(an hour ago) = %d, %v; want 0 (all records are newer)", n, err)
	}
	if n, err := j.PruneDone(time.Now().Add(time.Second)); err != nil || n != 2 {
		t.Fatalf("PruneDone(now) = %d, %v; want 2", n, err)
	}
	for _, id := range []string{"d1", "d2"} {
		if _, ok, _ := j.Get(id); ok {
			t.Errorf("done record %s survived PruneDone", id)
		}
	}
	s, _ = j.Stats()
	if s.Records != 3 || s.Done != 0 || s.Outbox != 1 {
		t.Fatalf("Stats after prune = %+v, want 3 records, none done, outbox kept", s)
	}
}

func TestClosedJournal(t *testing.T) {
	j, _ := openJournal(t, journal.Options{})
	mustPut(t, j, journal.Record{JobID: "a", Phase: journal.PhaseReceived}, status("a", "x", false))
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	if err := j.Close(); err != nil {
		t.Fatalf("second Close = %v, want nil", err)
	}
	calls := []struct {
		name string
		call func() error
	}{
		{"Put", func() error { _, err := j.Put(journal.Record{JobID: "b", Phase: journal.PhaseReceived}); return err }},
		{"Get", func() error { _, _, err := j.Get("a"); return err }},
		{"Pending", func() error { _, err := j.Pending(""); return err }},
		{"MarkSent", func() error { return j.MarkSent(1, 1) }},
		{"Records", func() error { return j.Records(func(journal.Record) error { return nil }) }},
		{"PruneDone", func() error { _, err := j.PruneDone(time.Now()); return err }},
		{"Stats", func() error { _, err := j.Stats(); return err }},
	}
	for _, c := range calls {
		t.Run(c.name, func(t *testing.T) {
			if err := c.call(); !errors.Is(err, journal.ErrClosed) {
				t.Fatalf("%s after Close = %v, want ErrClosed", c.name, err)
			}
		})
	}
}

func TestConcurrentPuts(t *testing.T) {
	j, path := openJournal(t, journal.Options{NoSync: true})
	const workers, each = 4, 25
	var wg sync.WaitGroup
	errs := make(chan error, workers*each)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				id := fmt.Sprintf("w%d-%d", w, i)
				if _, err := j.Put(journal.Record{JobID: id, Phase: journal.PhaseStarted, Attempt: 1},
					status(id, "started", false)); err != nil {
					errs <- err
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	j = reopen(t, j, path)
	all, err := j.Pending("")
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != workers*each {
		t.Fatalf("outbox has %d entries, want %d", len(all), workers*each)
	}
	for i, o := range all {
		if o.Seq != uint64(i+1) {
			t.Fatalf("outbox seqs not 1..%d in order: entry %d has seq %d", len(all), i, o.Seq)
		}
	}
}
