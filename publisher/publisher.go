package publisher

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"
	"github.com/oklog/ulid/v2"

	"github.com/pcm-project/pcm/events"
	"github.com/pcm-project/pcm/fleet"
	"github.com/pcm-project/pcm/internal/backoff"
	"github.com/pcm-project/pcm/packages"
)

// Defaults applied by Publish to fields left zero: the job's own (see
// events.JobOffered.WithDefaults).
const (
	// DefaultExpiry is how long after offer_after a job expires when no
	// expire_after is given.
	DefaultExpiry = events.DefaultExpiry
	// DefaultTimeout is a command line's timeout when none is given.
	DefaultTimeout = events.DefaultTimeout
	// defaultRequestTimeout bounds a call whose ctx has no deadline: the
	// retries of a call that rides through a leader election (a new
	// stream leader is usually up within seconds) fit in it.
	defaultRequestTimeout = 30 * time.Second
)

// Config configures a Publisher.
type Config struct {
	// Name identifies the publisher in the events' source
	// (/pcm/publisher/<name>); a valid id. Default "pcm".
	Name string
	// Now returns the current time; default time.Now. For tests.
	Now func() time.Time
	// Signer, when set, signs every offer and cancellation (events.Sign):
	// an nkeys user or account key pair with its seed (ReadSigningKey).
	// Agents that trust its public key run the jobs; agents with trusted
	// keys refuse unsigned ones. Nil publishes unsigned events.
	Signer nkeys.KeyPair
	// RequireEnrolled refuses a job one of whose targets matches no
	// enrolled client (ErrNoSuchTarget): a mistyped client or group is
	// refused instead of waiting for a client that will never come. Off,
	// a job may name clients and groups enrolled later.
	RequireEnrolled bool
	// Controller marks the rollout controller: its events' source is
	// /pcm/controller/<name> (events.ControllerSource), and it only halts
	// (Publish, Cancel and Resume refuse with ErrController).
	Controller bool
}

func (c *Config) setDefaults() {
	if c.Name == "" {
		c.Name = "pcm"
	}
	if c.Now == nil {
		c.Now = time.Now
	}
}

// Validate checks the configuration.
func (c Config) Validate() error {
	if err := events.ValidID("publisher name", c.Name); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidJob, err)
	}
	if c.Signer != nil {
		if _, err := events.SignerOf(c.Signer); err != nil {
			return fmt.Errorf("signing key: %w", err)
		}
	}
	return nil
}

// Publisher publishes and cancels jobs.
type Publisher struct {
	js  jetstream.JetStream
	cfg Config

	mu        sync.Mutex
	retention time.Duration // PCM_JOBS max age, read once; 0 = unlimited
	haveInfo  bool
}

// New returns a Publisher publishing through js.
func New(js jetstream.JetStream, cfg Config) (*Publisher, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Publisher{js: js, cfg: cfg}, nil
}

// Name is the publisher's name, as it appears in the events' source.
func (p *Publisher) Name() string { return p.cfg.Name }

// source is the source attribute of the publisher's events.
func (p *Publisher) source() string {
	if p.cfg.Controller {
		return events.ControllerSource(p.cfg.Name)
	}
	return events.PublisherSource(p.cfg.Name)
}

// Prepare gives job a new sortable job id when it has none, applies the
// job defaults (events.JobOffered.WithDefaults: offer_after now,
// expire_after a week later, a one-hour timeout) and checks every rule, the
// clock and the jobs stream's retention, without sending anything. A job
// naming a package gets it resolved in PCM_PACKAGES and pinned: its sha256
// and size are filled in, or, when the job gives them, checked
// (packages.ErrNotFound, packages.ErrMismatch). With Config.RequireEnrolled,
// every target must match an enrolled client (ErrNoSuchTarget). It returns
// the job as it would be published.
func (p *Publisher) Prepare(ctx context.Context, job events.JobOffered) (events.JobOffered, error) {
	now := p.cfg.Now().UTC()
	if job.JobID == "" {
		job.JobID = ulid.Make().String()
	}
	job = job.WithDefaults(now)
	// The package is checked last, against PCM_PACKAGES: every local rule
	// first, so a bad job fails without a round trip.
	local := job
	local.Package = nil
	if err := local.Validate(); err != nil {
		return job, fmt.Errorf("%w: %w", ErrInvalidJob, err)
	}
	if !job.ExpireAfter.After(now) {
		return job, fmt.Errorf("%w: expire_after %s is not in the future: give a later --expire-after",
			ErrExpired, job.ExpireAfter.Format(time.RFC3339))
	}
	retention, err := p.jobsRetention(ctx)
	if err != nil {
		return job, err
	}
	if retention > 0 && job.ExpireAfter.Sub(now) > retention {
		return job, fmt.Errorf("%w: expire_after %s is %s from now but %s keeps jobs for %s: expire earlier, or provision a longer --jobs-max-age",
			ErrBeyondRetention, job.ExpireAfter.Format(time.RFC3339), job.ExpireAfter.Sub(now).Round(time.Hour),
			events.StreamJobs, retention)
	}
	if err := p.checkRequires(ctx, job); err != nil {
		return job, err
	}
	if job.Package != nil {
		ref, err := packages.NewStore(p.js).Pin(ctx, *job.Package)
		if err == nil {
			err = ref.Validate()
		}
		if errors.Is(err, events.ErrInvalidPackage) {
			err = fmt.Errorf("%w: %w", ErrInvalidJob, err)
		}
		if err != nil {
			return job, err
		}
		job.Package = &ref
	}
	// The event itself (its size above all) is a local rule too: checked
	// before the enrollments are read.
	if _, err := events.NewJobOffered(p.cfg.Name, job); err != nil {
		return job, fmt.Errorf("%w: %w", ErrInvalidJob, err)
	}
	if p.cfg.RequireEnrolled {
		if err := p.checkTargets(ctx, job.Targets); err != nil {
			return job, err
		}
	}
	return job, nil
}

