package publisher

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/oklog/ulid/v2"

	"github.com/pcm-project/pcm/events"
)

// Offer is a job offer found in the jobs stream.
type Offer struct {
	Job   events.JobOffered
	Event event.Event
	// Seq is the PCM_JOBS sequence of the first stored copy.
	Seq uint64
	// Copies are the stored copies of the offer, one per target subject, in
	// stream order. A client's consumer has received the offer once its
	// delivered stream sequence reaches the copy on one of its filters.
	Copies []OfferCopy
	// Cancelled is set when a cancellation of the job follows the offer.
	Cancelled *events.JobCancelled
}

// OfferCopy is one stored copy of an offer: the subject of one target and
// its PCM_JOBS stream sequence.
type OfferCopy struct {
	Subject string `json:"subject"`
	Seq     uint64 `json:"seq"`
}

// FindOffer looks jobID's offer up in PCM_JOBS. A job id that is a ULID (the
// ids Publish assigns) carries its creation time, and the scan starts just
// before it; any other id scans the stream from its start. The scan reads
// through an ordered consumer and keeps nothing but the match in memory.
func FindOffer(ctx context.Context, js jetstream.JetStream, jobID string) (Offer, error) {
	ctx, cancel := withDefaultTimeout(ctx)
	defer cancel()
	cfg := jetstream.OrderedConsumerConfig{DeliverPolicy: jetstream.DeliverAllPolicy}
	if id, err := ulid.ParseStrict(jobID); err == nil {
		start := ulid.Time(id.Time()).Add(-time.Minute)
		cfg.DeliverPolicy = jetstream.DeliverByStartTimePolicy
		cfg.OptStartTime = &start
	}
	cons, err := js.OrderedConsumer(ctx, events.StreamJobs, cfg)
	if err != nil {
		if errors.Is(err, jetstream.ErrStreamNotFound) {
			return Offer{}, fmt.Errorf("%w: stream %s does not exist: run pcm broker provision", ErrNotProvisioned, events.StreamJobs)
		}
		return Offer{}, fmt.Errorf("reading %s: %w", events.StreamJobs, err)
	}
	info, err := cons.Info(ctx)
	if err != nil {
		return Offer{}, fmt.Errorf("reading %s: %w", events.StreamJobs, err)
	}
	var found *Offer
	needle := []byte(`"` + jobID + `"`)
	for remaining := info.NumPending; remaining > 0; {
		batch, err := cons.Fetch(int(min(remaining, 500)), jetstream.FetchMaxWait(2*time.Second))
		if err != nil {
			return Offer{}, fmt.Errorf("reading %s: %w", events.StreamJobs, err)
		}
		n := 0
		for msg := range batch.Messages() {
			n++
			meta, _ := msg.Metadata()
			if meta != nil {
				remaining = meta.NumPending
			}
			if !bytes.Contains(msg.Data(), needle) {
				continue
			}
			ev, err := events.Decode(msg.Headers(), msg.Data())
			if err != nil || ev.Subject() != jobID {
				continue
			}
			switch ev.Type() {
			case events.TypeJobOffered:
				if found == nil {
					job, err := events.ParseJobOffered(ev)
					if err != nil {
						continue
					}
					found = &Offer{Job: job, Event: ev}
					if meta != nil {
						found.Seq = meta.Sequence.Stream
					}
				}
				if meta != nil {
					found.Copies = append(found.Copies, OfferCopy{Subject: msg.Subject(), Seq: meta.Sequence.Stream})
				}
			case events.TypeJobCancelled:
				if c, err := events.ParseJobCancelled(ev); err == nil && found != nil {
					found.Cancelled = &c
				}
			}
		}
		if err := batch.Error(); err != nil && !errors.Is(err, jetstream.ErrNoMessages) {
			return Offer{}, fmt.Errorf("reading %s: %w", events.StreamJobs, err)
		}
		if n == 0 {
			break
		}
	}
	if found == nil {
		return Offer{}, fmt.Errorf("%w: no offer of job %s in %s (mistyped, or older than the stream's retention)", ErrJobNotFound, jobID, events.StreamJobs)
	}
	return *found, nil
}
