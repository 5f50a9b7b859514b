package controller

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"
	"go.uber.org/zap"

	"github.com/pcm-project/pcm/agent/lock"
	"github.com/pcm-project/pcm/events"
	"github.com/pcm-project/pcm/internal/backoff"
	"github.com/pcm-project/pcm/internal/offers"
	"github.com/pcm-project/pcm/internal/streamread"
	"github.com/pcm-project/pcm/publisher"
)

// Config configures a Controller.
type Config struct {
	// Name is the controller's name in its halts' source
	// (/pcm/controller/<name>); a valid id. Default "controller".
	Name string
	// Signer signs its halts: an nkeys user or account key pair with its
	// seed (pcm keys new). Agents accept its halts when its public key is
	// among their controller keys (or their trusted publisher keys). Nil
	// halts unsigned: only agents that run unsigned jobs believe them.
	Signer nkeys.KeyPair
	// Lease is the lease of its leadership (whole seconds, at least one);
	// default lock.DefaultLease. Another controller takes over within it
	// after this one dies.
	Lease time.Duration
	// Logger receives what it does; nil discards it.
	Logger *zap.Logger
}

func (c *Config) setDefaults() {
	if c.Name == "" {
		c.Name = "controller"
	}
	if c.Lease == 0 {
		c.Lease = lock.DefaultLease
	}
	if c.Logger == nil {
		c.Logger = zap.NewNop()
	}
}

// Stats says what a Controller does, for tests and monitoring.
type Stats struct {
	// Leading is true while it holds the leadership; Leaderships counts
	// the times it took it.
	Leading     bool
	Leaderships int64
	// Watched is how many staged rollouts it watches now.
	Watched int
	// Halts counts the halts it stored.
	Halts int64
	// Statuses counts the status messages it has read (those of the
	// rollouts it does not watch too).
	Statuses int64
}

// Controller is the rollout controller (see the package doc).
type Controller struct {
	js     jetstream.JetStream
	cfg    Config
	log    *zap.Logger
	pub    *publisher.Publisher
	locker *lock.Locker

	leading     atomic.Bool
	leaderships atomic.Int64
	watched     atomic.Int64
	halts       atomic.Int64
	statuses    atomic.Int64
}

// New returns a Controller working through js: an admin's connection of
// the pcm account (it stores on halt subjects and holds a key of
// PCM_CONTROLLER, which only the pcm account reaches). It does no I/O.
func New(js jetstream.JetStream, cfg Config) (*Controller, error) {
	cfg.setDefaults()
	pub, err := publisher.New(js, publisher.Config{Name: cfg.Name, Signer: cfg.Signer, Controller: true})
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	locker, err := lock.New(js, lock.Config{Bucket: events.BucketController, Client: events.ControllerLeaderKey, Lease: cfg.Lease, Logger: cfg.Logger.Named("lease")})
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	return &Controller{js: js, cfg: cfg, log: cfg.Logger, pub: pub, locker: locker}, nil
}

// Stats returns what the controller has done so far.
func (c *Controller) Stats() Stats {
	return Stats{Leading: c.leading.Load(), Leaderships: c.leaderships.Load(), Watched: int(c.watched.Load()), Halts: c.halts.Load(),
		Statuses: c.statuses.Load()}
}

// Signer is the public key the controller signs its halts with, "" when
// it halts unsigned.
func (c *Controller) Signer() string { return c.pub.Signer() }

// Run waits for the leadership, leads while it holds it (watching the
// staged rollouts and halting those that pass their threshold), and waits
// for it again when it loses it, until ctx ends: then it releases the
// leadership and returns nil. It returns an error only when it cannot work
// at all (its bucket refuses per-key TTLs).
func (c *Controller) Run(ctx context.Context) error {
	retry := backoff.Backoff{Initial: 100 * time.Millisecond, Max: 5 * time.Second}
	host, _ := os.Hostname()
	for ctx.Err() == nil {
		lease, err := c.locker.Acquire(ctx, events.LockInfo{Holder: events.HolderController, User: c.cfg.Name, Host: host}, func(h events.LockInfo) {
			c.log.Info("another controller leads; waiting for its lease", zap.String("leader", h.User), zap.String("host", h.Host), zap.Time("since", h.Since))
		})
		switch {
		case ctx.Err() != nil:
			return nil
		case errors.Is(err, lock.ErrNoTTL):
			return fmt.Errorf("the controller's bucket %s: %w (run pcm broker provision)", events.BucketController, err)
		case err != nil:
			c.log.Warn("cannot take the controller's lease; retrying", zap.Error(err))
			if retry.Wait(ctx) != nil {
				return nil
			}
			continue
		}
		retry.Reset()
		c.leaderships.Add(1)
		c.leading.Store(true)
		c.log.Info("leading: watching the staged rollouts", zap.String("name", c.cfg.Name), zap.String("signer", c.Signer()))
		lctx, stop := context.WithCancel(ctx)
		go func() {
			select {
			case <-lease.Lost():
				stop()
			case <-lctx.Done():
			}
		}()
		err = c.lead(lctx)
		stop()
		c.leading.Store(false)
		c.watched.Store(0)
		rctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_ = lease.Release(rctx)
		cancel()
		switch {
		case ctx.Err() != nil:
			return nil
		case lease.Err() != nil:
			c.log.Warn("lost the controller's lease: no longer leading", zap.Error(lease.Err()))
		case err != nil:
			c.log.Warn("stopped leading; reading again", zap.Error(err))
		}
		if retry.Wait(ctx) != nil {
			return nil
		}
	}
	return nil
}

// pruneEvery is how often expired rollouts are forgotten.
const pruneEvery = 30 * time.Second

