package journal_test

import (
	"bytes"
	"fmt"
	"path/filepath"
	"testing"

	"github.com/pcm-project/pcm/agent/journal"
)

// BenchmarkPut measures one Put of a record with one outgoing status of
// about 1 KiB, with fsync (production) and without: the difference is what
// durability costs per write; a job costs about three writes (started,
// finished with its status, MarkSent).
func BenchmarkPut(b *testing.B) {
	for _, bc := range []struct {
		name   string
		noSync bool
	}{{"fsync", false}, {"nosync", true}} {
		b.Run(bc.name, func(b *testing.B) {
			j, err := journal.Open(filepath.Join(b.TempDir(), "journal.db"), journal.Options{NoSync: bc.noSync})
			if err != nil {
				b.Fatal(err)
			}
			defer j.Close()
			data := bytes.Repeat([]byte("x"), 1024)
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				id := fmt.Sprintf("job-%08d", i)
				i++
				if _, err := j.Put(journal.Record{JobID: id, Phase: journal.PhaseFinished, Attempt: 1, FinalState: "succeeded"},
					journal.Outgoing{Subject: "pcm.status.c1." + id, MsgID: id + ".c1.succeeded.1", Data: data, Final: true}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkJobLifecycle measures the journal writes of one job from start to
// done: Put started, Put finished with its final status, MarkSent.
func BenchmarkJobLifecycle(b *testing.B) {
	for _, bc := range []struct {
		name   string
		noSync bool
	}{{"fsync", false}, {"nosync", true}} {
		b.Run(bc.name, func(b *testing.B) {
			j, err := journal.Open(filepath.Join(b.TempDir(), "journal.db"), journal.Options{NoSync: bc.noSync})
			if err != nil {
				b.Fatal(err)
			}
			defer j.Close()
			data := bytes.Repeat([]byte("x"), 1024)
			i := 0
			for b.Loop() {
				id := fmt.Sprintf("job-%08d", i)
				i++
				rec := journal.Record{JobID: id, Phase: journal.PhaseStarted, Attempt: 1}
				if _, err := j.Put(rec); err != nil {
					b.Fatal(err)
				}
				rec.Phase, rec.FinalState = journal.PhaseFinished, "succeeded"
				out, err := j.Put(rec, journal.Outgoing{Subject: "pcm.status.c1." + id, MsgID: id, Data: data, Final: true})
				if err != nil {
					b.Fatal(err)
				}
				if err := j.MarkSent(out[0].Seq, uint64(i)); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
