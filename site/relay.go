package site

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/pcm-project/pcm/events"
	"github.com/pcm-project/pcm/internal/backoff"
)

// RelaySeqHeader is the header of each event the relay stores in the
// site's PCM_JOBS: its sequence in PCM_JOBS_HUB, where a restarted relay
// resumes.
const RelaySeqHeader = "Pcm-Site-Relay-Seq"

// Relay passes each job event of the site's copy of the hub's PCM_JOBS
// (PCM_JOBS_HUB) on to the site's own PCM_JOBS, in order, once, and only
// once the package of an offer is at the site: it first copies the
// package from the hub's PCM_PACKAGES into the site's (once per package
// version, whatever the number of clients), so that no agent of the site
// ever sees an offer whose package it cannot fetch from its site broker,
// even when the link is cut right after. Make one with NewRelay; Run does
// the work.
type Relay struct {
	local, hub jetstream.JetStream
	log        *zap.Logger
	// direct: read the hub with direct gets (NewDirectRelay).
	direct bool

	relayed, downloads, bytes atomic.Int64
}

// RelayStats count what a Relay did.
type RelayStats struct {
	// Relayed counts the events passed on to the site's PCM_JOBS.
	Relayed int64
	// Downloads counts the packages copied from the hub; Bytes their content.
	Downloads, Bytes int64
}

// NewRelay returns a Relay from the hub (a JetStream of the hub's domain)
// to local (the site's JetStream).
func NewRelay(local, hub jetstream.JetStream, log *zap.Logger) *Relay {
	if log == nil {
		log = zap.NewNop()
	}
	return &Relay{local: local, hub: hub, log: log}
}

// Stats returns what the relay has done so far.
func (r *Relay) Stats() RelayStats {
	return RelayStats{Relayed: r.relayed.Load(), Downloads: r.downloads.Load(), Bytes: r.bytes.Load()}
}

// Run relays from where the site's PCM_JOBS stops, retrying while
// something fails (the hub cannot be reached for a package), until ctx
// ends; it then returns nil.
func (r *Relay) Run(ctx context.Context) error {
	b := backoff.Backoff{Max: 5 * time.Second}
	for ctx.Err() == nil {
		err := r.follow(ctx)
		if ctx.Err() != nil {
			return nil
		}
		r.log.Debug("relaying again", zap.Error(err))
		if backoff.Sleep(ctx, b.Next()) != nil {
			return nil
		}
	}
	return nil
}

// lastRelayed is the PCM_JOBS_HUB sequence of the last event in the
// site's PCM_JOBS (0: none).
func (r *Relay) lastRelayed(ctx context.Context) (uint64, error) {
	s, err := r.local.Stream(ctx, events.StreamJobs)
	if err != nil {
		return 0, err
	}
	last := s.CachedInfo().State.LastSeq
	if last == 0 {
		return 0, nil
	}
	m, err := s.GetMsg(ctx, last)
	if err != nil {
		return 0, err
	}
	return strconv.ParseUint(m.Header.Get(RelaySeqHeader), 10, 64)
}

// follow relays the events after the last one relayed, until an error.
func (r *Relay) follow(ctx context.Context) error {
	if r.direct {
		return r.followDirect(ctx)
	}
	last, err := r.lastRelayed(ctx)
	if err != nil {
		return fmt.Errorf("reading where the relay stopped: %w", err)
	}
	cfg := jetstream.OrderedConsumerConfig{DeliverPolicy: jetstream.DeliverByStartSequencePolicy, OptStartSeq: last + 1}
	cons, err := r.local.OrderedConsumer(ctx, events.StreamJobsHub, cfg)
	if err != nil {
		return err
	}
	it, err := cons.Messages()
	if err != nil {
		return err
	}
	defer it.Stop()
	stop := context.AfterFunc(ctx, it.Stop)
	defer stop()
	for {
		m, err := it.Next()
		if err != nil {
			return err
		}
		md, err := m.Metadata()
		if err != nil {
			return err
		}
		if md.Sequence.Stream <= last {
			continue
		}
		if ref := packageOf(m.Headers(), m.Data()); ref != nil {
			r.ensureRetrying(ctx, *ref)
			if ctx.Err() != nil {
				return ctx.Err()
			}
		}
		if err := r.pass(ctx, m.Subject(), m.Data(), m.Headers(), md.Sequence.Stream); err != nil {
			return err
		}
		last = md.Sequence.Stream
	}
}

