package streamread

import "errors"

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
	// $JS.API.DIRECT.GET.<stream> (the broker refuses such a request
	// silently and reports a permission violation to the connection).
	ErrNoAnswer = errors.New("no answer to a direct get")
	// ErrRefused: the broker answered a direct get with an error status
	// (a malformed or conflicting request): the message names the status.
	ErrRefused = errors.New("direct get refused")
	// ErrInvalidOptions: the options cannot be used (a bad filter, a
	// negative batch, Follow without subjects to listen to).
	ErrInvalidOptions = errors.New("invalid stream read options")
)