// Publish validates job (see Prepare), signs its offer when the publisher
// has a Signer, then publishes it once per target, each with a Nats-Msg-Id
// derived from the job id and the target so a retried publish is stored
// once. It returns the job as published (id and defaults filled in; on an
// error, as far as it was prepared, so its JobID names the job when it has
// one). When some targets were stored and one failed, the error is a
// *PartialError saying which.
func (p *Publisher) Publish(ctx context.Context, job events.JobOffered) (events.JobOffered, error) {
	ctx, cancel := backoff.WithDefaultTimeout(ctx, defaultRequestTimeout)
	defer cancel()
	if p.cfg.Controller {
		return job, fmt.Errorf("%w: it may halt a rollout, never publish a job", ErrController)
	}
	job, err := p.Prepare(ctx, job)
	if err != nil {
		return job, err
	}
	ev, err := events.NewJobOffered(p.cfg.Name, job)
	if err != nil {
		return job, fmt.Errorf("%w: %w", ErrInvalidJob, err)
	}
	if err := p.sign(&ev); err != nil {
		return job, err
	}
	return job, p.publishToTargets(ctx, job.JobID, job.Targets, func(t events.Target) string {
		return offerMsgID(job.JobID, t)
	}, ev)
}

// Cancel publishes a pcm.job.cancelled.v1 for jobID, signed when the
// publisher has a Signer: first on the job's own cancellation subject
// (events.CancelSubject), which every agent reads before it runs the job,
// so that the cancellation holds for clients offline now, enrolled later or
// about to start; then on the targets of its offer, which it finds in the
// jobs stream (internal/offers: a ULID job id, as Publish assigns, starts
// the scan just before its time), so that agents holding the offer hear it at once. Agents that
// have not started the job report it cancelled and never run it.
func (p *Publisher) Cancel(ctx context.Context, jobID, reason string) error {
	ctx, cancel := backoff.WithDefaultTimeout(ctx, defaultRequestTimeout)
	defer cancel()
	if err := events.ValidID("job id", jobID); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidJob, err)
	}
	if p.cfg.Controller {
		return fmt.Errorf("%w: it may halt a rollout, never cancel a job", ErrController)
	}
	offer, err := p.find(ctx, jobID)
	if err != nil {
		return err
	}
	c := events.JobCancelled{JobID: jobID, Reason: reason, Targets: offer.Job.Targets}
	ev, err := events.NewJobCancelled(p.cfg.Name, c)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidJob, err)
	}
	if err := p.sign(&ev); err != nil {
		return err
	}
	msg, err := events.NewMsg(events.CancelSubject(jobID), ev, cancelMsgID(jobID, nil))
	if err == nil {
		err = p.publishMsg(ctx, msg)
	}
	if err != nil {
		if errors.Is(err, jetstream.ErrNoStreamResponse) || errors.Is(err, jetstream.ErrStreamNotFound) {
			err = fmt.Errorf("%w: no stream answered on %s: run pcm broker provision to add it to %s (%w)",
				ErrNotProvisioned, events.CancelSubject(jobID), events.StreamJobs, err)
		}
		return fmt.Errorf("%w: cancellation of job %s: %w", ErrPublish, jobID, err)
	}
	return p.publishToTargets(ctx, jobID, c.Targets, func(t events.Target) string {
		return cancelMsgID(jobID, &t)
	}, ev)
}

