package fleet

import (
	"context"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/pcm-project/pcm/broker/auth"
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