// statusMargin starts the read of the statuses this much before the
// oldest staged rollout (or now): the broker's clock and this one may
// differ.
const statusMargin = time.Minute

// lead watches the staged rollouts until ctx ends or a read fails: it
// follows PCM_JOBS (offers, cancellations, halts and resumes) from the
// beginning and, once it has read them, PCM_STATUS from the oldest staged
// rollout on, and halts each rollout as soon as it passes its threshold.
func (c *Controller) lead(ctx context.Context) error {
	jobs, err := streamread.Follow(ctx, c.js, events.StreamJobs, streamread.FollowOptions{Subjects: events.JobsStreamSubjects()})
	if err != nil {
		return fmt.Errorf("following %s: %w", events.StreamJobs, err)
	}
	defer jobs.Stop()
	var statuses *streamread.Follower
	defer func() {
		if statuses != nil {
			statuses.Stop()
		}
	}()
	var statusUpdates <-chan *streamread.Msg
	r := newRollouts()
	tick := time.NewTicker(pruneEvery)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case m, ok := <-jobs.Updates():
			if !ok {
				return followErr(ctx, events.StreamJobs, jobs)
			}
			if m != nil {
				if job := c.onJobEvent(r, *m); job != "" && statuses != nil {
					// Its statuses may have been heard before its offer
					// (two followers): they are read once more.
					if err := c.backfill(ctx, r, job); err != nil {
						return err
					}
				}
				break
			}
			if statuses != nil {
				break
			}
			start := time.Now().Add(-statusMargin)
			if t, ok := r.oldest(); ok && t.Before(start) {
				start = t.Add(-statusMargin)
			}
			statuses, err = streamread.Follow(ctx, c.js, events.StreamStatus, streamread.FollowOptions{
				Options: streamread.Options{StartTime: start}, Subjects: events.StatusStreamSubjects()})
			if err != nil {
				return fmt.Errorf("following %s: %w", events.StreamStatus, err)
			}
			statusUpdates = statuses.Updates()
		case m, ok := <-statusUpdates:
			if !ok {
				return followErr(ctx, events.StreamStatus, statuses)
			}
			if m != nil {
				c.onStatus(r, *m)
			}
		case <-tick.C:
			r.prune(time.Now())
		}
		c.watched.Store(int64(len(r.jobs)))
		c.haltDue(ctx, r)
	}
}

// onJobEvent feeds a PCM_JOBS message to the rollouts; it returns the id
// of the rollout it starts watching, if any.
func (c *Controller) onJobEvent(r *rollouts, m streamread.Msg) (watched string) {
	if job, ok := strings.CutPrefix(m.Subject, events.HaltSubject("")); ok {
		ev, err := events.Decode(m.Header, m.Data)
		if err == nil && (ev.Type() == events.TypeJobHalted || ev.Type() == events.TypeJobResumed) {
			r.halt(job, ev.Type() == events.TypeJobHalted, m.Time)
		}
		return ""
	}
	e, ok := offers.EntryOf(m, nil)
	switch {
	case !ok:
	case e.Offer != nil:
		if r.offer(*e.Offer, m.Time) {
			return e.Offer.JobID
		}
	case e.Cancel != nil:
		r.cancelled(e.Cancel.JobID)
	}
	return ""
}

// backfill reads the statuses of job stored so far, for a rollout whose
// offer arrived after the statuses' follower started: the follower may
// have passed some of them before the offer was heard, and a status
// counted twice is counted once (the latest per client).
func (c *Controller) backfill(ctx context.Context, r *rollouts, job string) error {
	err := streamread.Scan(ctx, c.js, events.StreamStatus, streamread.Options{Filters: []string{events.StatusSubjectsOfJob(job)}},
		func(m streamread.Msg) error {
			c.onStatus(r, m)
			return nil
		})
	if err != nil && ctx.Err() == nil {
		return fmt.Errorf("reading the statuses of job %s in %s: %w", job, events.StreamStatus, err)
	}
	return nil
}

// onStatus feeds a PCM_STATUS message to the rollouts; the statuses of
// jobs it does not watch are not decoded.
func (c *Controller) onStatus(r *rollouts, m streamread.Msg) {
	c.statuses.Add(1)
	if i := strings.LastIndexByte(m.Subject, '.'); i < 0 || !r.watches(m.Subject[i+1:]) {
		return
	}
	ev, err := events.Decode(m.Header, m.Data)
	if err != nil {
		return
	}
	if st, err := events.ParseJobStatus(ev); err == nil && events.StatusSubject(st.ClientID, st.JobID) == m.Subject {
		r.status(st, m.Time)
	}
}

// haltDue stores the halts the rollouts ask for. One that fails is asked
// for again at the next event or tick.
func (c *Controller) haltDue(ctx context.Context, r *rollouts) {
	for _, h := range r.due(time.Now()) {
		did, err := c.pub.Halt(ctx, h)
		switch {
		case err != nil:
			r.retry(h.JobID)
			if ctx.Err() == nil {
				c.log.Warn("cannot halt a rollout yet", zap.String("job", h.JobID), zap.Error(err))
			}
		case did:
			c.halts.Add(1)
			c.log.Warn("rollout halted", zap.String("job", h.JobID), zap.String("reason", h.Reason),
				zap.Int("failed", h.Failed), zap.Int("finished", h.Finished))
		}
	}
}

// followErr says why a follower stopped.
func followErr(ctx context.Context, stream string, f *streamread.Follower) error {
	if ctx.Err() != nil {
		return nil
	}
	if err := f.Err(); err != nil {
		return fmt.Errorf("following %s: %w", stream, err)
	}
	return fmt.Errorf("following %s: stopped", stream)
}