// checkTargets refuses targets that match no enrolled client, naming them
// and, when a group is missed, the groups clients are enrolled in.
func (p *Publisher) checkTargets(ctx context.Context, targets []events.Target) error {
	// Read like every broker call of a publish: through a leader election.
	var enrolled map[string]fleet.Enrollment
	if err := backoff.RetryBroker(ctx, func(ctx context.Context) error {
		var err error
		enrolled, err = fleet.ListEnrollments(ctx, p.js)
		return err
	}); err != nil {
		return err
	}
	unmatched := fleet.Unmatched(enrolled, targets)
	if len(unmatched) == 0 {
		return nil
	}
	groups := map[string]bool{}
	for _, e := range enrolled {
		for _, g := range e.Groups {
			groups[g] = true
		}
	}
	known := slices.Sorted(maps.Keys(groups))
	var why []string
	groupMissed := false
	for _, t := range unmatched {
		switch t.Kind {
		case events.TargetClient:
			why = append(why, "client "+t.Name+" is not enrolled")
		case events.TargetGroup:
			groupMissed = true
			why = append(why, "group "+t.Name+" has no enrolled client")
		default:
			why = append(why, "no client is enrolled")
		}
	}
	s := strings.Join(why, "; ")
	if groupMissed && len(known) > 0 {
		s += " (groups with clients: " + strings.Join(known, ", ") + ")"
	}
	return fmt.Errorf("%w: %s", ErrNoSuchTarget, s)
}

// sign signs ev with the configured signer, if any.
func (p *Publisher) sign(ev *event.Event) error {
	if p.cfg.Signer == nil {
		return nil
	}
	if err := events.Sign(ev, p.cfg.Signer); err != nil {
		return fmt.Errorf("signing event %s: %w", ev.ID(), err)
	}
	return nil
}

// Signer is the public key the publisher signs with, or "" when it
// publishes unsigned events.
func (p *Publisher) Signer() string {
	if p.cfg.Signer == nil {
		return ""
	}
	key, _ := events.SignerOf(p.cfg.Signer)
	return key
}

// offerMsgID is the Nats-Msg-Id of a job's offer to one target.
func offerMsgID(job string, t events.Target) string { return "offer." + job + "." + t.String() }

// cancelMsgID is the Nats-Msg-Id of a job's cancellation to one target, or
// on the job's cancellation subject when t is nil: cancelling twice stores
// one cancellation.
func cancelMsgID(job string, t *events.Target) string {
	if t == nil {
		return "cancel." + job
	}
	return "cancel." + job + "." + t.String()
}

func (p *Publisher) publishToTargets(ctx context.Context, jobID string, targets []events.Target,
	msgID func(events.Target) string, ev event.Event) error {
	var stored []events.Target
	targets = dedupeTargets(targets)
	for i, t := range targets {
		msg, err := events.NewMsg(events.JobSubject(t), ev, msgID(t))
		if err == nil {
			err = p.publishMsg(ctx, msg)
		}
		if err != nil {
			if errors.Is(err, jetstream.ErrNoStreamResponse) || errors.Is(err, jetstream.ErrStreamNotFound) {
				err = fmt.Errorf("%w: no stream answered on %s: run pcm broker provision (%w)", ErrNotProvisioned, events.JobSubject(t), err)
			}
			if len(stored) == 0 && i == 0 {
				return fmt.Errorf("%w: job %s to %s: %w", ErrPublish, jobID, t, err)
			}
			return &PartialError{JobID: jobID, Stored: stored, Failed: t, NotSent: targets[i+1:], Err: err}
		}
		stored = append(stored, t)
	}
	return nil
}

// publishMsg publishes msg and waits for its PubAck, retrying until ctx's
// deadline while no stream answers in time (a stream leader changing in a
// cluster): the retry carries the same Nats-Msg-Id, so it is stored once.
func (p *Publisher) publishMsg(ctx context.Context, msg *nats.Msg) error {
	return backoff.RetryBroker(ctx, func(ctx context.Context) error {
		_, err := p.js.PublishMsg(ctx, msg)
		return err
	})
}

func dedupeTargets(ts []events.Target) []events.Target {
	seen := map[events.Target]bool{}
	out := make([]events.Target, 0, len(ts))
	for _, t := range ts {
		if !seen[t] {
			seen[t] = true
			out = append(out, t)
		}
	}
	return out
}

// jobsRetention reads PCM_JOBS's max age once.
func (p *Publisher) jobsRetention(ctx context.Context) (time.Duration, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.haveInfo {
		return p.retention, nil
	}
	var s jetstream.Stream
	err := backoff.RetryBroker(ctx, func(ctx context.Context) (err error) {
		s, err = p.js.Stream(ctx, events.StreamJobs)
		return err
	})
	if err != nil {
		if errors.Is(err, jetstream.ErrStreamNotFound) {
			return 0, fmt.Errorf("%w: stream %s does not exist: run pcm broker provision", ErrNotProvisioned, events.StreamJobs)
		}
		return 0, fmt.Errorf("%w: reading %s: %w", ErrPublish, events.StreamJobs, err)
	}
	p.retention = s.CachedInfo().Config.MaxAge
	p.haveInfo = true
	return p.retention, nil
}
