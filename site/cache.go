package site

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/pcm-project/pcm/events"
	"github.com/pcm-project/pcm/internal/backoff"
)

// Cache copies into the site's PCM_PACKAGES the package of every job
// offered at the site, from the hub's, once per package version: the
// site's agents then fetch it from their site broker, and the link carries
// it once whatever the number of clients. Make one with NewCache; Run does
// the work.
type Cache struct {
	local, hub jetstream.JetStream
	log        *zap.Logger

	downloads, bytes atomic.Int64
}

// CacheStats count what a Cache copied from the hub.
type CacheStats struct {
	// Downloads is the number of packages copied; Bytes their content.
	Downloads, Bytes int64
}

// NewCache returns a Cache from the hub (a JetStream of the hub's domain)
// to local (the site's JetStream).
func NewCache(local, hub jetstream.JetStream, log *zap.Logger) *Cache {
	if log == nil {
		log = zap.NewNop()
	}
	return &Cache{local: local, hub: hub, log: log}
}

// Stats returns what the cache has copied so far.
func (c *Cache) Stats() CacheStats {
	return CacheStats{Downloads: c.downloads.Load(), Bytes: c.bytes.Load()}
}

// Run follows the site's PCM_JOBS from its start and makes sure the
// package of each offer is at the site, retrying while the hub cannot be
// reached, until ctx ends (it then returns nil).
func (c *Cache) Run(ctx context.Context) error {
	var last uint64
	b := backoff.Backoff{Max: 5 * time.Second}
	for ctx.Err() == nil {
		err := c.follow(ctx, &last)
		if ctx.Err() != nil {
			return nil
		}
		c.log.Debug("following the site's offers again", zap.Error(err))
		if backoff.Sleep(ctx, b.Next()) != nil {
			return nil
		}
	}
	return nil
}

// follow reads the site's offers after sequence *last with an ordered
// consumer and caches the package of each, until an error.
func (c *Cache) follow(ctx context.Context, last *uint64) error {
	cfg := jetstream.OrderedConsumerConfig{DeliverPolicy: jetstream.DeliverAllPolicy}
	if *last > 0 {
		cfg.DeliverPolicy, cfg.OptStartSeq = jetstream.DeliverByStartSequencePolicy, *last+1
	}
	cons, err := c.local.OrderedConsumer(ctx, events.StreamJobs, cfg)
	if err != nil {
		return err
	}
	it, err := cons.Messages()
	if err != nil {
		return err
	}
	defer it.Stop()
	go func() { <-ctx.Done(); it.Stop() }()
	for {
		m, err := it.Next()
		if err != nil {
			return err
		}
		if md, err := m.Metadata(); err == nil {
			*last = md.Sequence.Stream
		}
		ev, err := events.Decode(m.Headers(), m.Data())
		if err != nil || ev.Type() != events.TypeJobOffered {
			continue
		}
		job, err := events.ParseJobOffered(ev)
		if err != nil || job.Package == nil {
			continue
		}
		c.ensureRetrying(ctx, *job.Package)
	}
}

// ensureRetrying is Ensure, retried while the hub cannot be reached, until
// ctx ends. A package the hub does not hold is logged and left: the
// site's agents report it missing as they would at the hub.
func (c *Cache) ensureRetrying(ctx context.Context, ref events.PackageRef) {
	err := backoff.Retry(ctx, backoff.Policy{
		AttemptTimeout: 5 * time.Minute,
		Retryable:      func(err error) bool { return !errors.Is(err, jetstream.ErrObjectNotFound) },
	}, func(ctx context.Context) error { return c.Ensure(ctx, ref) })
	if err != nil && ctx.Err() == nil {
		c.log.Warn("package not cached at the site", zap.String("package", events.PackageObjectName(ref.Name, ref.Version)), zap.Error(err))
	}
}

// Ensure copies the package ref from the hub's PCM_PACKAGES to the
// site's, unless the site already holds it with ref's digest.
func (c *Cache) Ensure(ctx context.Context, ref events.PackageRef) error {
	name := events.PackageObjectName(ref.Name, ref.Version)
	local, err := c.local.ObjectStore(ctx, events.BucketPackages)
	if err != nil {
		return fmt.Errorf("%w: the site's %s: %w", ErrCache, events.BucketPackages, err)
	}
	if info, err := local.GetInfo(ctx, name); err == nil && !info.Deleted && info.Metadata[events.PackageMetaSHA256] == ref.SHA256 {
		return nil
	}
	hub, err := c.hub.ObjectStore(ctx, events.BucketPackages)
	if err != nil {
		return fmt.Errorf("%w: the hub's %s: %w", ErrCache, events.BucketPackages, err)
	}
	r, err := hub.Get(ctx, name)
	if err != nil {
		return fmt.Errorf("%w: %s from the hub: %w", ErrCache, name, err)
	}
	defer r.Close()
	info, err := r.Info()
	if err != nil {
		return fmt.Errorf("%w: %s from the hub: %w", ErrCache, name, err)
	}
	if info.Metadata[events.PackageMetaSHA256] != ref.SHA256 {
		return fmt.Errorf("%w: %s: the hub holds digest %s, the job pins %s", ErrCache, name, info.Metadata[events.PackageMetaSHA256], ref.SHA256)
	}
	stored, err := local.Put(ctx, info.ObjectMeta, r)
	if err != nil {
		return fmt.Errorf("%w: storing %s at the site: %w", ErrCache, name, err)
	}
	c.downloads.Add(1)
	c.bytes.Add(int64(stored.Size))
	c.log.Info("package cached at the site", zap.String("package", name), zap.Uint64("bytes", stored.Size))
	return nil
}
