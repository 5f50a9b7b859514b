package broker

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/pcm-project/pcm/events"
	"github.com/pcm-project/pcm/internal/backoff"
)

// Defaults applied by ProvisionOptions when a field is left zero.
const (
	// DefaultJobsMaxAge outlives any job: an offer stays in PCM_JOBS for a
	// year and a day.
	DefaultJobsMaxAge = 366 * 24 * time.Hour
	// DefaultDuplicateWindow is how long both streams remember a
	// Nats-Msg-Id to store a retried publish once.
	DefaultDuplicateWindow = 24 * time.Hour
	// DefaultMaxConsumers is the consumer limit of both streams: one
	// durable consumer per client on PCM_JOBS, with room for a large fleet.
	DefaultMaxConsumers = 250_000
	// DefaultMaxMsgSize is the largest event either stream stores (256 KiB).
	DefaultMaxMsgSize = 256 << 10
	// DefaultLockMarkerTTL is how long PCM_LOCKS keeps the marker left by
	// an expired lock, so watchers see the expiry.
	DefaultLockMarkerTTL = time.Minute
	// MaxReplicas is the largest replica count JetStream allows.
	MaxReplicas = 5
)

// kvStreamPrefix is the prefix of the stream behind a KV bucket.
const kvStreamPrefix = "KV_"

// objStreamPrefix is the prefix of the stream behind an object store.
const objStreamPrefix = "OBJ_"

// ProvisionOptions tunes the resources Provision creates. The zero value
// gives the embedded single-node defaults.
type ProvisionOptions struct {
	// Replicas of every stream and bucket, 1 to MaxReplicas. Default 1;
	// use 3 on a 3-node cluster.
	Replicas int
	// JobsMaxAge is how long PCM_JOBS keeps an offer. Default
	// DefaultJobsMaxAge.
	JobsMaxAge time.Duration
	// StatusMaxAge is how long PCM_STATUS keeps a status. Default 0: for
	// ever, it is the audit record.
	StatusMaxAge time.Duration
	// DuplicateWindow of both streams. Default DefaultDuplicateWindow; no
	// longer than JobsMaxAge (nor StatusMaxAge when that is set).
	DuplicateWindow time.Duration
	// MaxConsumers of every stream and bucket. Default
	// DefaultMaxConsumers; must be positive (nats-server 2.15 refuses a
	// stream's 1,001st consumer otherwise).
	MaxConsumers int
	// MaxMsgSize is the largest message either stream stores, in bytes.
	// Default DefaultMaxMsgSize. It must not exceed the server's max payload.
	MaxMsgSize int32
	// LockMarkerTTL is the LimitMarkerTTL of PCM_LOCKS: it enables per-key
	// TTLs, and an expired lock leaves a marker for this long so watchers
	// see the expiry. Default DefaultLockMarkerTTL; at least one second.
	LockMarkerTTL time.Duration
	// PackagesMaxBytes caps the content of the PCM_PACKAGES object store, in
	// bytes. Default 0: no cap of its own, bounded only by the server's
	// JetStream store limit. When the cap is reached the broker refuses new
	// pushes (the bucket discards new data, never old packages): remove old
	// versions with pcm package rm, or raise the cap.
	PackagesMaxBytes int64
	// HubDomain, when set, provisions a branch site of the hub whose
	// JetStream domain it is: besides pcm's streams and buckets, the
	// site's copy of the hub's PCM_JOBS (SiteHubJobsStreamConfig), which
	// the site relays into its own PCM_JOBS (package site).
	HubDomain string
}

// setDefaults fills in the zero fields.
func (o *ProvisionOptions) setDefaults() {
	if o.Replicas == 0 {
		o.Replicas = 1
	}
	if o.JobsMaxAge == 0 {
		o.JobsMaxAge = DefaultJobsMaxAge
	}
	if o.DuplicateWindow == 0 {
		o.DuplicateWindow = DefaultDuplicateWindow
	}
	if o.MaxConsumers == 0 {
		o.MaxConsumers = DefaultMaxConsumers
	}
	if o.MaxMsgSize == 0 {
		o.MaxMsgSize = DefaultMaxMsgSize
	}
	if o.LockMarkerTTL == 0 {
		o.LockMarkerTTL = DefaultLockMarkerTTL
	}
}

