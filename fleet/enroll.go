package fleet

import (
	"context"
	"errors"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/pcm-project/pcm/broker/auth"
	"github.com/pcm-project/pcm/events"
	"github.com/pcm-project/pcm/internal/backoff"
)

// Enroll enrolls client in groups: it creates or updates the client's
// consumer (EnrollConsumer) and, when accts is given (an authenticated
// deployment), makes or updates the client's account on every broker, so
// that its desktop hears of its groups' offers. It returns the groups as
// enrolled (normalized). Enrolling again changes the groups and keeps the
// consumer's position, the account and its revocations.
func Enroll(ctx context.Context, js jetstream.JetStream, accts *Accounts, client string, groups []string, opts ConsumerOptions) ([]string, error) {
	groups, err := checkClient(client, groups)
	if err != nil {
		return nil, err
	}
	if _, err := EnrollConsumer(ctx, js, client, groups, opts); err != nil {
		return nil, err
	}
	if accts != nil {
		if err := accts.Ensure(ctx, auth.Principal{Kind: auth.KindClient, Name: client, Groups: groups}); err != nil {
			return nil, err
		}
	}
	return groups, nil
}

// enrollAttemptTimeout bounds one attempt of EnrollSelf.
const enrollAttemptTimeout = 5 * time.Second

// EnrollSelf is how an agent on an open broker enrolls its own client
// (pcm agent --enroll): EnrollConsumer, retried with backoff while the
// broker cannot be reached or answers with a passing error, until ctx ends.
// A missing PCM_JOBS (ErrNotProvisioned) or an invalid client id or group
// (events.ErrInvalidID) is returned at once: waiting does not mend them.
func EnrollSelf(ctx context.Context, js jetstream.JetStream, client string, groups []string, opts ConsumerOptions) error {
	return backoff.Retry(ctx, backoff.Policy{
		AttemptTimeout: enrollAttemptTimeout,
		Retryable: func(err error) bool {
			return !errors.Is(err, ErrNotProvisioned) && !errors.Is(err, events.ErrInvalidID)
		},
	}, func(ctx context.Context) error {
		_, err := EnrollConsumer(ctx, js, client, groups, opts)
		return err
	})
}
