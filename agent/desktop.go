package agent

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/pcm-project/pcm/agent/lock"
	"github.com/pcm-project/pcm/agent/pkgcache"
	"github.com/pcm-project/pcm/events"
	"github.com/pcm-project/pcm/internal/offers"
)

// DefaultGrace is how long the desktop warns the user before it runs a
// mandatory job.
const DefaultGrace = 5 * time.Minute

// BusyNotice is what the desktop tells the user when the service holds the
// lock; %s is the job.
const BusyNotice = "A package is being installed in the background. %s starts when it finishes."

// DesktopConfig configures the desktop face.
type DesktopConfig struct {
	Config
	// Grace is the countdown before a mandatory job runs; default 5 min.
	Grace time.Duration
	// NoBusyNotice silences the busy notice (the desktop still waits).
	NoBusyNotice bool
	// Notify receives the lines meant for the user; nil discards them.
	Notify func(line string)
}

// Desktop is the face of an agent in the logged-in user's session (pcm
// desktop). It reads the client's offers with direct gets, without any
// consumer (it never touches the service's), runs what the user picks (never a background job) as that user,
// and runs non-background mandatory jobs at their time after a countdown.
type Desktop struct {
	face
	dcfg    DesktopConfig
	filters []string
}

// NewDesktop returns the desktop face of cfg.ClientID, talking to the
// broker over nc.
func NewDesktop(nc *nats.Conn, cfg DesktopConfig) (*Desktop, error) {
	cfg.setDefaults()
	if cfg.Grace <= 0 {
		cfg.Grace = DefaultGrace
	}
	if cfg.Notify == nil {
		cfg.Notify = func(string) {}
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("%w: jetstream: %w", ErrInvalidConfig, err)
	}
	return &Desktop{face: newFace(nc, js, cfg.Config, events.RunnerDesktop, cfg.Logger.Named("desktop")), dcfg: cfg}, nil
}

// bind reads the client's consumer filters (its own subject, its groups',
// pcm.jobs.all) and makes the lock.
func (d *Desktop) bind(ctx context.Context) error {
	if d.locker != nil {
		return nil
	}
	d.warnUnsigned()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	cons, err := d.js.Consumer(ctx, events.StreamJobs, events.ConsumerName(d.cfg.ClientID))
	if errors.Is(err, jetstream.ErrConsumerNotFound) {
		return fmt.Errorf("%w: %s: ask an operator to run pcm enroll %s", ErrNotEnrolled, d.cfg.ClientID, d.cfg.ClientID)
	}
	if err != nil {
		return fmt.Errorf("reaching the broker: %w", err)
	}
	d.filters = cons.CachedInfo().Config.FilterSubjects
	return d.bindLock(d.cfg.Lease)
}

// List returns the jobs the user may run now, oldest offer first: live,
// not background, for this platform, without a final status here.
func (d *Desktop) List(ctx context.Context) ([]events.JobOffered, error) {
	if err := d.bind(ctx); err != nil {
		return nil, err
	}
	live, err := d.scanLive(ctx)
	if err != nil {
		return nil, err
	}
	var out []events.JobOffered
	for _, job := range live {
		if err := d.runnable(ctx, job, time.Now()); err != nil {
			d.log.Info("not listing job", zap.String("job", job.JobID), zap.String("why", err.Error()))
			continue
		}
		out = append(out, job)
	}
	d.log.Info("jobs listed", zap.Int("jobs_before_filter", len(live)), zap.Int("jobs_after_filter", len(out)))
	return out, nil
}

// scanLive returns the offers of this client not cancelled, by offer time.
func (d *Desktop) scanLive(ctx context.Context) ([]events.JobOffered, error) {
	jobs := map[string]events.JobOffered{}
	err := offers.ScanVerified(ctx, d.js, d.filters, time.Time{}, d.trusted, func(e offers.Entry) bool {
		if e.Offer != nil {
			jobs[e.Offer.JobID] = *e.Offer
		} else {
			delete(jobs, e.Cancel.JobID)
		}
		return true
	})
	if err != nil {
		return nil, err
	}
	return byOfferTime(jobs), nil
}