// Validate checks the options as Provision would use them, that is with the
// defaults applied. Every error wraps ErrInvalidProvisionOptions.
func (o ProvisionOptions) Validate() error {
	o.setDefaults()
	switch {
	case o.Replicas < 1 || o.Replicas > MaxReplicas:
		return fmt.Errorf("%w: Replicas %d: use 1 to %d (3 on a 3-node cluster)", ErrInvalidProvisionOptions, o.Replicas, MaxReplicas)
	case o.JobsMaxAge < 0:
		return fmt.Errorf("%w: JobsMaxAge %s is negative: use 0 for the default (%s)", ErrInvalidProvisionOptions, o.JobsMaxAge, DefaultJobsMaxAge)
	case o.StatusMaxAge < 0:
		return fmt.Errorf("%w: StatusMaxAge %s is negative: use 0 to keep statuses for ever", ErrInvalidProvisionOptions, o.StatusMaxAge)
	case o.DuplicateWindow < 0:
		return fmt.Errorf("%w: DuplicateWindow %s is negative: use 0 for the default (%s)", ErrInvalidProvisionOptions, o.DuplicateWindow, DefaultDuplicateWindow)
	case o.DuplicateWindow > o.JobsMaxAge:
		return fmt.Errorf("%w: DuplicateWindow %s is longer than JobsMaxAge %s: shorten it", ErrInvalidProvisionOptions, o.DuplicateWindow, o.JobsMaxAge)
	case o.StatusMaxAge > 0 && o.DuplicateWindow > o.StatusMaxAge:
		return fmt.Errorf("%w: DuplicateWindow %s is longer than StatusMaxAge %s: shorten it", ErrInvalidProvisionOptions, o.DuplicateWindow, o.StatusMaxAge)
	case o.MaxConsumers < 0:
		return fmt.Errorf("%w: MaxConsumers %d must be positive (nats-server refuses a stream's 1,001st consumer without a positive limit): use 0 for the default (%d)", ErrInvalidProvisionOptions, o.MaxConsumers, DefaultMaxConsumers)
	case o.MaxMsgSize < 0:
		return fmt.Errorf("%w: MaxMsgSize %d is negative: use 0 for the default (%d)", ErrInvalidProvisionOptions, o.MaxMsgSize, DefaultMaxMsgSize)
	case o.LockMarkerTTL < time.Second:
		return fmt.Errorf("%w: LockMarkerTTL %s is shorter than the one second JetStream requires", ErrInvalidProvisionOptions, o.LockMarkerTTL)
	case o.HubDomain != "" && events.ValidID("hub domain", o.HubDomain) != nil:
		return fmt.Errorf("%w: HubDomain %q: use 1 to 64 of A-Z a-z 0-9 _ -", ErrInvalidProvisionOptions, o.HubDomain)
	case o.PackagesMaxBytes < 0:
		return fmt.Errorf("%w: PackagesMaxBytes %d is negative: use 0 for no cap, or a size in bytes", ErrInvalidProvisionOptions, o.PackagesMaxBytes)
	}
	return nil
}

// JobsStreamConfig is the configuration Provision gives PCM_JOBS.
func JobsStreamConfig(o ProvisionOptions) jetstream.StreamConfig {
	o.setDefaults()
	cfg := eventStreamConfig(o, events.StreamJobs, "pcm job offered and job cancelled events",
		events.JobsStreamSubjects(), o.JobsMaxAge)
	cfg.RePublish = liveRePublish(events.SubjectJobsAny)
	return cfg
}

// SiteHubJobsStreamConfig is PCM_JOBS_HUB, a branch site's copy of the
// PCM_JOBS of the hub whose JetStream domain is hubDomain, kept by
// JetStream sourcing across the site's leaf connection (it catches up by
// itself when the link returns), with no subject of its own. The site
// relays each event into its own PCM_JOBS once the package it needs is at
// the site (package site), with its subject: the agents' consumers at the
// site filter them as at the hub.
func SiteHubJobsStreamConfig(o ProvisionOptions, hubDomain string) jetstream.StreamConfig {
	cfg := JobsStreamConfig(o)
	cfg.Name = events.StreamJobsHub
	cfg.Description = "pcm job events: this site's copy of the hub's " + events.StreamJobs
	cfg.Subjects = nil
	cfg.RePublish = nil // the site's PCM_JOBS republishes what it relays
	cfg.Sources = []*jetstream.StreamSource{{
		Name:     events.StreamJobs,
		External: &jetstream.ExternalStream{APIPrefix: events.DomainAPI(hubDomain)},
	}}
	return cfg
}

