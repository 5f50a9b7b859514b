package streamread

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Last reads the last message stored on subject (one subject, no
// wildcard) in stream, with one direct get by subject: a request with an
// empty body to <API prefix>DIRECT.GET.<stream>.<subject>, the one
// request a user restricted to that subject may send. found is false when
// nothing is stored on subject (the broker answers 404). When ctx has no
// deadline, the wait for the answer is bounded by DefaultTimeout.
//
// Errors wrap ErrNoStream (nobody answers: the stream does not exist or
// does not allow direct gets), ErrNoAnswer (no answer in time: check the
// connection and the user's right to send the request), ErrRefused (an
// error status) or ErrInvalidOptions (a bad stream name or subject).
func Last(ctx context.Context, js jetstream.JetStream, stream, subject string) (m Msg, found bool, err error) {
	if err := validStream(stream); err != nil {
		return Msg{}, false, err
	}
	if err := validSubject(subject); err != nil || strings.ContainsAny(subject, "*>") {
		return Msg{}, false, fmt.Errorf("%w: subject %q: give one subject, without wildcards", ErrInvalidOptions, subject)
	}
	r := &Reader{stream: stream, api: apiPrefix(js.Options()) + "DIRECT.GET." + stream + "." + subject}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, DefaultTimeout)
		defer cancel()
	}
	msg, err := js.Conn().RequestWithContext(ctx, r.api, nil)
	switch {
	case errors.Is(err, nats.ErrNoResponders):
		return Msg{}, false, r.waitErr(context.Background(), err)
	case errors.Is(ctx.Err(), context.DeadlineExceeded):
		return Msg{}, false, fmt.Errorf("%w: %s did not answer in time: check the connection, and that the user may publish to it: %w",
			ErrNoAnswer, r.api, err)
	case err != nil:
		return Msg{}, false, fmt.Errorf("reading %s: %w", stream, err)
	}
	if msg.Header.Get(hdrSequence) == "" {
		if msg.Header.Get(hdrStatus) == "404" {
			return Msg{}, false, nil
		}
		return Msg{}, false, r.statusErr(msg)
	}
	m, err = r.msgOf(msg)
	if err != nil {
		return Msg{}, false, err
	}
	return m, true, nil
}
