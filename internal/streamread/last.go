package streamread

import (
	"context"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// ErrNotFound is what Last returns when nothing is stored on the subject.
var ErrNotFound = errors.New("no message on the subject")

// Last returns the last message stored on subject (no wildcard) in
// stream, with one direct get of the subject form
// (<API prefix>DIRECT.GET.<stream>.<subject>, empty body), which any replica
// answers. It needs no right on the stream but that one subject: pcm's
// clients read their own last status, lock and inventory this way. It
// returns ErrNotFound when nothing is stored on subject, ErrNoStream when
// nobody answers (no such stream, or a subject the user may not read).
func Last(ctx context.Context, js jetstream.JetStream, stream, subject string) (Msg, error) {
	if err := validStream(stream); err != nil {
		return Msg{}, err
	}
	if err := validSubject(subject); err != nil {
		return Msg{}, err
	}
	api := apiPrefix(js.Options()) + "DIRECT.GET." + stream
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, DefaultTimeout)
		defer cancel()
	}
	msg, err := js.Conn().RequestWithContext(ctx, api+"."+subject, nil)
	switch {
	case errors.Is(err, nats.ErrNoResponders):
		return Msg{}, fmt.Errorf("%w: %s: %w", ErrNoStream, api+"."+subject, jetstream.ErrStreamNotFound)
	case err != nil:
		return Msg{}, fmt.Errorf("reading the last message of %s in %s: %w", subject, stream, err)
	}
	if isStatus(msg) {
		code, descr := statusOf(msg)
		if code == "404" {
			return Msg{}, fmt.Errorf("%w: %s in %s", ErrNotFound, subject, stream)
		}
		return Msg{}, fmt.Errorf("%w: %s answered %s %s", ErrRefused, api+"."+subject, code, descr)
	}
	s, err := parseStored(stream, msg, false)
	if err != nil {
		return Msg{}, fmt.Errorf("%w: %s answered %v", ErrRefused, api+"."+subject, err)
	}
	return s.Msg, nil
}