// StatusStreamConfig is the configuration Provision gives PCM_STATUS. It
// is the audit record: no message of it can be deleted and it cannot be
// purged through the JetStream API (DenyDelete, DenyPurge: nats-server
// refuses to turn them off again); it is trimmed only by age
// (StatusMaxAge, none by default).
func StatusStreamConfig(o ProvisionOptions) jetstream.StreamConfig {
	o.setDefaults()
	cfg := eventStreamConfig(o, events.StreamStatus, "pcm job status events (the MIFs): the audit record",
		events.StatusStreamSubjects(), o.StatusMaxAge)
	cfg.DenyDelete, cfg.DenyPurge = true, true
	cfg.RePublish = liveRePublish(events.SubjectStatusAny)
	return cfg
}

// eventStreamConfig is what both event streams share: limits retention on
// file, the duplicate window, fleet-size consumer limits, direct gets.
func eventStreamConfig(o ProvisionOptions, name, description string, subjects []string, maxAge time.Duration) jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name:              name,
		Description:       description,
		Subjects:          subjects,
		Retention:         jetstream.LimitsPolicy,
		Storage:           jetstream.FileStorage,
		Replicas:          o.Replicas,
		MaxAge:            maxAge,
		Duplicates:        o.DuplicateWindow,
		MaxConsumers:      o.MaxConsumers,
		MaxMsgSize:        o.MaxMsgSize,
		MaxMsgs:           -1,
		MaxBytes:          -1,
		MaxMsgsPerSubject: -1,
		Discard:           jetstream.DiscardOld,
		AllowDirect:       true,
	}
}

// liveRePublish republishes every message stored on source on its live
// subject (events.LiveSubject), which the pcm account exports as a stream
// to the principals that follow it live. nats-server does not forward a
// message that reached the pcm account through a service import (an
// agent's status, a publisher's job, a client's key) to other accounts'
// stream imports; it does forward what the stream republishes, which its
// account's JetStream publishes. So followers hear every stored message,
// whoever wrote it, and only stored ones.
func liveRePublish(source string) *jetstream.RePublish {
	return &jetstream.RePublish{Source: source, Destination: events.LiveSubject(source)}
}

// AgentsBucketConfig is the configuration Provision gives PCM_AGENTS.
func AgentsBucketConfig(o ProvisionOptions) jetstream.KeyValueConfig {
	o.setDefaults()
	return jetstream.KeyValueConfig{
		Bucket:      events.BucketAgents,
		Description: "pcm agent inventory and heartbeats, keyed by client id",
		History:     1,
		Storage:     jetstream.FileStorage,
		Replicas:    o.Replicas,
		RePublish:   liveRePublish("$KV." + events.BucketAgents + ".>"),
	}
}

// LocksBucketConfig is the configuration Provision gives PCM_LOCKS.
// LimitMarkerTTL enables per-key TTLs (the lock lease) and leaves a marker
// watchers see when a lease expires.
func LocksBucketConfig(o ProvisionOptions) jetstream.KeyValueConfig {
	o.setDefaults()
	return jetstream.KeyValueConfig{
		Bucket:         events.BucketLocks,
		Description:    "pcm service-versus-desktop lease locks, keyed by client id",
		History:        1,
		Storage:        jetstream.FileStorage,
		Replicas:       o.Replicas,
		LimitMarkerTTL: o.LockMarkerTTL,
		RePublish:      liveRePublish("$KV." + events.BucketLocks + ".>"),
	}
}

// ReleasesBucketConfig is the configuration Provision gives PCM_RELEASES,
// the signed agent release manifests (pcm release push): agents watch their
// channel's key. A few versions of history keep what a channel ran before.
func ReleasesBucketConfig(o ProvisionOptions) jetstream.KeyValueConfig {
	o.setDefaults()
	return jetstream.KeyValueConfig{
		Bucket:      events.BucketReleases,
		Description: "pcm agent releases: signed manifests by version and by channel",
		History:     10,
		Storage:     jetstream.FileStorage,
		Replicas:    o.Replicas,
		RePublish: &jetstream.RePublish{
			Source:      "$KV." + events.BucketReleases + "." + events.ReleaseChannelKey("*"),
			Destination: events.ReleaseHintSubject("{{wildcard(1)}}"),
			HeadersOnly: true,
		},
	}
}

