package streamread

import (
	"errors"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"
)

// Sentinel errors.
var (
	// ErrCaughtUp is what Reader.Next returns when it has returned every
	// message stored on its filters when its round began: call Next again
	// later to read what was stored since. It is not a failure.
	ErrCaughtUp = errors.New("caught up with the stream")
	// ErrNoStream: nobody answers direct gets of the stream: it does not
	// exist (run pcm broker provision) or does not allow direct gets
	// (AllowDirect). It comes with jetstream.ErrStreamNotFound, so that
	// errors.Is(err, jetstream.ErrStreamNotFound) holds as well.
	ErrNoStream = errors.New("stream not found or without direct gets")
	// ErrNoAnswer: the broker did not answer a direct get in time. With
	// restricted credentials it usually means the user may not publish to
	// the request's subject (the broker refuses such a request silently
	// and reports a permission violation to the connection).
	ErrNoAnswer = errors.New("no answer to a direct get")
	// ErrRefused: the broker answered a direct get with an error status
	// (a malformed or conflicting request): the message names the status.
	ErrRefused = errors.New("direct get refused")
	// ErrInvalidOptions: the options cannot be used (a bad filter, a
	// negative batch, Follow without subjects to listen to).
	ErrInvalidOptions = errors.New("invalid stream read options")
	// ErrIncomplete: a read could not deliver every message the stream
	// holds in the range it had to read (no replica answered it whole
	// within Options.RetryFor). The error is an *IncompleteError naming
	// the stream and the range not delivered; nothing after the range's
	// start was delivered. Reading again later resumes there.
	ErrIncomplete = errors.New("stream read incomplete")
)

// IncompleteError is the ErrIncomplete of one read: the sequences From to
// To (inclusive) of Stream, on Filter ("" for the whole stream), were not
// delivered, for the reason Err.
type IncompleteError struct {
	Stream   string
	Filter   string
	From, To uint64
	// Err is the last failure seen while trying to read the range.
	Err error
}

func (e *IncompleteError) Error() string {
	on := ""
	if e.Filter != "" {
		on = " on " + e.Filter
	}
	rng := fmt.Sprintf("sequences %d to %d", e.From, e.To)
	if e.From == e.To {
		rng = fmt.Sprintf("sequence %d", e.From)
	}
	msg := fmt.Sprintf("%s: %s of %s%s not delivered", ErrIncomplete, rng, e.Stream, on)
	if e.Err != nil {
		msg += ": " + e.Err.Error()
	}
	return msg + " (read again to resume from sequence " + fmt.Sprint(e.From) + "; if it persists, a replica of the stream is missing messages: check its replicas)"
}

// Is makes errors.Is(err, ErrIncomplete) hold.
func (e *IncompleteError) Is(target error) bool { return target == ErrIncomplete }

// Unwrap returns the last failure.
func (e *IncompleteError) Unwrap() error { return e.Err }

// Describe wraps err, an error of reading what ("stream PCM_JOBS", "bucket
// PCM_AGENTS"), in a caller's sentinels: notProvisioned when the stream
// does not exist (jetstream.ErrStreamNotFound, ErrNoStream: pcm broker
// provision makes it), read for any other error. It is how the packages
// that read pcm's streams say so, in the same words.
func Describe(what string, err, notProvisioned, read error) error {
	if errors.Is(err, jetstream.ErrStreamNotFound) || errors.Is(err, jetstream.ErrBucketNotFound) || errors.Is(err, ErrNoStream) {
		return fmt.Errorf("%w: %s does not exist: run pcm broker provision", notProvisioned, what)
	}
	return fmt.Errorf("%w: %s: %w", read, what, err)
}