// byOfferTime lists jobs by offer time.
func byOfferTime(jobs map[string]events.JobOffered) []events.JobOffered {
	out := make([]events.JobOffered, 0, len(jobs))
	for _, j := range jobs {
		out = append(out, j)
	}
	sort.Slice(out, func(a, b int) bool { return out[a].OfferAfter.Before(out[b].OfferAfter) })
	return out
}

// runnable says why job may not run from the desktop now, or nil.
func (d *Desktop) runnable(ctx context.Context, job events.JobOffered, now time.Time) error {
	switch {
	case job.Command.Background:
		d.log.Info(fmt.Sprintf("job %s is marked for service-only execution, skipping it", job.JobID))
		return fmt.Errorf("%w: job %s is marked background", ErrServiceOnly, job.JobID)
	case now.Before(job.OfferAfter):
		return fmt.Errorf("%w: job %s is pending until %s", ErrNotRunnable, job.JobID, job.OfferAfter.Local().Format(time.RFC3339))
	case !now.Before(job.ExpireAfter):
		return fmt.Errorf("%w: job %s expired at %s", ErrNotRunnable, job.JobID, job.ExpireAfter.Local().Format(time.RFC3339))
	case !events.PlatformMatches(job.Command.Platforms, d.cfg.OS, d.cfg.Arch):
		return fmt.Errorf("%w: job %s is for %v, this client is %s", ErrNotRunnable, job.JobID, job.Command.Platforms, d.cfg.Platform())
	}
	last, _, err := d.lastStatus(ctx, job.JobID)
	if err != nil {
		return err
	}
	if jobOver(last, job) {
		return fmt.Errorf("%w: job %s already %s (by the %s face)", ErrAlreadyDone, job.JobID, last.State, last.Runner)
	}
	return nil
}

// Run runs one attempt of jobID as the current user: it takes the lock
// (telling the user, unless silenced, that the service is busy, and
// waiting: it never gives up because of the lock), checks again that the
// job is not done, reports started, runs the command, reports the final
// status, and releases the lock. It returns that final status.
func (d *Desktop) Run(ctx context.Context, jobID string) (events.JobStatus, error) {
	if err := d.bind(ctx); err != nil {
		return events.JobStatus{}, err
	}
	found, err := d.find(ctx, jobID)
	if err != nil {
		return events.JobStatus{}, err
	}
	if found.Cancelled != nil {
		return events.JobStatus{}, fmt.Errorf("%w: job %s was cancelled: %s", ErrNotRunnable, jobID, found.Cancelled.Reason)
	}
	return d.runJob(ctx, found.Job)
}