// ControllerBucketConfig is the configuration Provision gives
// PCM_CONTROLLER, the rollout controller's bucket: its leadership is a
// lease on a key with a per-key TTL, like a client's lock. No principal's
// account imports anything of it: only the pcm account (the controller,
// admins) reaches it.
func ControllerBucketConfig(o ProvisionOptions) jetstream.KeyValueConfig {
	o.setDefaults()
	return jetstream.KeyValueConfig{
		Bucket:         events.BucketController,
		Description:    "pcm rollout controller: the lease of the one active controller",
		History:        1,
		Storage:        jetstream.FileStorage,
		Replicas:       o.Replicas,
		LimitMarkerTTL: o.LockMarkerTTL,
	}
}

// WindowsBucketConfig is the configuration Provision gives PCM_WINDOWS,
// the maintenance windows (pcm window set): written by admins, read by
// publishers and auditors, and by each client's agent and desktop for
// their own keys through the client view. It keeps the last 5 values of a
// key, so a change of windows can be read back.
func WindowsBucketConfig(o ProvisionOptions) jetstream.KeyValueConfig {
	o.setDefaults()
	return jetstream.KeyValueConfig{
		Bucket:      events.BucketWindows,
		Description: "pcm maintenance windows, keyed by client.<id>, group.<name> or all",
		History:     5,
		Storage:     jetstream.FileStorage,
		Replicas:    o.Replicas,
	}
}

// PackagesBucketConfig is the configuration Provision gives PCM_PACKAGES,
// the object store of package content: file storage, the streams' replicas,
// and opts.PackagesMaxBytes as its cap (-1, none, when that is 0).
func PackagesBucketConfig(o ProvisionOptions) jetstream.ObjectStoreConfig {
	o.setDefaults()
	maxBytes := o.PackagesMaxBytes
	if maxBytes == 0 {
		maxBytes = -1
	}
	return jetstream.ObjectStoreConfig{
		Bucket:      events.BucketPackages,
		Description: "pcm package content, one object per package version, sha256-verified by agents",
		Storage:     jetstream.FileStorage,
		Replicas:    o.Replicas,
		MaxBytes:    maxBytes,
	}
}

// provisionTimeout bounds Provision when its ctx has no deadline.
const provisionTimeout = time.Minute

// Provision creates the pcm streams, KV buckets and the PCM_PACKAGES object
// store, or updates them to opts if they exist: it is idempotent and safe to run on every start. It needs only
// a jetstream.JetStream, so it works against the embedded broker and against
// an external nats-server or cluster (whose meta leader must be elected).
// The buckets' streams get opts.MaxConsumers too, since lock watchers and
// package downloads are consumers. Each step is retried while the broker
// answers as a passing state does (backoff.Transient), until ctx's deadline
// or, without one, provisionTimeout. Errors wrap ErrProvision (or ErrInvalidProvisionOptions)
// and name the resource.
func Provision(ctx context.Context, js jetstream.JetStream, opts ProvisionOptions) error {
	if err := opts.Validate(); err != nil {
		return err
	}
	opts.setDefaults()
	// Each step is idempotent and retried while the broker is passing
	// through a state that refuses it for a moment (a server just started
	// under load answered a stream create with no responders; a cluster
	// electing its leader).
	ctx, cancel := backoff.WithDefaultTimeout(ctx, provisionTimeout)
	defer cancel()
	streams := []jetstream.StreamConfig{JobsStreamConfig(opts), StatusStreamConfig(opts)}
	if opts.HubDomain != "" {
		streams = append(streams, SiteHubJobsStreamConfig(opts, opts.HubDomain))
	}
	for _, cfg := range streams {
		if cfg.Sources == nil {
			// A hub's PCM_STATUS sources its sites' statuses: keep the
			// sources the sites added (package site).
			if s, err := js.Stream(ctx, cfg.Name); err == nil {
				cfg.Sources = s.CachedInfo().Config.Sources
			}
		}
		if err := backoff.RetryBroker(ctx, func(ctx context.Context) error {
			_, err := js.CreateOrUpdateStream(ctx, cfg)
			return err
		}); err != nil {
			return fmt.Errorf("%w: stream %s: %w", ErrProvision, cfg.Name, err)
		}
	}
	for _, cfg := range []jetstream.KeyValueConfig{AgentsBucketConfig(opts), LocksBucketConfig(opts), ControllerBucketConfig(opts), WindowsBucketConfig(opts), ReleasesBucketConfig(opts)} {
		if err := backoff.RetryBroker(ctx, func(ctx context.Context) error { return provisionBucket(ctx, js, cfg, opts.MaxConsumers) }); err != nil {
			return fmt.Errorf("%w: bucket %s: %w", ErrProvision, cfg.Bucket, err)
		}
	}
	if err := backoff.RetryBroker(ctx, func(ctx context.Context) error {
		return provisionObjectStore(ctx, js, PackagesBucketConfig(opts), opts.MaxConsumers)
	}); err != nil {
		return fmt.Errorf("%w: object store %s: %w", ErrProvision, events.BucketPackages, err)
	}
	return nil
}

