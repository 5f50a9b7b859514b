package agent

import (
	"math/rand/v2"
	"time"

	"github.com/nats-io/nats.go"
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

// reconnectDelay is 100 ms doubled per attempt up to 5 s, times a random
// factor in [0.5, 1.5) so a fleet does not reconnect in step.
func reconnectDelay(attempts int) time.Duration {
	d := 100 * time.Millisecond
	for i := 0; i < attempts && d < 5*time.Second; i++ {
		d *= 2
	}
	d = min(d, 5*time.Second)
	return time.Duration(float64(d) * (0.5 + rand.Float64()))
}

// backoff is a jittered exponential wait between retries of a failed call.
type backoff struct{ next, max time.Duration }

func newBackoff() *backoff { return &backoff{next: 50 * time.Millisecond, max: 5 * time.Second} }

func (b *backoff) reset() { b.next = 50 * time.Millisecond }

// delay returns the next wait and doubles the one after.
func (b *backoff) delay() time.Duration {
	d := time.Duration(float64(b.next) * (0.5 + rand.Float64()))
	b.next = min(2*b.next, b.max)
	return d
}
