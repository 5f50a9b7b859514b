package lock

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/pcm-project/pcm/events"
	"github.com/pcm-project/pcm/internal/kvkey"
)

// DefaultLease is the lease used when Config.Lease is zero.
const DefaultLease = 15 * time.Second

// MinLease is the shortest lease: the server's minimum per-message TTL.
const MinLease = time.Second

// Config configures a Locker.
type Config struct {
	// Client is the client id: the lock's key in the bucket (for another
	// bucket than PCM_LOCKS, the lease's key).
	Client string
	// Bucket is the KV bucket of the key: default events.BucketLocks, the
	// clients' locks. The rollout controller's leadership is a lease on
	// events.ControllerLeaderKey of events.BucketController.
	Bucket string
	// Lease is how long the lock outlives its holder's last renewal. Zero
	// means DefaultLease. It must be a whole number of seconds, at least
	// MinLease: the server keeps per-key TTLs in whole seconds.
	Lease time.Duration
	// Logger receives what the lock has to say (a lost lease, failing
	// renewals, waits). Nil means no logging.
	Logger *zap.Logger
}

func (c *Config) setDefaults() {
	if c.Bucket == "" {
		c.Bucket = events.BucketLocks
	}
	if c.Lease == 0 {
		c.Lease = DefaultLease
	}
	if c.Logger == nil {
		c.Logger = zap.NewNop()
	}
}

// Validate checks the config (after defaults are applied: a zero Lease is valid).
func (c Config) Validate() error {
	if err := events.ValidID("client id", c.Client); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	if c.Bucket != "" {
		if err := events.ValidID("bucket", c.Bucket); err != nil {
			return fmt.Errorf("%w: %w", ErrInvalidConfig, err)
		}
	}
	switch {
	case c.Lease == 0:
	case c.Lease < MinLease:
		return fmt.Errorf("%w: lease %s is shorter than the server's minimum TTL of %s: use at least %s",
			ErrInvalidConfig, c.Lease, MinLease, MinLease)
	case c.Lease%time.Second != 0:
		return fmt.Errorf("%w: lease %s is not a whole number of seconds (the server truncates per-key TTLs to seconds): use e.g. %s",
			ErrInvalidConfig, c.Lease, c.Lease.Round(time.Second))
	}
	return nil
}

// Locker takes and waits for the lock of one client. It is safe for
// concurrent use; each Lease it hands out is independent.
type Locker struct {
	js  jetstream.JetStream
	key *kvkey.Key
	cfg Config
	log *zap.Logger

	attempts atomic.Int64 // create attempts, for tests of the no-polling rule
}

// name says which lock the config is, for messages: a client's lock, or
// a lease of another bucket.
func (c Config) name() string {
	if c.Bucket == "" || c.Bucket == events.BucketLocks {
		return fmt.Sprintf("client %q's lock", c.Client)
	}
	return fmt.Sprintf("the lease %q of %s", c.Client, c.Bucket)
}