func (d *Desktop) runJob(ctx context.Context, job events.JobOffered) (events.JobStatus, error) {
	log := d.log.With(zap.String("job", job.JobID))
	if err := d.runnable(ctx, job, time.Now()); err != nil {
		return events.JobStatus{}, err
	}
	// The package is fetched and verified before the lock is taken.
	release, err := d.preparePackage(ctx, job)
	if err != nil {
		return d.packageRefused(ctx, job, err)
	}
	defer release()
	notified := false
	lease, err := d.locker.Acquire(ctx, d.lockInfo(job.JobID), func(h lock.Info) {
		log.Info("job waits: the lock is held", zap.String("holder", string(h.Holder)), zap.String("holder_job", h.JobID), zap.Time("since", h.Since))
		if string(h.Holder) == string(events.RunnerService) && !d.dcfg.NoBusyNotice && !notified {
			notified = true
			d.dcfg.Notify(fmt.Sprintf(BusyNotice, jobName(job)))
		}
	})
	if err != nil {
		return events.JobStatus{}, err
	}
	defer func() {
		rctx, cancel := context.WithTimeout(context.Background(), publishTimeout)
		defer cancel()
		if err := lease.Release(rctx); err != nil {
			log.Warn("releasing the lock", zap.Error(err))
		}
	}()
	last, _, err := d.lastStatus(ctx, job.JobID)
	if err != nil {
		return events.JobStatus{}, err
	}
	if jobOver(last, job) {
		return *last, fmt.Errorf("%w: job %s %s meanwhile (by the %s face)", ErrAlreadyDone, job.JobID, last.State, last.Runner)
	}
	attempt := 1
	if last != nil && last.State != events.StateRejected {
		attempt = last.Attempt + 1
		if last.State == events.StateStarted {
			// an attempt nobody finished: it counts (see Service.settleInterrupted)
			st := d.newStatus(job.JobID, events.StateFailed, last.Attempt, job.Attempts())
			st.Reason = fmt.Sprintf("the %s face stopped during the run (no final status)", last.Runner)
			st.LockRevision = lease.Revision()
			if err := d.persist(ctx, st); err != nil {
				return events.JobStatus{}, err
			}
			if last.Attempt >= job.Attempts() {
				return st, fmt.Errorf("%w: its last attempt was interrupted", ErrAlreadyDone)
			}
		}
	}
	// Started is persisted before the process exists: if this face dies
	// during the run, whoever takes the lock next sees the attempt.
	started := d.newStatus(job.JobID, events.StateStarted, attempt, job.Attempts())
	started.LockRevision = lease.Revision()
	now := time.Now().UTC()
	started.StartedAt = &now
	if err := d.publishStatus(ctx, started); err != nil {
		return events.JobStatus{}, fmt.Errorf("reporting the start of job %s: %w", job.JobID, err)
	}
	log.Info("running job as the user", zap.String("user", d.user), zap.Strings("argv", job.Command.Argv), zap.Uint64("lock_revision", lease.Revision()))
	res, runErr := d.cfg.Runner.Run(ctx, d.runSpec(job, attempt), nil)
	final := d.finalStatus(job, attempt, res, runErr, lease.Revision())
	if err := d.persist(context.WithoutCancel(ctx), final); err != nil {
		return final, err
	}
	log.Info("job finished", zap.String("state", string(final.State)), zap.String("reason", final.Reason))
	return final, nil
}

// packageRefused reports a job whose package is missing or altered as
// failed (nothing runs) and returns that status with the error; a package
// that is only unavailable for now is returned as an error alone.
func (d *Desktop) packageRefused(ctx context.Context, job events.JobOffered, err error) (events.JobStatus, error) {
	if !pkgcache.Permanent(err) {
		return events.JobStatus{}, fmt.Errorf("package of job %s not available now: %w", job.JobID, err)
	}
	attempt := 1
	if last, _, lerr := d.lastStatus(ctx, job.JobID); lerr == nil && last != nil && last.State != events.StateRejected {
		attempt = last.Attempt + 1
	}
	st := d.newStatus(job.JobID, events.StateFailed, attempt, job.Attempts())
	st.Reason = truncate(err.Error(), 1024)
	if perr := d.persist(ctx, st); perr != nil {
		return st, perr
	}
	return st, fmt.Errorf("job %s not run: %w", job.JobID, err)
}

// persist publishes a status, retrying until the broker stores it (the
// desktop has no journal: it waits for the broker instead).
func (d *Desktop) persist(ctx context.Context, st events.JobStatus) error {
	b := newBackoff()
	deadline := time.Now().Add(10 * time.Minute)
	for {
		err := d.publishStatus(ctx, st)
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("reporting %s of job %s: %w", st.State, st.JobID, err)
		}
		d.log.Warn("status not stored yet, retrying", zap.Error(err))
		sleep(ctx, b.delay())
	}
}

func jobName(job events.JobOffered) string {
	if job.Name != "" {
		return fmt.Sprintf("%q (%s)", job.Name, job.JobID)
	}
	return job.JobID
}

