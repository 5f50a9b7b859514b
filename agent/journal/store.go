package journal

import (
	"encoding/json"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Get returns the record of jobID and whether there is one.
func (j *Journal) Get(jobID string) (Record, bool, error) {
	release, err := j.acquire("get job " + jobID)
	if err != nil {
		return Record{}, false, err
	}
	defer release()
	done := doneOverlay(j.snapshotMarks())
	var rec Record
	found := false
	err = j.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketRecords).Get([]byte(jobID))
		if v == nil {
			if _, ok := done[jobID]; ok { // the minimal record MarkSent makes
				rec, found = overlay(Record{JobID: jobID}, done), true
			}
			return nil
		}
		r, err := decodeRecord([]byte(jobID), v)
		if err != nil {
			return corrupt(j.path, err)
		}
		rec, found = overlay(r, done), true
		return nil
	})
	if err != nil {
		return Record{}, false, err
	}
	return rec, found, nil
}

// Put writes rec (replacing the job's previous record) and appends out to
// the outbox, in one transaction fsynced before Put returns: after a crash
// either all of it is in the journal or none of it. It returns out as
// stored: Seq assigned, JobID filled.
//
// Put sets rec.UpdatedAt to the current time. It refuses with ErrAlreadyDone
// to move a PhaseDone job to another phase, and with ErrInvalid an
// incomplete record or message. A failed write (disk full, fsync error)
// returns ErrWrite and stores nothing: the agent must not start the job.
func (j *Journal) Put(rec Record, out ...Outgoing) ([]Outgoing, error) {
	if err := rec.validate(); err != nil {
		return nil, err
	}
	stored := make([]Outgoing, len(out))
	for i, o := range out {
		p, err := o.prepare(rec, i)
		if err != nil {
			return nil, err
		}
		stored[i] = p
	}
	release, err := j.acquire("put job " + rec.JobID)
	if err != nil {
		return nil, err
	}
	defer release()

	rec.UpdatedAt = time.Now().UTC()
	key := []byte(rec.JobID)
	v, err := json.Marshal(rec)
	if err != nil {
		return nil, fmt.Errorf("%w: job %s: encoding the record: %v", ErrInvalid, rec.JobID, err)
	}
	err = j.commit("writing job "+rec.JobID, func(tx *bolt.Tx) error {
		recs := tx.Bucket(bucketRecords)
		if old := recs.Get(key); old != nil {
			prev, err := decodeRecord(key, old)
			if err != nil {
				return corrupt(j.path, err)
			}
			if prev.Phase == PhaseDone && rec.Phase != PhaseDone {
				return fmt.Errorf("%w: job %s is done (status seq %d) and cannot go back to phase %s; ack its offer instead of running it",
					ErrAlreadyDone, rec.JobID, prev.StatusSeq, rec.Phase)
			}
		}
		if err := recs.Put(key, v); err != nil {
			return err
		}
		ob := tx.Bucket(bucketOutbox)
		for i := range stored {
			seq, err := ob.NextSequence()
			if err != nil {
				return err
			}
			stored[i].Seq = seq
			ov, err := encodeOutgoing(stored[i])
			if err != nil {
				return err
			}
			if err := ob.Put(seqKey(seq), ov); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return stored, nil
}

// Records calls fn for every record, in job id order, for resuming after a
// restart. The records are read first and fn is called outside any
// transaction, so fn may call Put or MarkSent. An error from fn stops the
// walk and is returned as is.
func (j *Journal) Records(fn func(Record) error) error {
	var all []Record
	release, err := j.acquire("read records")
	if err != nil {
		return err
	}
	done := doneOverlay(j.snapshotMarks())
	err = j.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketRecords).ForEach(func(k, v []byte) error {
			rec, err := decodeRecord(k, v)
			if err != nil {
				return corrupt(j.path, err)
			}
			all = append(all, overlay(rec, done))
			return nil
		})
	})
	release()
	if err != nil {
		return err
	}
	for _, rec := range all {
		if err := fn(rec); err != nil {
			return err
		}
	}
	return nil
}

// PruneDone deletes the PhaseDone records last updated before cutoff and
// returns how many went. Records in any other phase are kept whatever their
// age, and so are outbox entries.
func (j *Journal) PruneDone(cutoff time.Time) (int, error) {
	release, err := j.acquire("prune done records")
	if err != nil {
		return 0, err
	}
	defer release()
	n := 0
	err = j.commit("pruning done records", func(tx *bolt.Tx) error {
		recs := tx.Bucket(bucketRecords)
		var doomed [][]byte
		if err := recs.ForEach(func(k, v []byte) error {
			rec, err := decodeRecord(k, v)
			if err != nil {
				return corrupt(j.path, err)
			}
			if rec.Phase == PhaseDone && rec.UpdatedAt.Before(cutoff) {
				doomed = append(doomed, append([]byte(nil), k...))
			}
			return nil
		}); err != nil {
			return err
		}
		for _, k := range doomed {
			if err := recs.Delete(k); err != nil {
				return err
			}
		}
		n = len(doomed)
		return nil
	})
	if err != nil {
		return 0, err
	}
	return n, nil
}
