package fleet

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/pcm-project/pcm/events"
	"github.com/pcm-project/pcm/internal/backoff"
	"github.com/pcm-project/pcm/internal/streamread"
)

// readTimeout bounds a read of the fleet's state (a consumer, every
// consumer, a bucket) whose ctx has no deadline.
const readTimeout = 30 * time.Second

// Enrollment is a client's durable consumer on PCM_JOBS, as the operator
// enrolled it, with the consumer's position.
type Enrollment struct {
	// Client is the client id.
	Client string `json:"client"`
	// Groups are the groups the client was enrolled in.
	Groups []string `json:"groups,omitempty"`
	// Filters are the PCM_JOBS subjects the consumer delivers.
	Filters []string `json:"filters"`
	// Delivered is the highest PCM_JOBS sequence delivered to the client's
	// agent: every offer on Filters up to it has been received.
	Delivered uint64 `json:"delivered_seq"`
	// AckFloor is the PCM_JOBS sequence up to which every offer is acked.
	AckFloor uint64 `json:"ack_floor_seq"`
	// NumPending counts the offers not delivered yet.
	NumPending uint64 `json:"num_pending"`
	// NumAckPending counts the offers delivered and not acked yet.
	NumAckPending int `json:"num_ack_pending"`
	// Site is the branch site the client is enrolled at (pcm enroll
	// --site), empty for a client of the hub. A site client's consumer is
	// in the site's PCM_JOBS: its positions (Delivered, AckFloor, ...)
	// are not known at the hub and stay zero.
	Site string `json:"site,omitempty"`
}

// Receives reports whether the consumer's filters take subject.
func (e Enrollment) Receives(subject string) bool {
	for _, f := range e.Filters {
		if subjectMatches(f, subject) {
			return true
		}
	}
	return false
}

// Unmatched returns the targets that no enrolled client receives: a client
// that is not enrolled, a group no client is enrolled in, all when no
// client is enrolled at all.
func Unmatched(enrolled map[string]Enrollment, targets []events.Target) []events.Target {
	var out []events.Target
	for _, t := range targets {
		subject := events.JobSubject(t)
		matched := false
		for _, e := range enrolled {
			if e.Receives(subject) {
				matched = true
				break
			}
		}
		if !matched {
			out = append(out, t)
		}
	}
	return out
}

// enrollmentOf reads a client's enrollment from its consumer's info; ok is
// false for a consumer that is not a client's (not named agent-<client>).
func enrollmentOf(info *jetstream.ConsumerInfo) (Enrollment, bool) {
	if info == nil {
		return Enrollment{}, false
	}
	client, ok := strings.CutPrefix(info.Name, events.ConsumerName(""))
	if !ok || events.ValidID("client id", client) != nil {
		return Enrollment{}, false
	}
	if c := info.Config.Metadata[events.ConsumerMetadataClient]; c != "" && c != client {
		return Enrollment{}, false
	}
	filters := info.Config.FilterSubjects
	if info.Config.FilterSubject != "" {
		filters = append([]string{info.Config.FilterSubject}, filters...)
	}
	return Enrollment{
		Client: client, Groups: events.GroupsOfConsumer(info.Config.Metadata), Filters: filters,
		Delivered: info.Delivered.Stream, AckFloor: info.AckFloor.Stream,
		NumPending: info.NumPending, NumAckPending: info.NumAckPending,
	}, true
}

// ListEnrollments returns every enrolled client, by client id, as the
// consumers of PCM_JOBS say. The server pages the list; nothing else is read.
func ListEnrollments(ctx context.Context, js jetstream.JetStream) (map[string]Enrollment, error) {
	ctx, cancel := backoff.WithDefaultTimeout(ctx, readTimeout)
	defer cancel()
	stream, err := js.Stream(ctx, events.StreamJobs)
	if err != nil {
		return nil, streamErr(events.StreamJobs, err)
	}
	out := map[string]Enrollment{}
	lister := stream.ListConsumers(ctx)
	for info := range lister.Info() {
		if e, ok := enrollmentOf(info); ok {
			out[e.Client] = e
		}
	}
	if err := lister.Err(); err != nil {
		return nil, fmt.Errorf("%w: listing the consumers of %s: %w", ErrRead, events.StreamJobs, err)
	}
	sites, err := ReadSites(ctx, js)
	if err != nil {
		return nil, err
	}
	for c, r := range sites {
		out[c] = Enrollment{Client: c, Groups: r.Groups, Filters: r.Filters, Site: r.Site}
	}
	return out, nil
}

// EnrollmentOf returns one client's enrollment; ok is false when the client
// has no consumer.
func EnrollmentOf(ctx context.Context, js jetstream.JetStream, client string) (e Enrollment, ok bool, err error) {
	ctx, cancel := backoff.WithDefaultTimeout(ctx, readTimeout)
	defer cancel()
	cons, err := js.Consumer(ctx, events.StreamJobs, events.ConsumerName(client))
	if errors.Is(err, jetstream.ErrConsumerNotFound) {
		return Enrollment{}, false, nil
	}
	if err != nil {
		return Enrollment{}, false, streamErr(events.StreamJobs, err)
	}
	e, ok = enrollmentOf(cons.CachedInfo())
	return e, ok, nil
}

// streamErr says that reading stream failed, in the package's sentinels.
func streamErr(stream string, err error) error {
	return streamread.Describe("stream "+stream, err, ErrNotProvisioned, ErrRead)
}

// subjectMatches reports whether subject matches filter, which may hold
// the wildcards * (one token) and > (the rest).
func subjectMatches(filter, subject string) bool {
	for {
		ft, frest, fmore := strings.Cut(filter, ".")
		st, srest, smore := strings.Cut(subject, ".")
		switch {
		case ft == ">":
			return true
		case ft != "*" && ft != st:
			return false
		case !fmore || !smore:
			return fmore == smore
		}
		filter, subject = frest, srest
	}
}
