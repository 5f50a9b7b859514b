package streamread

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Last reads the last message stored on subject (one subject, no
// wildcard) in stream, with one direct get by subject: a request with an
// empty body to <API prefix>DIRECT.GET.<stream>.<subject>, which any replica
// answers, and the one request a user restricted to that subject may send
// (pcm's clients read their own last status, a job's cancellation, their
// lock and inventory keys and a package's info this way). found is false
// when nothing is stored on subject (the broker answers 404). When ctx has
// no deadline, the wait for the answer is bounded by DefaultTimeout. The
// message's headers are those it was stored with: the server's own are
// removed (the last value of each name), never confused with a stored one.
//
// Errors wrap ErrNoStream (nobody answers: the stream does not exist, does
// not allow direct gets, or the user's account does not reach it),
// ErrNoAnswer (no answer in time), ErrRefused (an error status) or
// ErrInvalidOptions (a bad stream name or subject).
func Last(ctx context.Context, js jetstream.JetStream, stream, subject string) (m Msg, found bool, err error) {
	if err := validLast(stream, subject); err != nil {
		return Msg{}, false, err
	}
	return last(ctx, js, stream, apiPrefix(js.Options())+"DIRECT.GET."+stream+"."+subject, nil)
}

// LastInBody reads like Last, with a direct get that names subject in its
// body ({"last_by_subj": subject} to <API prefix>DIRECT.GET.<stream>): the
// form for a user that may read the whole stream. pcm's clients read a
// package's info this way: packages are the fleet's, and one import of
// the object store's batched direct gets serves its info and its chunks.
func LastInBody(ctx context.Context, js jetstream.JetStream, stream, subject string) (m Msg, found bool, err error) {
	if err := validLast(stream, subject); err != nil {
		return Msg{}, false, err
	}
	return last(ctx, js, stream, apiPrefix(js.Options())+"DIRECT.GET."+stream, lastBySubject(subject))
}

// lastBySubject is the body of a direct get of the last message on
// subject.
func lastBySubject(subject string) []byte {
	b, _ := json.Marshal(struct { // a struct of one string always marshals
		LastBySubject string `json:"last_by_subj"`
	}{subject})
	return b
}

// validLast checks the stream and the one subject Last reads.
func validLast(stream, subject string) error {
	if err := validStream(stream); err != nil {
		return err
	}
	if err := validSubject(subject); err != nil || strings.ContainsAny(subject, "*>") {
		return fmt.Errorf("%w: subject %q: give one subject, without wildcards", ErrInvalidOptions, subject)
	}
	return nil
}

// last sends the direct get body to api and reads its answer.
func last(ctx context.Context, js jetstream.JetStream, stream, api string, body []byte) (m Msg, found bool, err error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, DefaultTimeout)
		defer cancel()
	}
	msg, err := js.Conn().RequestWithContext(ctx, api, body)
	switch {
	case errors.Is(err, nats.ErrNoResponders):
		return Msg{}, false, fmt.Errorf("%w: nobody answers %s: %w", ErrNoStream, api, jetstream.ErrStreamNotFound)
	case errors.Is(ctx.Err(), context.DeadlineExceeded):
		return Msg{}, false, fmt.Errorf("%w: %s did not answer in time: check the connection, and that the user may publish to it: %w",
			ErrNoAnswer, api, err)
	case err != nil:
		return Msg{}, false, fmt.Errorf("reading %s: %w", stream, err)
	}
	if isStatus(msg) {
		code, descr := statusOf(msg)
		if code == "404" {
			return Msg{}, false, nil
		}
		return Msg{}, false, fmt.Errorf("%w: %s answered %s %s", ErrRefused, api, code, descr)
	}
	s, err := parseStored(stream, msg, false)
	if err != nil {
		return Msg{}, false, fmt.Errorf("%w: %s answered %v", ErrRefused, api, err)
	}
	return s.Msg, true, nil
}
