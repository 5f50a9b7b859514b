package publisher

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/pcm-project/pcm/events"
)

// Consumer defaults for an enrolled client.
const (
	// DefaultAckWait is how long the broker waits for an agent's ack before
	// redelivering; agents send InProgress while a job runs longer.
	DefaultAckWait = 30 * time.Second
	// DefaultMaxAckPending bounds the offers a client may hold unacked: the
	// jobs waiting for their time or for the user.
	DefaultMaxAckPending = 20000
	// MetadataGroups is the consumer metadata key holding the client's groups,
	// comma-separated, as the operator enrolled them.
	MetadataGroups = "pcm_groups"
	// MetadataClient is the consumer metadata key holding the client id.
	MetadataClient = "pcm_client"
)

// EnrollOptions tunes a client's consumer.
type EnrollOptions struct {
	// AckWait before redelivery; default DefaultAckWait.
	AckWait time.Duration
	// MaxAckPending; default DefaultMaxAckPending.
	MaxAckPending int
	// Replicas of the consumer; 0 follows the stream.
	Replicas int
}

// Enroll creates or updates client's durable consumer agent-<client> on
// PCM_JOBS: filtered to its own subject, its groups' and pcm.jobs.all,
// explicit ack, unlimited deliveries, delivering every stored job (so a
// client that joins a group gets the group's live jobs). Enrolling again with
// other groups updates the filters and keeps the consumer's position.
func Enroll(ctx context.Context, js jetstream.JetStream, client string, groups []string, opts EnrollOptions) (jetstream.Consumer, error) {
	ctx, cancel := withDefaultTimeout(ctx)
	defer cancel()
	if err := events.ValidID("client id", client); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrEnroll, err)
	}
	groups = normalizeGroups(groups)
	for _, g := range groups {
		if err := events.ValidID("group", g); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrEnroll, err)
		}
	}
	if opts.AckWait <= 0 {
		opts.AckWait = DefaultAckWait
	}
	if opts.MaxAckPending <= 0 {
		opts.MaxAckPending = DefaultMaxAckPending
	}
	cfg := jetstream.ConsumerConfig{
		Durable:        events.ConsumerName(client),
		Description:    "pcm jobs of client " + client,
		FilterSubjects: events.ConsumerFilters(client, groups),
		AckPolicy:      jetstream.AckExplicitPolicy,
		DeliverPolicy:  jetstream.DeliverAllPolicy,
		AckWait:        opts.AckWait,
		MaxDeliver:     -1,
		MaxAckPending:  opts.MaxAckPending,
		Replicas:       opts.Replicas,
		Metadata: map[string]string{
			MetadataClient: client,
			MetadataGroups: strings.Join(groups, ","),
		},
	}
	// Creating or updating with the same configuration is idempotent:
	// safe to retry through a leader election.
	var cons jetstream.Consumer
	err := retry(ctx, func(ctx context.Context) (err error) {
		cons, err = js.CreateOrUpdateConsumer(ctx, events.StreamJobs, cfg)
		return err
	})
	if err != nil {
		if errors.Is(err, jetstream.ErrStreamNotFound) {
			return nil, fmt.Errorf("%w: stream %s does not exist: run pcm broker provision", ErrNotProvisioned, events.StreamJobs)
		}
		return nil, fmt.Errorf("%w: client %s: %w", ErrEnroll, client, err)
	}
	return cons, nil
}

// Unenroll deletes client's consumer. Its pending offers are forgotten.
func Unenroll(ctx context.Context, js jetstream.JetStream, client string) error {
	ctx, cancel := withDefaultTimeout(ctx)
	defer cancel()
	if err := js.DeleteConsumer(ctx, events.StreamJobs, events.ConsumerName(client)); err != nil {
		return fmt.Errorf("%w: removing client %s: %w", ErrEnroll, client, err)
	}
	return nil
}

// GroupsOf reads the groups a consumer was enrolled with.
func GroupsOf(info *jetstream.ConsumerInfo) []string {
	if info == nil || info.Config.Metadata[MetadataGroups] == "" {
		return nil
	}
	return strings.Split(info.Config.Metadata[MetadataGroups], ",")
}

func normalizeGroups(groups []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, g := range groups {
		for _, part := range strings.Split(g, ",") {
			part = strings.TrimSpace(part)
			if part != "" && !seen[part] {
				seen[part] = true
				out = append(out, part)
			}
		}
	}
	sort.Strings(out)
	return out
}
