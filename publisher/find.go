package publisher

import (
	"context"
	"errors"
	"fmt"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/pcm-project/pcm/events"
	"github.com/pcm-project/pcm/internal/offers"
)

// Offer is a job offer found in the jobs stream.
type Offer struct {
	Job events.JobOffered
	// Event is the offer's CloudEvent as stored (its first copy).
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

// FindOffer looks jobID's offer up in PCM_JOBS (see offers.Find: a ULID job
// id, as Publish assigns, starts the scan just before its time; the scan
// streams and keeps nothing but the match).
func FindOffer(ctx context.Context, js jetstream.JetStream, jobID string) (Offer, error) {
	ctx, cancel := withDefaultTimeout(ctx)
	defer cancel()
	found, err := offers.Find(ctx, js, nil, jobID)
	switch {
	case errors.Is(err, offers.ErrNotFound):
		return Offer{}, fmt.Errorf("%w: %w", ErrJobNotFound, err)
	case errors.Is(err, jetstream.ErrStreamNotFound):
		return Offer{}, fmt.Errorf("%w: stream %s does not exist: run pcm broker provision", ErrNotProvisioned, events.StreamJobs)
	case err != nil:
		return Offer{}, err
	}
	o := Offer{Job: found.Job, Event: found.Copies[0].Event, Seq: found.Copies[0].Seq, Cancelled: found.Cancelled}
	for _, c := range found.Copies {
		o.Copies = append(o.Copies, OfferCopy{Subject: c.Subject, Seq: c.Seq})
	}
	return o, nil
}
