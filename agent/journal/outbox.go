package journal

import (
	"encoding/binary"
	"encoding/json"
	"fmt"

	bolt "go.etcd.io/bbolt"
)

// Outgoing is a message waiting to be published (a status event), kept in
// the outbox in Seq order until MarkSent removes it. The journal does not
// interpret it.
type Outgoing struct {
	// Seq is the position in the outbox, assigned by Put: strictly
	// increasing, never reused, even after MarkSent and a restart. A value
	// passed to Put is ignored.
	Seq uint64
	// JobID is the job the message belongs to. Put fills it with the record's
	// job id when empty and refuses a different one.
	JobID string
	// Subject is the subject to publish to (required).
	Subject string
	// MsgID is the Nats-Msg-Id to publish with, so a retried publish is
	// stored once (required).
	MsgID string
	// Header holds extra headers (e.g. Content-Type).
	Header map[string]string
	// Data is the message body.
	Data []byte
	// Final marks a final status: when MarkSent reports it sent, the job's
	// record goes to PhaseDone.
	Final bool
}

// storedOutgoing is the on-disk form of an Outgoing.
type storedOutgoing struct {
	Seq     uint64            `json:"seq"`
	JobID   string            `json:"job_id"`
	Subject string            `json:"subject"`
	MsgID   string            `json:"msg_id"`
	Header  map[string]string `json:"header,omitempty"`
	Data    []byte            `json:"data,omitempty"`
	Final   bool              `json:"final,omitempty"`
}

// prepare fills JobID from rec and validates o for Put.
func (o Outgoing) prepare(rec Record, i int) (Outgoing, error) {
	if o.JobID == "" {
		o.JobID = rec.JobID
	}
	switch {
	case o.JobID != rec.JobID:
		return o, fmt.Errorf("%w: outgoing message %d is for job %q but the record is job %q; put each job's messages with its own record",
			ErrInvalid, i, o.JobID, rec.JobID)
	case o.Subject == "":
		return o, fmt.Errorf("%w: job %s: outgoing message %d has no subject", ErrInvalid, rec.JobID, i)
	case o.MsgID == "":
		return o, fmt.Errorf("%w: job %s: outgoing message %d has no message id (Nats-Msg-Id); a status must be published with one",
			ErrInvalid, rec.JobID, i)
	}
	o.Seq = 0
	return o, nil
}

// seqKey is the outbox key of seq: big-endian, so keys sort in Seq order.
func seqKey(seq uint64) []byte {
	var k [8]byte
	binary.BigEndian.PutUint64(k[:], seq)
	return k[:]
}

// encodeOutgoing returns the stored form of o.
func encodeOutgoing(o Outgoing) ([]byte, error) {
	return json.Marshal(storedOutgoing(o))
}

// decodeOutgoing decodes a stored outbox entry and checks it against its key.
func decodeOutgoing(key, v []byte) (Outgoing, error) {
	if len(key) != 8 {
		return Outgoing{}, fmt.Errorf("outbox key %x is not an 8-byte sequence", key)
	}
	var s storedOutgoing
	if err := json.Unmarshal(v, &s); err != nil {
		return Outgoing{}, fmt.Errorf("outbox entry %d does not decode: %v", binary.BigEndian.Uint64(key), err)
	}
	if s.Seq != binary.BigEndian.Uint64(key) {
		return Outgoing{}, fmt.Errorf("outbox entry under key %d has seq %d", binary.BigEndian.Uint64(key), s.Seq)
	}
	if s.JobID == "" || s.Subject == "" {
		return Outgoing{}, fmt.Errorf("outbox entry %d has no job id or subject", s.Seq)
	}
	return Outgoing(s), nil
}

// Pending returns the outbox in Seq order: all of it when jobID is "", else
// only jobID's messages. Publish them in this order and report each with
// MarkSent once the broker acknowledged it.
func (j *Journal) Pending(jobID string) ([]Outgoing, error) {
	release, err := j.acquire("read the outbox")
	if err != nil {
		return nil, err
	}
	defer release()
	sent := j.snapshotMarks()
	var all []Outgoing
	err = j.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketOutbox).ForEach(func(k, v []byte) error {
			o, err := decodeOutgoing(k, v)
			if err != nil {
				return corrupt(j.path, err)
			}
			if _, ok := sent[o.Seq]; ok {
				return nil // marked sent, not committed yet
			}
			if jobID == "" || o.JobID == jobID {
				all = append(all, o)
			}
			return nil
		})
	})
	if err != nil {
		return nil, err
	}
	return all, nil
}
