package agent

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/pcm-project/pcm/events"
	"github.com/pcm-project/pcm/internal/streamread"
)

// One final status per attempt. Two writers may hold a final status of the
// same attempt: the face that ran it, and the face that took the lock after
// the runner's lease lapsed (it was stalled, or the broker was away longer
// than the lease, or it died after journaling its final and before
// publishing it) and settled the attempt it found started and never
// finished as interrupted. Neither can know of the other's status in time:
// the lock only says who may start work, not who may still be reporting
// some. So a final status is stored with a compare-and-set on the job's
// status subject: it is published only when no final status of its attempt
// (nor a status of a later attempt) is stored, conditioned on the subject's
// last sequence it read (Nats-Expected-Last-Subject-Sequence); whichever
// final is stored first is the attempt's, the other is superseded and not
// stored.

// errSuperseded: the attempt already has a final status on the broker,
// stored by the other face; the status was not stored. It wraps
// ErrAlreadyDone.
var errSuperseded = fmt.Errorf("%w: the attempt already has a final status", ErrAlreadyDone)

// casRetry is the pause before storeFinal reads again after a refused
// compare-and-set.
const casRetry = 10 * time.Millisecond

// headerExpectedLastSubjectSeq is JetStream's compare-and-set header on a
// subject's last sequence (0: nothing is stored on the subject).
const headerExpectedLastSubjectSeq = "Nats-Expected-Last-Subject-Sequence"

// finalOf returns the status msg carries when it is the final status of an
// attempt (ok false otherwise, and for what cannot be decoded).
func finalOf(msg *nats.Msg) (events.JobStatus, bool) {
	ev, err := events.Decode(msg.Header, msg.Data)
	if err != nil || ev.Type() != events.TypeJobStatus {
		return events.JobStatus{}, false
	}
	st, err := events.ParseJobStatus(ev)
	if err != nil || !st.State.Final() {
		return events.JobStatus{}, false
	}
	return st, true
}

// settles reports whether last, stored on the job's status subject, means
// attempt already has its final status: it is one, or it belongs to a later
// attempt (which starts only once attempt is settled). A deferral or a
// rejection numbers the attempt to come and proves nothing.
func settles(last events.JobStatus, attempt int) bool {
	switch {
	case last.State == events.StateDeferred || last.State == events.StateRejected:
		return false
	case last.Attempt > attempt:
		return true
	}
	return last.Attempt == attempt && (last.State.Final() || last.State == events.StateRestarted)
}

// storeFinal publishes msg, the final status st, unless the attempt already
// has one on the broker (errSuperseded, with the stored one): it reads the
// subject's last status and publishes conditioned on its sequence, again
// while another status comes in between. A retry of a publish that was
// stored is recognised by its Nats-Msg-Id. It returns the stream sequence
// of the stored status (of the one that superseded it, with errSuperseded).
func storeFinal(ctx context.Context, js jetstream.JetStream, msg *nats.Msg, st events.JobStatus) (uint64, *events.JobStatus, error) {
	id := msg.Header.Get(events.HeaderMsgID)
	for {
		m, found, err := streamread.Last(ctx, js, events.StreamStatus, msg.Subject)
		if err != nil {
			return 0, nil, fmt.Errorf("reading the last status before storing %s: %w", id, err)
		}
		var expect uint64
		if found {
			if m.Header.Get(events.HeaderMsgID) == id {
				return m.Seq, nil, nil // stored already (its PubAck was lost)
			}
			if ev, err := events.Decode(m.Header, m.Data); err == nil {
				if last, err := events.ParseJobStatus(ev); err == nil && settles(last, st.Attempt) {
					return m.Seq, &last, fmt.Errorf("%w: %s of attempt %d by the %s face (stream sequence %d); %s not stored",
						errSuperseded, last.State, last.Attempt, last.Runner, m.Seq, id)
				}
			}
			expect = m.Seq
		}
		msg.Header.Set(headerExpectedLastSubjectSeq, strconv.FormatUint(expect, 10))
		ack, err := js.PublishMsg(ctx, msg)
		if err == nil {
			return ack.Sequence, nil, nil
		}
		if !wrongLastSequence(err) {
			return 0, nil, err
		}
		// Another status came in between (or the replica that answered
		// the read lagged): read again, after a breath.
		if !sleep(ctx, casRetry) {
			return 0, nil, ctx.Err()
		}
	}
}

// wrongLastSequence reports whether err is the broker's refusal of a
// compare-and-set on a subject's last sequence.
func wrongLastSequence(err error) bool {
	var apiErr *jetstream.APIError
	if !errors.As(err, &apiErr) {
		return false
	}
	return apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
		apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant
}

// storeFinalAfter stores the final status msg (st) expecting the subject's
// last sequence to be after: the sequence of the attempt's own started
// status, read from its PubAck, while this face held the lock from its
// read of the last status to the start. Stored there, nothing came in
// between, so nothing settled the attempt: one publish instead of a read
// and a publish. Anything else (another status came in between) falls back
// to storeFinal, which reads the last status and decides.
func storeFinalAfter(ctx context.Context, js jetstream.JetStream, msg *nats.Msg, st events.JobStatus, after uint64) (uint64, *events.JobStatus, error) {
	msg.Header.Set(headerExpectedLastSubjectSeq, strconv.FormatUint(after, 10))
	ack, err := js.PublishMsg(ctx, msg)
	switch {
	case err == nil:
		return ack.Sequence, nil, nil
	case wrongLastSequence(err):
		return storeFinal(ctx, js, msg, st)
	}
	return 0, nil, err
}
