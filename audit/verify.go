package audit

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/pcm-project/pcm/events"
	"github.com/pcm-project/pcm/internal/backoff"
	"github.com/pcm-project/pcm/internal/streamread"
)

// stateTimeout bounds a read of a stream's state whose ctx has no
// deadline.
const stateTimeout = 30 * time.Second

// maxUndecodable bounds the sequences of undecodable events a
// StreamVerification lists (it counts them all).
const maxUndecodable = 20

// SeqRange is a range of stream sequences, both ends included.
type SeqRange struct {
	From uint64 `json:"from"`
	To   uint64 `json:"to"`
}

func (r SeqRange) String() string {
	if r.From == r.To {
		return fmt.Sprint(r.From)
	}
	return fmt.Sprintf("%d-%d", r.From, r.To)
}

// StreamVerification is what Verify found in one stream.
type StreamVerification struct {
	Stream string `json:"stream"`
	// Messages, First and Last are the stream's state when the read began
	// (STREAM.INFO): how many messages it held, and the sequences of the
	// first and the last.
	Messages uint64 `json:"messages"`
	First    uint64 `json:"first_seq"`
	Last     uint64 `json:"last_seq"`
	// Read is how many of those the replay delivered (each once, in
	// order); Complete says it is every one (messages removed by the
	// stream's limits while it read are not counted as missing).
	Read     uint64 `json:"read"`
	Complete bool   `json:"complete"`
	// Purged are the sequences before First (purged, or removed by the
	// stream's age or size limits); Deleted are those deleted between
	// First and Last.
	Purged  *SeqRange  `json:"purged,omitempty"`
	Deleted []SeqRange `json:"deleted,omitempty"`
	// Undecodable counts the events that are not valid pcm CloudEvents;
	// UndecodableSeqs lists the first of them.
	Undecodable     int      `json:"undecodable"`
	UndecodableSeqs []uint64 `json:"undecodable_seqs,omitempty"`
	// Err is why the read could not complete (ErrIncomplete names the
	// range), empty when it did.
	Err string `json:"error,omitempty"`
}

// Whole says whether the stream was read whole and every event decodes.
func (v StreamVerification) Whole() bool { return v.Complete && v.Undecodable == 0 }

// Verify replays PCM_JOBS and PCM_STATUS whole, as Replay does, and
// reports per stream what they held, what was read, the gaps in their
// sequences and the events that do not decode: proof that a replay was
// whole. It needs STREAM.INFO on both streams (an auditor has it). An error
// is returned only when a stream's state cannot be read; a read that
// cannot complete is reported in its stream's Err.
func Verify(ctx context.Context, js jetstream.JetStream) ([]StreamVerification, error) {
	var out []StreamVerification
	for _, stream := range []string{events.StreamJobs, events.StreamStatus} {
		v, err := verifyStream(ctx, js, stream)
		if err != nil {
			return out, err
		}
		out = append(out, v)
	}
	return out, nil
}

// verifyStream reads one stream whole between two readings of its state.
func verifyStream(ctx context.Context, js jetstream.JetStream, stream string) (StreamVerification, error) {
	v := StreamVerification{Stream: stream}
	before, err := streamState(ctx, js, stream)
	if err != nil {
		return v, err
	}
	v.Messages, v.First, v.Last = before.Msgs, before.FirstSeq, before.LastSeq
	if before.FirstSeq > 1 {
		v.Purged = &SeqRange{1, before.FirstSeq - 1}
	}
	deleted := slices.Clone(before.Deleted)
	slices.Sort(deleted)
	for _, d := range deleted {
		if n := len(v.Deleted); n > 0 && v.Deleted[n-1].To+1 == d {
			v.Deleted[n-1].To = d
			continue
		}
		v.Deleted = append(v.Deleted, SeqRange{d, d})
	}
	var seqs []uint64
	readErr := streamread.Scan(ctx, js, stream, streamread.Options{}, func(m streamread.Msg) error {
		if m.Seq > before.LastSeq {
			return errVerified // stored after the state was read: not part of it
		}
		seqs = append(seqs, m.Seq)
		if !decodes(m) {
			v.Undecodable++
			if len(v.UndecodableSeqs) < maxUndecodable {
				v.UndecodableSeqs = append(v.UndecodableSeqs, m.Seq)
			}
		}
		return nil
	})
	if errors.Is(readErr, errVerified) {
		readErr = nil
	}
	if ctx.Err() != nil {
		return v, ctx.Err()
	}
	v.Read = uint64(len(seqs))
	if readErr != nil {
		v.Err = readErr.Error()
		return v, nil
	}
	// What the stream held when the read began, less what its limits
	// removed while it read, must have been read, once, in order.
	after, err := streamState(ctx, js, stream)
	if err != nil {
		return v, err
	}
	from := max(before.FirstSeq, after.FirstSeq)
	gone := map[uint64]bool{}
	for _, d := range append(before.Deleted, after.Deleted...) {
		gone[d] = true
	}
	var want uint64
	if before.Msgs > 0 {
		for s := from; s <= before.LastSeq; s++ {
			if !gone[s] {
				want++
			}
		}
	}
	var got uint64
	for i, s := range seqs {
		if i > 0 && s <= seqs[i-1] {
			v.Err = fmt.Sprintf("sequence %d read after %d: out of order or repeated", s, seqs[i-1])
			return v, nil
		}
		if s >= from && !gone[s] {
			got++
		}
	}
	v.Complete = got == want
	if !v.Complete {
		v.Err = fmt.Sprintf("read %d of the %d events the stream holds", got, want)
	}
	return v, nil
}

// errVerified stops a verification's read at the state's last sequence.
var errVerified = errors.New("verified up to the state's last sequence")

// streamState reads a stream's state with its deleted sequences.
func streamState(ctx context.Context, js jetstream.JetStream, stream string) (jetstream.StreamState, error) {
	ctx, cancel := backoff.WithDefaultTimeout(ctx, stateTimeout)
	defer cancel()
	s, err := js.Stream(ctx, stream)
	if err != nil {
		return jetstream.StreamState{}, streamErr(stream, err)
	}
	info, err := s.Info(ctx, jetstream.WithDeletedDetails(true))
	if err != nil {
		return jetstream.StreamState{}, streamErr(stream, err)
	}
	return info.State, nil
}

// decodes says whether a stored message is a valid pcm CloudEvent of a
// known type, its data included.
func decodes(m streamread.Msg) bool {
	ev, err := events.Decode(m.Header, m.Data)
	if err != nil {
		return false
	}
	switch ev.Type() {
	case events.TypeJobOffered:
		_, err = events.ParseJobOffered(ev)
	case events.TypeJobCancelled:
		_, err = events.ParseJobCancelled(ev)
	case events.TypeJobStatus:
		_, err = events.ParseJobStatus(ev)
	default:
		return false
	}
	return err == nil
}
