package journal

import bolt "go.etcd.io/bbolt"

// Stats is a snapshot of the journal's content.
type Stats struct {
	// Records is the number of job records, of every phase.
	Records int
	// Received, Started, Finished and Done count the records per phase.
	Received, Started, Finished, Done int
	// Outbox is the number of messages waiting to be published.
	Outbox int
	// Size is the size in bytes of the data in the file (bbolt's high-water
	// mark; the file itself may be larger).
	Size int64
}

// Stats counts the records per phase and the outbox entries.
func (j *Journal) Stats() (Stats, error) {
	release, err := j.acquire("read stats")
	if err != nil {
		return Stats{}, err
	}
	defer release()
	sent := j.snapshotMarks()
	done := doneOverlay(sent)
	var s Stats
	err = j.db.View(func(tx *bolt.Tx) error {
		s.Size = tx.Size()
		s.Outbox = tx.Bucket(bucketOutbox).Stats().KeyN
		for seq := range sent {
			if tx.Bucket(bucketOutbox).Get(seqKey(seq)) != nil {
				s.Outbox-- // marked sent, not committed yet
			}
		}
		return tx.Bucket(bucketRecords).ForEach(func(k, v []byte) error {
			rec, err := decodeRecord(k, v)
			if err != nil {
				return corrupt(j.path, err)
			}
			rec = overlay(rec, done)
			s.Records++
			switch rec.Phase {
			case PhaseReceived:
				s.Received++
			case PhaseStarted:
				s.Started++
			case PhaseFinished:
				s.Finished++
			case PhaseDone:
				s.Done++
			}
			return nil
		})
	})
	if err != nil {
		return Stats{}, err
	}
	return s, nil
}