// Session runs for the user's session: it tells the user about the jobs
// they may run, and about new ones as they are offered, and runs each
// non-background mandatory job at its time after counting down the grace
// period. It returns when ctx ends.
//
// It creates no consumer: it reads the client's offers (its consumer's
// filters: its own subject, its groups', pcm.jobs.all) with batched direct
// gets, and hears of new ones through core subscriptions to those subjects,
// taken before the first read (see offers.Follow): the history first, then
// each new offer once, in stream order, also across a reconnection.
func (d *Desktop) Session(ctx context.Context) error {
	if err := d.bind(ctx); err != nil {
		return err
	}
	queue := make(chan events.JobOffered, 64)
	scheduled := map[string]bool{}
	consider := func(job events.JobOffered) {
		if scheduled[job.JobID] {
			return
		}
		if job.Command.Background {
			d.log.Info(fmt.Sprintf("job %s is marked for service-only execution, skipping it", job.JobID))
			return
		}
		if !events.PlatformMatches(job.Command.Platforms, d.cfg.OS, d.cfg.Arch) || !time.Now().Before(job.ExpireAfter) {
			return
		}
		if last, _, err := d.lastStatus(ctx, job.JobID); err == nil && jobOver(last, job) {
			return
		}
		scheduled[job.JobID] = true
		d.dcfg.Notify(fmt.Sprintf("job offered: %s; run it with: pcm desktop run %s", jobName(job), job.JobID))
		if job.Mandatory() {
			go d.countdown(ctx, job, queue)
		}
	}
	followed, err := offers.Follow(ctx, d.js, d.filters, func(err error) {
		d.log.Warn("reading new offers failed, retrying", zap.Error(err))
	})
	if err != nil {
		return err
	}
	defer followed.Stop()
	// The history (offers not cancelled) is gathered first, then
	// considered by offer time; after it, each new offer is considered as
	// it comes.
	history := map[string]events.JobOffered{}
	for {
		select {
		case <-ctx.Done():
			return nil
		case m, ok := <-followed.Updates():
			if !ok {
				if ctx.Err() != nil {
					return nil
				}
				return followed.Err()
			}
			var entry offers.Entry
			if m != nil {
				if entry, ok = offers.EntryOf(*m, d.trusted); !ok {
					continue // not a valid (or trusted) offer or cancellation
				}
			}
			switch {
			case m == nil && history != nil:
				for _, job := range byOfferTime(history) {
					consider(job)
				}
				history = nil
			case m == nil:
			case history != nil && entry.Offer != nil:
				history[entry.Offer.JobID] = *entry.Offer
			case history != nil:
				delete(history, entry.Cancel.JobID)
			case entry.Offer != nil:
				consider(*entry.Offer)
			}
		case job := <-queue:
			st, err := d.runJob(ctx, job)
			switch {
			case errors.Is(err, ErrAlreadyDone), errors.Is(err, ErrNotRunnable), errors.Is(err, ErrServiceOnly):
				d.log.Info("mandatory job not run by the desktop", zap.String("job", job.JobID), zap.String("why", err.Error()))
			case err != nil:
				d.dcfg.Notify(fmt.Sprintf("job %s could not run: %v", jobName(job), err))
			default:
				d.dcfg.Notify(fmt.Sprintf("job %s %s", jobName(job), st.State))
			}
		}
	}
}

// countdown waits for job's mandatory time, warns the user and counts the
// grace period down, then queues the job to run.
func (d *Desktop) countdown(ctx context.Context, job events.JobOffered, queue chan<- events.JobOffered) {
	if !sleep(ctx, time.Until(*job.MandatoryAfter)) {
		return
	}
	if err := d.runnable(ctx, job, time.Now()); err != nil {
		d.log.Info("mandatory job not for the desktop now", zap.String("job", job.JobID), zap.String("why", err.Error()))
		return
	}
	left := d.dcfg.Grace
	d.dcfg.Notify(fmt.Sprintf("job %s is mandatory and starts in %s: save your work", jobName(job), left.Round(time.Second)))
	for _, mark := range []time.Duration{time.Minute, 10 * time.Second} {
		if left > mark {
			if !sleep(ctx, left-mark) {
				return
			}
			left = mark
			d.dcfg.Notify(fmt.Sprintf("job %s starts in %s", jobName(job), left))
		}
	}
	if !sleep(ctx, left) {
		return
	}
	select {
	case queue <- job:
	case <-ctx.Done():
	}
}