// New returns a Locker for the lock of cfg.Client: the key <client> of the
// PCM_LOCKS bucket (or of cfg.Bucket; it must allow per-key TTLs), reached
// through js without binding the bucket (a client may reach only its own
// key). New does no I/O.
func New(js jetstream.JetStream, cfg Config) (*Locker, error) {
	if js == nil {
		return nil, fmt.Errorf("%w: a JetStream context is required", ErrInvalidConfig)
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg.setDefaults()
	return &Locker{
		js:  js,
		key: kvkey.New(js, cfg.Bucket, cfg.Client),
		cfg: cfg,
		log: cfg.Logger.With(zap.String("client", cfg.Client)),
	}, nil
}

// Lease returns the lease duration in use.
func (l *Locker) Lease() time.Duration { return l.cfg.Lease }

// TryAcquire takes the lock if it is free. When it is held it returns a
// *HeldError (matching ErrHeld) saying who holds it. Unset fields of info get
// defaults (PID: this process, Host: this host, Since: now).
func (l *Locker) TryAcquire(ctx context.Context, info events.LockInfo) (*Lease, error) {
	info, err := prepare(info)
	if err != nil {
		return nil, err
	}
	return l.tryAcquire(ctx, info, newLeaseID())
}

// tryAcquire creates the key for the lease id. When the key exists and holds
// this very lease id (an earlier attempt landed but its reply was lost), it
// takes the lease over by renewing it.
func (l *Locker) tryAcquire(ctx context.Context, info events.LockInfo, id string) (*Lease, error) {
	data, err := json.Marshal(record{LockInfo: info, Lease: id})
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidInfo, err)
	}
	const rounds = 5 // the key freed between create and read: try again, a few times
	for range rounds {
		l.attempts.Add(1)
		sent := time.Now()
		rev, err := l.key.Create(ctx, data, l.cfg.Lease)
		if err == nil {
			return l.startLease(info, id, data, rev, sent), nil
		}
		if !isConflict(err) {
			return nil, l.mapErr(err)
		}
		e, err := l.key.Get(ctx)
		if errors.Is(err, kvkey.ErrNotFound) {
			continue // freed meanwhile
		}
		if err != nil {
			return nil, l.mapErr(err)
		}
		r, derr := decodeRecord(l.cfg, e.Value)
		if derr == nil && r.Lease == id {
			// Our own earlier create: renew it to know from when the lease runs.
			sent := time.Now()
			rev, err := l.publish(ctx, data, e.Revision)
			if err != nil {
				return nil, l.mapErr(err)
			}
			return l.startLease(info, id, data, rev, sent), nil
		}
		return nil, &HeldError{Client: l.cfg.Client, Info: r.LockInfo, Revision: e.Revision, expires: l.expiry(e)}
	}
	return nil, &HeldError{Client: l.cfg.Client}
}

// expiry is when the holding read as e ends unless renewed: its write time
// plus its TTL (the lease when the entry does not say), at most a lease
// from now (the clocks of the broker and this machine may differ).
func (l *Locker) expiry(e kvkey.Entry) time.Time {
	ttl := e.TTL
	if ttl <= 0 {
		ttl = l.cfg.Lease
	}
	end := e.Created.Add(ttl)
	if latest := time.Now().Add(ttl); end.After(latest) {
		end = latest
	}
	return end
}

// Current reads the lock: who holds it and the key's revision; ok is false
// when the lock is free. A key whose value is not a lock record counts as
// held: ok is true and err wraps ErrBadValue.
func (l *Locker) Current(ctx context.Context) (info events.LockInfo, revision uint64, ok bool, err error) {
	e, err := l.key.Get(ctx)
	if errors.Is(err, kvkey.ErrNotFound) {
		return events.LockInfo{}, 0, false, nil
	}
	if err != nil {
		return events.LockInfo{}, 0, false, l.mapErr(err)
	}
	r, err := decodeRecord(l.cfg, e.Value)
	if err != nil {
		return events.LockInfo{}, e.Revision, true, err
	}
	return r.LockInfo, e.Revision, true, nil
}

// publish writes data on the key if its last revision is rev, with the lease
// as TTL, and returns the new revision.
func (l *Locker) publish(ctx context.Context, data []byte, rev uint64) (uint64, error) {
	return l.key.Update(ctx, data, rev, l.cfg.Lease)
}

// connected tells whether the connection is up. A publish made while it is
// down is buffered and could land long after the caller gave up on it.
func (l *Locker) connected() bool {
	nc := l.js.Conn()
	return nc == nil || nc.IsConnected()
}

// isConflict tells whether err is a failed revision expectation.
func isConflict(err error) bool { return errors.Is(err, kvkey.ErrConflict) }

// mapErr maps the key's refusals to this package's sentinels.
func (l *Locker) mapErr(err error) error {
	if errors.Is(err, kvkey.ErrTTLDisabled) {
		return fmt.Errorf("%w: %w", ErrNoTTL, err)
	}
	return err
}