// packageOf is the package of an offer, nil for any other event.
func packageOf(h nats.Header, data []byte) *events.PackageRef {
	ev, err := events.Decode(h, data)
	if err != nil || ev.Type() != events.TypeJobOffered {
		return nil
	}
	job, err := events.ParseJobOffered(ev)
	if err != nil {
		return nil
	}
	return job.Package
}

// pass stores an event in the site's PCM_JOBS with its subject, body and
// headers (its Nats-Msg-Id among them, so a resend is stored once),
// without the headers JetStream added or checks at the hub.
func (r *Relay) pass(ctx context.Context, subject string, data []byte, h nats.Header, seq uint64) error {
	out := &nats.Msg{Subject: subject, Data: data, Header: nats.Header{}}
	for k, v := range h {
		if strings.HasPrefix(k, "Nats-") && k != jetstream.MsgIDHeader {
			continue
		}
		out.Header[k] = v
	}
	out.Header.Set(RelaySeqHeader, strconv.FormatUint(seq, 10))
	if out.Header.Get(jetstream.MsgIDHeader) == "" {
		out.Header.Set(jetstream.MsgIDHeader, "site-relay-"+strconv.FormatUint(seq, 10))
	}
	err := backoff.RetryBroker(ctx, func(ctx context.Context) error {
		_, err := r.local.PublishMsg(ctx, out)
		return err
	})
	if err != nil {
		return fmt.Errorf("relaying %s #%d into the site's %s: %w", events.StreamJobsHub, seq, events.StreamJobs, err)
	}
	r.relayed.Add(1)
	return nil
}

// ensureRetrying is Ensure, retried while the hub cannot be reached, until
// ctx ends. A package the hub does not hold is logged and left: the
// site's agents report it missing as they would at the hub.
func (r *Relay) ensureRetrying(ctx context.Context, ref events.PackageRef) {
	err := backoff.Retry(ctx, backoff.Policy{
		Backoff:        backoff.Backoff{Max: 2 * time.Second},
		AttemptTimeout: 10 * time.Minute,
		Retryable:      func(err error) bool { return !errors.Is(err, jetstream.ErrObjectNotFound) },
		OnRetry: func(err error, _ time.Duration) {
			r.log.Debug("package not cached yet", zap.String("package", events.PackageObjectName(ref.Name, ref.Version)), zap.Error(err))
		},
	}, func(ctx context.Context) error { return r.Ensure(ctx, ref) })
	if err != nil && ctx.Err() == nil {
		r.log.Warn("package not cached at the site", zap.String("package", events.PackageObjectName(ref.Name, ref.Version)), zap.Error(err))
	}
}

// Ensure copies the package ref from the hub's PCM_PACKAGES to the
// site's, unless the site already holds it with ref's digest.
func (r *Relay) Ensure(ctx context.Context, ref events.PackageRef) error {
	name := events.PackageObjectName(ref.Name, ref.Version)
	local, err := r.local.ObjectStore(ctx, events.BucketPackages)
	if err != nil {
		return fmt.Errorf("%w: the site's %s: %w", ErrCache, events.BucketPackages, err)
	}
	if info, err := local.GetInfo(ctx, name); err == nil && info.Metadata[events.PackageMetaSHA256] == ref.SHA256 {
		return nil
	}
	if r.direct {
		return r.ensureDirect(ctx, local, ref, name)
	}
	hub, err := r.hub.ObjectStore(ctx, events.BucketPackages)
	if err != nil {
		return fmt.Errorf("%w: the hub's %s: %w", ErrCache, events.BucketPackages, err)
	}
	rd, err := hub.Get(ctx, name)
	if err != nil {
		return fmt.Errorf("%w: %s from the hub: %w", ErrCache, name, err)
	}
	defer rd.Close()
	info, err := rd.Info()
	if err != nil {
		return fmt.Errorf("%w: %s from the hub: %w", ErrCache, name, err)
	}
	if info.Metadata[events.PackageMetaSHA256] != ref.SHA256 {
		return fmt.Errorf("%w: %s: the hub holds digest %s, the job pins %s", ErrCache, name, info.Metadata[events.PackageMetaSHA256], ref.SHA256)
	}
	stored, err := local.Put(ctx, info.ObjectMeta, rd)
	if err != nil {
		return fmt.Errorf("%w: storing %s at the site: %w", ErrCache, name, err)
	}
	r.downloads.Add(1)
	r.bytes.Add(int64(stored.Size))
	r.log.Info("package cached at the site", zap.String("package", name), zap.Uint64("bytes", stored.Size))
	return nil
}
