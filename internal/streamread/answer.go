package streamread

import (
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
)

// The headers a direct get adds to a stored message, and the status
// headers nats.go sets on a status message.
const (
	hdrStream     = "Nats-Stream"
	hdrSubject    = "Nats-Subject"
	hdrSequence   = "Nats-Sequence"
	hdrTimeStamp  = "Nats-Time-Stamp"
	hdrNumPending = "Nats-Num-Pending"
	hdrLastSeq    = "Nats-Last-Sequence"
	hdrStatus     = "Status"
	hdrDescr      = "Description"
)

// batchHeaders are the headers the broker adds to each message of a batch
// answer, in the order it adds them (nats-server's getDirectRequest); a
// single get (last by subject) adds the first four.
var batchHeaders = []string{hdrStream, hdrSubject, hdrSequence, hdrTimeStamp, hdrNumPending, hdrLastSeq}

// What the server says about a message, and what the message says.
//
// A direct get answer carries the headers the message was stored with, and
// then, appended after them, the headers the server adds (nats-server's
// getDirectRequest copies the stored header block and appends each of its
// own with genHeader). A stored message may carry headers of the same
// names (any writer of the stream can set them); nats.go keeps the values
// of a repeated header in their order, so the server's value of each is
// the last one. Nothing here ever reads a first value.

// serverValue is the value the server set for key: the last one.
func serverValue(h nats.Header, key string) (string, bool) {
	v := h[key]
	if len(v) == 0 {
		return "", false
	}
	return v[len(v)-1], true
}

// isStatus says whether an answer is a status (end of batch, not found, an
// error) rather than a stored message: the server adds Nats-Sequence to
// every stored message it sends and to no status.
func isStatus(msg *nats.Msg) bool { return len(msg.Header[hdrSequence]) == 0 }

// statusOf is a status answer's code and description (nats.go adds them
// after the headers from the status line).
func statusOf(msg *nats.Msg) (code, descr string) {
	code, _ = serverValue(msg.Header, hdrStatus)
	descr, _ = serverValue(msg.Header, hdrDescr)
	return code, descr
}

// stored is a stored message as a batch answer carries it, with the
// server's bookkeeping.
type stored struct {
	Msg
	// prev is the sequence of the message sent before it in the same
	// batch (0 for the first): the chain that shows none went missing.
	prev uint64
}

// uintValue parses the server's value of key.
func uintValue(h nats.Header, key string) (uint64, error) {
	v, ok := serverValue(h, key)
	if !ok {
		return 0, fmt.Errorf("no %s header", key)
	}
	n, err := strconv.ParseUint(v, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%s %q", key, v)
	}
	return n, nil
}

// parseStored reads a stored message out of an answer. It removes the
// headers the server added (the last value of each), keeping every header
// the message was stored with, those of the same names included; for a
// batch answer it also reads the chain.
func parseStored(stream string, msg *nats.Msg, batch bool) (stored, error) {
	h := msg.Header
	seq, err := uintValue(h, hdrSequence)
	if err != nil {
		return stored{}, err
	}
	ts, _ := serverValue(h, hdrTimeStamp)
	t, err := time.Parse(time.RFC3339Nano, ts)
	if err != nil {
		return stored{}, fmt.Errorf("%s %q", hdrTimeStamp, ts)
	}
	subject, _ := serverValue(h, hdrSubject)
	s := stored{Msg: Msg{Stream: stream, Subject: subject, Seq: seq, Time: t, Data: msg.Data}}
	added := batchHeaders[:4] // a single get's
	if batch {
		if s.prev, err = uintValue(h, hdrLastSeq); err != nil {
			return stored{}, err
		}
		added = batchHeaders
	}
	for _, k := range added {
		if v := h[k]; len(v) <= 1 {
			delete(h, k)
		} else {
			h[k] = v[:len(v)-1]
		}
	}
	if len(h) > 0 {
		s.Header = h
	}
	return s, nil
}
