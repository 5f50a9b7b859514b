package journal

import (
	"encoding/json"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

// DefaultMarkDelay is how long a MarkSent waits in memory for another
// write to carry it to the file, when Options.MarkDelay is zero.
const DefaultMarkDelay = 200 * time.Millisecond

// A MarkSent is not a transaction of its own: an fsync per published
// status would be a third of the journal's cost per job, for a record whose
// loss costs little. MarkSent notes the entry as sent in memory, where every
// read (Pending, Get, Records, Stats) sees it at once, and the next write
// transaction (Put, PruneDone) carries it to the file, or a transaction of
// its own after Options.MarkDelay, or Close. A crash in between loses only
// the note: the entry is in the outbox again after the restart and is
// published once more with the same Nats-Msg-Id (which the broker stores
// once), and the offer's ack is sent again (a no-op for an acked offer).
// Whatever the journal writes after a MarkSent includes it, so the file
// never holds a later state of a job without the marks that came before.

// sentMark is an outbox entry reported sent and not yet committed.
type sentMark struct {
	job       string
	streamSeq uint64
	final     bool
	at        time.Time // when MarkSent was called: the record's UpdatedAt
}

// MarkSent reports outbox entry seq published, with streamSeq the
// PCM_STATUS sequence from the PubAck: the entry leaves the outbox, and if
// it was Final the job's record goes to PhaseDone with StatusSeq =
// streamSeq (a minimal record is created if there is none). Reads see it at
// once; the file gets it with the next write, or within
// Options.MarkDelay (see above). Calling it again for the same seq is a
// no-op; a seq the journal never assigned is ErrNotFound.
func (j *Journal) MarkSent(seq uint64, streamSeq uint64) error {
	release, err := j.acquire(fmt.Sprintf("mark outbox entry %d sent", seq))
	if err != nil {
		return err
	}
	defer release()
	j.marksMu.Lock()
	_, marked := j.marks[seq]
	j.marksMu.Unlock()
	if marked {
		return nil
	}
	var o Outgoing
	found := false
	err = j.db.View(func(tx *bolt.Tx) error {
		ob := tx.Bucket(bucketOutbox)
		key := seqKey(seq)
		v := ob.Get(key)
		if v == nil {
			if seq == 0 || seq > ob.Sequence() {
				return fmt.Errorf("%w: outbox entry %d was never assigned (the last is %d); pass the Seq that Put or Pending returned",
					ErrNotFound, seq, ob.Sequence())
			}
			return nil // already sent
		}
		var err error
		if o, err = decodeOutgoing(key, v); err != nil {
			return corrupt(j.path, err)
		}
		found = true
		return nil
	})
	if err != nil || !found {
		return err
	}
	if j.markDelay < 0 {
		return j.commit(fmt.Sprintf("marking outbox entry %d sent", seq), func(tx *bolt.Tx) error {
			return j.applyMark(tx, seq, sentMark{job: o.JobID, streamSeq: streamSeq, final: o.Final, at: time.Now().UTC()})
		})
	}
	j.marksMu.Lock()
	defer j.marksMu.Unlock()
	if _, marked := j.marks[seq]; marked {
		return nil
	}
	j.marks[seq] = sentMark{job: o.JobID, streamSeq: streamSeq, final: o.Final, at: time.Now().UTC()}
	if j.markTimer == nil {
		j.markTimer = time.AfterFunc(j.markDelay, j.commitMarksLater)
	}
	return nil
}

// commit runs fn in one write transaction that also carries the marks
// noted so far; on success they are forgotten from memory. A failure is
// wrapped by writeErr with what.
func (j *Journal) commit(what string, fn func(tx *bolt.Tx) error) error {
	snap := j.snapshotMarks()
	err := j.db.Update(func(tx *bolt.Tx) error {
		for seq, m := range snap {
			if err := j.applyMark(tx, seq, m); err != nil {
				return err
			}
		}
		return fn(tx)
	})
	if err != nil {
		return j.writeErr(what, err)
	}
	j.forgetMarks(snap)
	return nil
}

// commitMarksLater writes the marks noted since the last write (the
// MarkDelay timer); a failure leaves them in memory for the next write or
// a later try.
func (j *Journal) commitMarksLater() {
	release, err := j.acquire("write sent marks")
	if err != nil {
		return // closed: Close wrote them
	}
	defer release()
	err = j.commit("writing sent marks", func(*bolt.Tx) error { return nil })
	j.marksMu.Lock()
	defer j.marksMu.Unlock()
	j.markTimer = nil
	if err != nil || len(j.marks) > 0 {
		j.markTimer = time.AfterFunc(j.markDelay, j.commitMarksLater)
	}
}

// snapshotMarks copies the marks not yet committed. Readers take it before
// their read transaction: a mark leaves memory only once committed, so
// between the two nothing sent can look unsent.
func (j *Journal) snapshotMarks() map[uint64]sentMark {
	j.marksMu.Lock()
	defer j.marksMu.Unlock()
	if len(j.marks) == 0 {
		return nil
	}
	snap := make(map[uint64]sentMark, len(j.marks))
	for seq, m := range j.marks {
		snap[seq] = m
	}
	return snap
}

// forgetMarks drops committed marks from memory.
func (j *Journal) forgetMarks(snap map[uint64]sentMark) {
	if len(snap) == 0 {
		return
	}
	j.marksMu.Lock()
	defer j.marksMu.Unlock()
	for seq := range snap {
		delete(j.marks, seq)
	}
}

// doneOverlay is the mark of each job whose final status is marked sent
// in snap.
func doneOverlay(snap map[uint64]sentMark) map[string]sentMark {
	var done map[string]sentMark
	for _, m := range snap {
		if m.final {
			if done == nil {
				done = map[string]sentMark{}
			}
			done[m.job] = m
		}
	}
	return done
}

// overlay applies a final status marked sent (and not committed) to rec,
// as its commit will.
func overlay(rec Record, done map[string]sentMark) Record {
	if m, ok := done[rec.JobID]; ok {
		rec.Phase, rec.StatusSeq, rec.UpdatedAt = PhaseDone, m.streamSeq, m.at
	}
	return rec
}

// applyMark removes outbox entry seq and, for a final status, sets the
// job's record to PhaseDone with its status sequence. It is idempotent.
func (j *Journal) applyMark(tx *bolt.Tx, seq uint64, m sentMark) error {
	ob := tx.Bucket(bucketOutbox)
	if ob.Get(seqKey(seq)) == nil {
		return nil // committed already
	}
	if err := ob.Delete(seqKey(seq)); err != nil {
		return err
	}
	if !m.final {
		return nil
	}
	recs := tx.Bucket(bucketRecords)
	rkey := []byte(m.job)
	rec := Record{JobID: m.job}
	if old := recs.Get(rkey); old != nil {
		var err error
		if rec, err = decodeRecord(rkey, old); err != nil {
			return corrupt(j.path, err)
		}
	}
	rec.Phase = PhaseDone
	rec.StatusSeq = m.streamSeq
	rec.UpdatedAt = m.at
	rv, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	return recs.Put(rkey, rv)
}
