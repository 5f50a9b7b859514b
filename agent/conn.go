package agent

import (
	"time"

	"github.com/nats-io/nats.go"

	"github.com/pcm-project/pcm/internal/backoff"
)

// ConnectOptions are the connection options of a long-running agent face:
// retry the first connection, reconnect forever with a jittered exponential
// backoff capped at 5 s, keep publishes made while disconnected in the
// reconnect buffer, and no echo of its own publishes.
func ConnectOptions(name string) []nats.Option {
	return []nats.Option{
		nats.Name(name),
		nats.RetryOnFailedConnect(true),
		nats.MaxReconnects(-1),
		nats.CustomReconnectDelay(reconnectDelay),
		nats.PingInterval(20 * time.Second),
		// A face never needs the messages it publishes itself (its own
		// statuses): the broker does not send them back.
		nats.NoEcho(),
	}
}

// reconnectDelays are 100 ms doubled per attempt up to 5 s, each times a
// random factor in [0.5, 1.5) so a fleet does not reconnect in step.
var reconnectDelays = backoff.Backoff{Initial: 100 * time.Millisecond, Max: 5 * time.Second}

// reconnectDelay is the wait before reconnection attempt attempts+1.
func reconnectDelay(attempts int) time.Duration { return reconnectDelays.Nth(attempts) }

// retryDelays are the waits between the retries of a failed call to the
// broker (a publish, a fetch, an ack): 50 ms doubled up to 5 s, jittered.
// Each retry loop starts from a copy.
var retryDelays = backoff.Backoff{Initial: 50 * time.Millisecond, Max: 5 * time.Second}
