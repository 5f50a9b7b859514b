package backoff

import (
	"context"
	"errors"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// BrokerAttemptTimeout bounds one broker call of a retried operation, so
// that a request lost in a leader election leaves time for the next
// attempts.
const BrokerAttemptTimeout = 3 * time.Second

// Broker is how pcm's calls to the broker ride through a leader election, a
// reconnection or a lost answer: each attempt bounded by
// BrokerAttemptTimeout, a backoff of 100 ms doubling to 2 s between them,
// until the caller's deadline; only errors that such passing states cause
// (Transient) are retried.
var Broker = Policy{
	Backoff:        Backoff{Initial: 100 * time.Millisecond, Max: 2 * time.Second},
	AttemptTimeout: BrokerAttemptTimeout,
	Retryable:      Transient,
}

// RetryBroker runs op with the Broker policy. op must be safe to run again:
// a read, or a write the broker de-duplicates (a publish with the same
// Nats-Msg-Id, a consumer created or updated with the same configuration).
func RetryBroker(ctx context.Context, op func(ctx context.Context) error) error {
	return Retry(ctx, Broker, op)
}

// Error codes of the JetStream API that a cluster answers while a leader is
// being elected or a stream is catching up.
const (
	jsClusterNotAvailable = 10008 // JetStream system temporarily unavailable
	jsClusterNotLeader    = 10009 // JetStream cluster can not handle request
	jsClusterIncomplete   = 10004 // incomplete results
	jsLastSeqNotReady     = 10163 // expected last sequence per subject temporarily unavailable
)

// Transient says whether err is what a passing state of the broker causes
// (no answer in time, nobody answering, no leader, a reconnection), so that
// the same call may succeed a moment later.
func Transient(err error) bool {
	switch {
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, nats.ErrTimeout),
		errors.Is(err, nats.ErrNoResponders), errors.Is(err, jetstream.ErrNoStreamResponse),
		errors.Is(err, jetstream.ErrJetStreamNotEnabled), errors.Is(err, nats.ErrDisconnected),
		errors.Is(err, nats.ErrConnectionReconnecting):
		return true
	}
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) {
		switch apiErr.ErrorCode {
		case jsClusterNotAvailable, jsClusterNotLeader, jsClusterIncomplete, jsLastSeqNotReady:
			return true
		}
	}
	return false
}

// WithDefaultTimeout bounds ctx by d when the caller gave it no deadline,
// as nats.go's jetstream does its calls: an operation retried with
// RetryBroker then gives up at that deadline. A ctx with a deadline is
// only made cancellable.
func WithDefaultTimeout(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, d)
}
