package fleet

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/pcm-project/pcm/events"
	"github.com/pcm-project/pcm/internal/backoff"
)

// Consumer defaults for an enrolled client.
const (
	// DefaultAckWait is how long the broker waits for an agent's ack before
	// redelivering; agents send InProgress while a job runs longer.
	DefaultAckWait = 30 * time.Second
	// DefaultMaxAckPending bounds the offers a client may hold unacked: the
	// jobs waiting for their time or for the user.
	DefaultMaxAckPending = 20000
	// defaultTimeout bounds each broker call when the caller's context has
	// no deadline.
	defaultTimeout = 10 * time.Second
)

// ConsumerOptions tunes a client's consumer.
type ConsumerOptions struct {
	// AckWait before redelivery; default DefaultAckWait.
	AckWait time.Duration
	// MaxAckPending; default DefaultMaxAckPending.
	MaxAckPending int
	// Replicas of the consumer; 0 follows the stream.
	Replicas int
	// Storage of a new consumer's state; the default, StorageAuto, is
	// memory for a replicated consumer (a cluster) and file otherwise. A
	// consumer that exists keeps its storage: nats-server cannot change it.
	Storage ConsumerStorage
}

// ConsumerStorage is where a client's consumer keeps its state (its
// delivered and acked positions).
type ConsumerStorage int

const (
	// StorageAuto: memory when the consumer has replicas on other
	// members of a cluster, file otherwise. In a cluster a memory consumer
	// keeps its state in the memory of its replicas: a member stops in
	// about 1 ms per consumer instead of 11.5 ms (BENCHMARKS.md), and the
	// broker writes no state file at every delivery and ack. Its state is
	// lost only when every replica is down at once (a full-cluster stop):
	// the consumer comes back from the cluster's metadata with nothing
	// acked and delivers every retained offer again, which each agent
	// settles from its journal or the job's last status without running
	// it again.
	StorageAuto ConsumerStorage = iota
	// StorageFile: on disk, surviving any restart (the only choice that
	// survives the restart of a single-node broker).
	StorageFile
	// StorageMemory: in memory, lost when every replica is down at once.
	StorageMemory
)

// memoryStorage tells whether client's consumer keeps its state in memory:
// as it does if it exists, else as opts.Storage says for the jobs stream's
// replicas.
func memoryStorage(ctx context.Context, js jetstream.JetStream, client string, opts ConsumerOptions) (bool, error) {
	cons, err := js.Consumer(ctx, events.StreamJobs, events.ConsumerName(client))
	switch {
	case err == nil:
		return cons.CachedInfo().Config.MemoryStorage, nil
	case !errors.Is(err, jetstream.ErrConsumerNotFound):
		return false, err
	}
	switch opts.Storage {
	case StorageFile:
		return false, nil
	case StorageMemory:
		return true, nil
	}
	replicas := opts.Replicas
	if replicas == 0 {
		st, err := js.Stream(ctx, events.StreamJobs)
		if err != nil {
			return false, err
		}
		replicas = st.CachedInfo().Config.Replicas
	}
	return replicas > 1, nil
}

// EnrollConsumer creates or updates client's durable consumer
// agent-<client> on PCM_JOBS: filtered to its own subject, its groups' and
// pcm.jobs.all, explicit ack, unlimited deliveries, its state in memory
// when it is replicated and on file otherwise (ConsumerOptions.Storage), delivering every stored
// job (so a client that joins a group gets the group's live jobs). Enrolling
// again with other groups updates the filters and keeps the consumer's
// position. It needs the rights of an admin of the pcm account (or an open
// broker). groups are normalized (split at commas, trimmed, sorted, each
// once) and returned as enrolled.
func EnrollConsumer(ctx context.Context, js jetstream.JetStream, client string, groups []string, opts ConsumerOptions) (jetstream.Consumer, error) {
	ctx, cancel := backoff.WithDefaultTimeout(ctx, defaultTimeout)
	defer cancel()
	groups, err := checkClient(client, groups)
	if err != nil {
		return nil, err
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
			events.ConsumerMetadataClient: client,
			events.ConsumerMetadataGroups: strings.Join(groups, ","),
		},
	}
	// Creating or updating with the same configuration is idempotent:
	// safe to retry through a leader election.
	var cons jetstream.Consumer
	err = backoff.RetryBroker(ctx, func(ctx context.Context) (err error) {
		if cfg.MemoryStorage, err = memoryStorage(ctx, js, client, opts); err != nil {
			return err
		}
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
	ctx, cancel := backoff.WithDefaultTimeout(ctx, defaultTimeout)
	defer cancel()
	if err := js.DeleteConsumer(ctx, events.StreamJobs, events.ConsumerName(client)); err != nil {
		return fmt.Errorf("%w: removing client %s: %w", ErrEnroll, client, err)
	}
	return nil
}

// checkClient validates a client id and its groups, and normalizes the
// groups.
func checkClient(client string, groups []string) ([]string, error) {
	if err := events.ValidID("client id", client); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrEnroll, err)
	}
	groups = NormalizeGroups(groups)
	for _, g := range groups {
		if err := events.ValidID("group", g); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrEnroll, err)
		}
	}
	return groups, nil
}

// NormalizeGroups splits groups at commas, trims them, drops empty ones and
// duplicates, and sorts them.
func NormalizeGroups(groups []string) []string {
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