// provisionObjectStore creates or updates an object store, then sets the
// consumer limit of its stream: every download is a consumer, and a fleet
// fetching a package at once must not hit nats-server's default of 1,000.
func provisionObjectStore(ctx context.Context, js jetstream.JetStream, cfg jetstream.ObjectStoreConfig, maxConsumers int) error {
	name := objStreamPrefix + cfg.Bucket
	stream, err := js.Stream(ctx, name)
	switch {
	case errors.Is(err, jetstream.ErrStreamNotFound):
		if _, err := js.CreateObjectStore(ctx, cfg); err != nil {
			return err
		}
	case err != nil:
		return err
	default:
		// Update only what differs, so a second Provision leaves the
		// stream untouched (an update would reset its consumer limit).
		if !sameObjectStoreConfig(stream.CachedInfo().Config, cfg) {
			if _, err := js.UpdateObjectStore(ctx, cfg); err != nil {
				return err
			}
		}
	}
	return setMaxConsumers(ctx, js, name, maxConsumers)
}

// sameObjectStoreConfig compares the fields Provision sets with the stream
// behind the object store.
func sameObjectStoreConfig(have jetstream.StreamConfig, want jetstream.ObjectStoreConfig) bool {
	return have.Description == want.Description &&
		have.Storage == want.Storage &&
		have.Replicas == want.Replicas &&
		have.MaxBytes == want.MaxBytes &&
		have.MaxAge == want.TTL
}

// setMaxConsumers sets the consumer limit of stream name, if it differs.
func setMaxConsumers(ctx context.Context, js jetstream.JetStream, name string, maxConsumers int) error {
	stream, err := js.Stream(ctx, name)
	if err != nil {
		return fmt.Errorf("reading stream %s: %w", name, err)
	}
	scfg := stream.CachedInfo().Config
	if scfg.MaxConsumers == maxConsumers {
		return nil
	}
	scfg.MaxConsumers = maxConsumers
	if _, err := js.UpdateStream(ctx, scfg); err != nil {
		return fmt.Errorf("setting MaxConsumers of stream %s: %w", scfg.Name, err)
	}
	return nil
}

// provisionBucket creates or updates a KV bucket, then sets the consumer
// limit of its stream (the KV API always asks for -1, which nats-server 2.15
// turns into a limit of 1,000).
func provisionBucket(ctx context.Context, js jetstream.JetStream, cfg jetstream.KeyValueConfig, maxConsumers int) error {
	kv, err := js.KeyValue(ctx, cfg.Bucket)
	switch {
	case errors.Is(err, jetstream.ErrBucketNotFound):
		if _, err := js.CreateOrUpdateKeyValue(ctx, cfg); err != nil {
			return err
		}
	case err != nil:
		return err
	default:
		st, err := kv.Status(ctx)
		if err != nil {
			return err
		}
		// Update only what differs, so a second Provision leaves the
		// stream untouched (CreateOrUpdateKeyValue would reset its
		// consumer limit for a moment).
		if !sameBucketConfig(st.Config(), cfg) {
			if _, err := js.CreateOrUpdateKeyValue(ctx, cfg); err != nil {
				return err
			}
		}
	}
	return setMaxConsumers(ctx, js, kvStreamPrefix+cfg.Bucket, maxConsumers)
}

// sameBucketConfig compares the fields Provision sets.
func sameBucketConfig(have, want jetstream.KeyValueConfig) bool {
	return have.Description == want.Description &&
		have.History == want.History &&
		have.Storage == want.Storage &&
		have.Replicas == want.Replicas &&
		have.TTL == want.TTL &&
		have.LimitMarkerTTL == want.LimitMarkerTTL &&
		(have.RePublish == nil) == (want.RePublish == nil) &&
		(have.RePublish == nil || *have.RePublish == *want.RePublish)
}
