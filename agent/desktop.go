package agent

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/pcm-project/pcm/agent/pkgcache"
	"github.com/pcm-project/pcm/events"
	"github.com/pcm-project/pcm/internal/clientview"
	"github.com/pcm-project/pcm/internal/clock"
	"github.com/pcm-project/pcm/internal/offers"
	"github.com/pcm-project/pcm/internal/streamread"
)

// DesktopConfig configures the desktop face.
type DesktopConfig struct {
	Config
	// NoBusyNotice silences the busy notice (the desktop still waits).
	NoBusyNotice bool
	// Notify receives the lines meant for the user at a terminal (each
	// notice's Line: its text and how to act on it with pcm desktop); nil
	// discards them.
	Notify func(line string)
	// OnNotice receives each notice with what it is about (its kind and
	// job), for a page or native notifications, which show its Text and
	// offer their own buttons rather than its Hint; nil discards them.
	OnNotice func(Notice)
}

// Validate checks the configuration (see Config.Validate).
func (c DesktopConfig) Validate() error { return c.Config.Validate() }

// Desktop is the face of an agent in the logged-in user's session (pcm
// desktop). It reads the client's offers with direct gets, without any
// consumer (it never touches the service's), runs what the user picks
// (never a background job) as that user, and runs mandatory jobs that need
// the user at their time after a countdown. Every job it lists, announces
// or runs goes through Decide first, with the job's last status and
// cancellation read at that moment.
type Desktop struct {
	face
	dcfg    DesktopConfig
	bindMu  sync.Mutex // bind runs once at a time: the session and its page call it at once
	filters []string

	seenMu   sync.Mutex
	seen     map[string]time.Time // when the session first saw each job
	restarts map[string]bool      // the jobs whose restart was announced
}

// NewDesktop returns the desktop face of cfg.ClientID, talking to the
// broker over nc.
func NewDesktop(nc *nats.Conn, cfg DesktopConfig) (*Desktop, error) {
	cfg.setDefaults()
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
	return &Desktop{face: newFace(nc, js, cfg.Config, events.RunnerDesktop, cfg.Logger.Named("desktop")), dcfg: cfg, seen: map[string]time.Time{}}, nil
}

// bind reads the client's consumer filters (its own subject, its groups',
// pcm.jobs.all) and makes the lock.
func (d *Desktop) bind(ctx context.Context) error {
	d.bindMu.Lock()
	defer d.bindMu.Unlock()
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
	d.groups = events.GroupsOfConsumer(cons.CachedInfo().Config.Metadata)
	return d.bindLock()
}

// decide decides about job now, for a user's pick or for an unattended
// run, with the job's last status and cancellation read from the broker
// (known, when given, is a cancellation already found), and the client's
// maintenance windows for a job that requires one.
func (d *Desktop) decide(ctx context.Context, job events.JobOffered, unattended, locked bool, known *events.JobCancelled) (Facts, Decision, error) {
	now := d.now() // taken first, as the service does
	bf, err := d.lookup(ctx, job)
	if err != nil {
		return Facts{}, Decision{}, err
	}
	f := Facts{Face: events.RunnerDesktop, Unattended: unattended, Job: job, Last: bf.last, Cancel: bf.cancel,
		Client: d.cfg.ClientID, Groups: d.groups, Halt: bf.halt, Required: bf.required,
		OS: d.cfg.OS, Arch: d.cfg.Arch, Now: now, Locked: locked,
		TimeFacts: TimeFacts{FirstSeen: d.firstSeen(job.JobID), Grace: d.cfg.Grace}}
	if f.Cancel == nil {
		f.Cancel = known
	}
	if job.InWindow {
		if f.Windows, err = d.windows(ctx); err != nil {
			return Facts{}, Decision{}, err
		}
	}
	return f, Decide(f), nil
}

// sawAt records when the session first saw a job.
func (d *Desktop) sawAt(jobID string, t time.Time) {
	d.seenMu.Lock()
	defer d.seenMu.Unlock()
	if _, ok := d.seen[jobID]; !ok {
		d.seen[jobID] = t
	}
}

// firstSeen is when the session first saw a job; zero when it has not.
func (d *Desktop) firstSeen(jobID string) time.Time {
	d.seenMu.Lock()
	defer d.seenMu.Unlock()
	return d.seen[jobID]
}

// notRun is what Run returns for a decision that is not to run: the status
// it records, if any (a refused package, an interrupted last attempt), and
// the error that says why.
func (d *Desktop) notRun(ctx context.Context, f Facts, dec Decision) (events.JobStatus, error) {
	id := f.Job.JobID
	var st events.JobStatus
	if r := dec.Report; r != nil {
		st = d.reportOf(f.Job, r)
		if err := (directLog{&d.face}).record(ctx, st, r.Ends); err != nil {
			return st, err
		}
	}
	switch dec.Rule {
	case RuleBackground:
		return st, fmt.Errorf("%w: job %s is marked background", ErrServiceOnly, id)
	case RuleDone, RuleInterrupted:
		return st, fmt.Errorf("%w: job %s: %s", ErrAlreadyDone, id, dec.Why)
	case RulePackage:
		return st, fmt.Errorf("job %s not run: %w", id, f.PackageErr)
	}
	return st, fmt.Errorf("%w: job %s: %s", ErrNotRunnable, id, dec.Why)
}

// Listed is a job the user may run now, with what its time rules leave
// the user.
type Listed struct {
	events.JobOffered
	// DeferralsLeft is, for a job the user may defer, how many deferrals
	// are left (its deadline is Deferrals.Deadline).
	DeferralsLeft *int `json:"deferrals_left,omitempty"`
	// Publisher names who published the job.
	Publisher string `json:"publisher,omitempty"`
	// Due is, for a mandatory job, when it runs without the user (as far
	// as the desktop can tell): its mandatory time, or the end of the
	// user's deferral or of the grace after offline, after the countdown
	// of --grace for a job that gives one.
	Due *time.Time `json:"due,omitempty"`
	// CanDefer is true when the user may defer the job now; DeferWhy says
	// why not otherwise, for a job that allows deferrals.
	CanDefer bool   `json:"can_defer,omitempty"`
	DeferWhy string `json:"defer_why,omitempty"`
}

// List returns the jobs the user may run now, oldest offer first: those
// Decide lets the user pick now (live, not background, for this platform,
// neither over here nor cancelled, inside a maintenance window when they
// require one), with the deferrals left of those the user may defer.
func (d *Desktop) List(ctx context.Context) ([]Listed, error) {
	if err := d.bind(ctx); err != nil {
		return nil, err
	}
	live, publishers, err := d.scanLive(ctx)
	if err != nil {
		return nil, err
	}
	var out []Listed
	for _, job := range live {
		f, dec, err := d.decide(ctx, job, false, false, nil)
		if err != nil {
			return nil, err
		}
		if dec.Action != Run {
			d.skipped(job, dec, zapcore.DebugLevel)
			continue
		}
		l := Listed{JobOffered: job, Publisher: publishers[job.JobID]}
		if job.Mandatory() {
			due := startsAt(f, d.cfg.Grace)
			l.Due = &due
		}
		if job.Deferrals != nil {
			off := deferralOffer(f)
			left := off.leftNow()
			l.DeferralsLeft, l.CanDefer, l.DeferWhy = &left, off.Allowed, off.Why
		}
		out = append(out, l)
	}
	// The list is what its user reads: why the others are left out is
	// for --log-level debug.
	d.log.Debug("jobs listed", zap.Int("jobs_before_filter", len(live)), zap.Int("jobs_after_filter", len(out)))
	return out, nil
}

// skipped logs at level why the desktop does not offer job to the user.
func (d *Desktop) skipped(job events.JobOffered, dec Decision, level zapcore.Level) {
	if dec.Rule == RuleBackground {
		d.counts.serviceOnly.Add(1)
		d.log.Log(level, fmt.Sprintf("job %s is marked for service-only execution, skipping it", job.JobID))
		return
	}
	d.log.Log(level, "not offering job", zap.String("job", job.JobID), zap.String("rule", string(dec.Rule)), zap.String("why", dec.Why))
}

// viewOffers calls fn, in stream order, with each valid offer and
// cancellation of this client that verify accepts, read through the client
// view (internal/clientview): the broker's service that reads them for
// this client, since a client's credentials may not read PCM_JOBS at large.
func (d *Desktop) viewOffers(ctx context.Context, verify offers.Verifier, fn func(offers.Entry) bool) error {
	errStop := errors.New("stop")
	err := clientview.Scan(ctx, d.nc, d.cfg.ClientID, clientview.Offers, func(m streamread.Msg) error {
		if e, ok := offers.EntryOf(m, verify); ok && !fn(e) {
			return errStop
		}
		return nil
	})
	if err != nil && !errors.Is(err, errStop) {
		return fmt.Errorf("reading the offers of %s: %w", d.cfg.ClientID, err)
	}
	return nil
}

// scanLive returns the offers of this client not cancelled, by offer time,
// and who published each (by job id).
func (d *Desktop) scanLive(ctx context.Context) ([]events.JobOffered, map[string]string, error) {
	jobs := map[string]events.JobOffered{}
	publishers := map[string]string{}
	err := d.viewOffers(ctx, d.trusted, func(e offers.Entry) bool {
		if e.Offer != nil {
			jobs[e.Offer.JobID] = *e.Offer
			publishers[e.Offer.JobID] = events.PublisherOf(e.Event)
		} else {
			delete(jobs, e.Cancel.JobID)
		}
		return true
	})
	if err != nil {
		return nil, nil, err
	}
	return byOfferTime(jobs), publishers, nil
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

// Run runs one attempt of jobID as the current user, when Decide lets the
// user pick it now: it prepares the job's package, takes the lock (telling
// the user, unless silenced, which job the service is running, and
// waiting: it never gives up because of the lock), decides again under the
// lock, and runs the attempt through the attempt engine, reporting started
// then the final status, which it returns.
func (d *Desktop) Run(ctx context.Context, jobID string) (events.JobStatus, error) {
	if err := d.bind(ctx); err != nil {
		return events.JobStatus{}, err
	}
	found, err := d.find(ctx, jobID)
	if err != nil {
		return events.JobStatus{}, err
	}
	return d.runJob(ctx, found.Job, false, found.Cancelled)
}

// runJob runs job once if Decide lets it run: picked by the user, or
// unattended (the session, at the job's mandatory time).
func (d *Desktop) runJob(ctx context.Context, job events.JobOffered, unattended bool, known *events.JobCancelled) (events.JobStatus, error) {
	log := d.log.With(zap.String("job", job.JobID))
	f, dec, err := d.decide(ctx, job, unattended, false, known)
	if err != nil {
		return events.JobStatus{}, err
	}
	if dec.Action != Run {
		return d.notRun(ctx, f, dec)
	}
	// The package is fetched and verified before the lock is taken.
	release, err := d.preparePackage(ctx, job)
	if err != nil {
		if !pkgcache.Permanent(err) {
			return events.JobStatus{}, fmt.Errorf("package of job %s not available now: %w", job.JobID, err)
		}
		f.PackageErr = err
		return d.notRun(ctx, f, Decide(f))
	}
	defer release()
	notified := false
	lease, err := d.locker.Acquire(ctx, d.lockInfo(job.JobID), func(h events.LockInfo) {
		log.Info("job waits: the lock is held", zap.String("holder", string(h.Holder)), zap.String("holder_job", h.JobID), zap.Time("since", h.Since))
		if notified || d.dcfg.NoBusyNotice || h.Holder != events.RunnerService || h.JobID == job.JobID {
			return // the service running this very job is no news: it is done when the lock is free
		}
		if _, dec, err := d.decide(ctx, job, unattended, false, known); err != nil || dec.Action != Run {
			return
		}
		notified = true
		d.tell(Notice{Kind: NoticeBusy, JobID: job.JobID, Text: d.busyNotice(ctx, h.JobID, job)})
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
	if f, dec, err = d.decide(ctx, job, unattended, true, known); err != nil {
		return events.JobStatus{}, err
	}
	if dec.Action != Run {
		return d.notRun(ctx, f, dec)
	}
	sl := directLog{&d.face}
	if r := dec.Report; r != nil {
		if err := sl.record(ctx, d.reportOf(job, r), r.Ends); err != nil {
			return events.JobStatus{}, err
		}
	}
	return d.runAttempt(ctx, sl, job, dec.Attempt, lease)
}

// busyNotice tells the user which job the service is running (holderID,
// looked up among the client's offers) and which one waits for it.
func (d *Desktop) busyNotice(ctx context.Context, holderID string, waiting events.JobOffered) string {
	holder := events.JobOffered{JobID: holderID}
	if holderID != "" {
		fctx, cancel := context.WithTimeout(ctx, publishTimeout)
		if found, err := d.find(fctx, holderID); err == nil {
			holder = found.Job
		}
		cancel()
	}
	return busyNoticeText(holder, waiting)
}

// busyNoticeText is the busy notice: the job the service runs (a
// package's installation when it has one) and the job that waits.
func busyNoticeText(running, waiting events.JobOffered) string {
	return fmt.Sprintf("%s; %s starts when it finishes.", backgroundText(running), describe(waiting))
}

// backgroundText says what the service runs in the background: a job, or
// a package's installation.
func backgroundText(running events.JobOffered) string {
	what, verb := describe(running), "is running"
	switch {
	case running.JobID == "":
		what = "a job"
	case running.Package != nil:
		verb = "is being installed"
	}
	return fmt.Sprintf("%s %s in the background", what, verb)
}

// jobName names a job for the user: "Name" (ID), or its ID.
func jobName(job events.JobOffered) string {
	if job.Name != "" {
		return fmt.Sprintf("%q (%s)", job.Name, job.JobID)
	}
	return job.JobID
}

// describe says what a job is for the user: a job, or a package's
// installation when it has one.
func describe(job events.JobOffered) string {
	if p := job.Package; p != nil {
		return fmt.Sprintf("package %s@%s (job %s)", p.Name, p.Version, jobName(job))
	}
	return "job " + jobName(job)
}

// Session runs for the user's session: it tells the user about the jobs
// they may run, and about new ones as they are offered, and runs each
// mandatory job that needs the user at its time after counting down the
// grace period (the service runs the automated ones). It counts down, too,
// the jobs the user may defer (telling how: pcm desktop defer, with the
// deferrals left and the deadline) and those this client first saw after
// their mandatory time (their grace after offline), whichever face runs
// them, and the restarts jobs ask for (time.go). Before each notice it
// decides again, with the job's last status and cancellation read at that
// moment: a job the service ran, that was cancelled or that expired is
// never announced nor counted down, and a deferral stops the countdown
// until it ends. It returns when ctx ends.
//
// It creates no consumer: it reads the client's offers (on its consumer's
// filters: its own subject, its groups', pcm.jobs.all) through the client
// view, and hears of new ones through core subscriptions to those subjects,
// taken before the first read (see clientview.Follow): the history first,
// then each new offer once, in stream order, also across a reconnection.
func (d *Desktop) Session(ctx context.Context) error {
	if err := d.bind(ctx); err != nil {
		return err
	}
	go d.sayPresent(ctx)
	queue := make(chan events.JobOffered, 64)
	again := make(chan events.JobOffered, 64) // jobs to consider again at their offer time
	scheduled := map[string]bool{}
	restarts, stopRestarts, err := d.hearRestarts(ctx)
	if err != nil {
		return err
	}
	defer stopRestarts()
	consider := func(job events.JobOffered) {
		if scheduled[job.JobID] {
			return
		}
		f, pick, err := d.decide(ctx, job, false, false, nil)
		if err != nil {
			d.log.Warn("cannot read the job's last status or cancellation; not announcing it", zap.String("job", job.JobID), zap.Error(err))
			return
		}
		if l := f.Last; l != nil && l.RestartRequired {
			d.restartCountdown(ctx, *l, job)
		}
		switch {
		case pick.Action == Wait && looksAgain(pick.Rule):
			scheduled[job.JobID] = true
			go func() {
				if clock.SleepUntil(ctx, d.cfg.Clock, pick.Until) {
					select {
					case again <- job:
					case <-ctx.Done():
					}
				}
			}()
			return
		case pick.Action != Run && pick.Rule != RuleWindow:
			d.skipped(job, pick, zapcore.InfoLevel)
			return
		}
		scheduled[job.JobID] = true
		d.sawAt(job.JobID, f.Now)
		f.Unattended, f.FirstSeen = true, d.firstSeen(job.JobID)
		offered := Notice{JobID: job.JobID, Text: describe(job) + " offered", Hint: "run it with: pcm desktop run " + job.JobID}
		if pick.Rule == RuleWindow {
			offered.Text, offered.Hint = fmt.Sprintf("%s offered; it runs in a maintenance window: %s", describe(job), pick.Why), ""
		}
		switch unattended := Decide(f); {
		case job.Mandatory() && forUser(f):
			offered.Kind = NoticeMandatory
			d.tell(offered)
			go d.countdown(ctx, job, queue)
		case unattended.Rule == RuleAutomated && !f.Now.Before(*job.MandatoryAfter):
			// The service runs it now: no news for the user.
			d.log.Info("not announcing a job the service runs now", zap.String("job", job.JobID))
		default:
			offered.Kind = NoticeOffered
			d.tell(offered)
		}
	}
	followed, err := clientview.Follow(ctx, d.nc, d.cfg.ClientID, clientview.Offers, d.filters, func(err error) {
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
		case job := <-again:
			delete(scheduled, job.JobID)
			consider(job)
		case st := <-restarts:
			d.restartCountdown(ctx, st, events.JobOffered{JobID: st.JobID})
		case job := <-queue:
			st, err := d.runJob(ctx, job, true, nil)
			switch {
			case errors.Is(err, ErrNotRunnable):
				// Deferred, or out of its window, at the last moment: it
				// is counted down again.
				d.log.Info("mandatory job not run by the desktop now", zap.String("job", job.JobID), zap.String("why", err.Error()))
				delete(scheduled, job.JobID)
				consider(job)
			case errors.Is(err, ErrAlreadyDone), errors.Is(err, ErrServiceOnly):
				d.log.Info("mandatory job not run by the desktop", zap.String("job", job.JobID), zap.String("why", err.Error()))
			case err != nil:
				d.tell(Notice{Kind: NoticeFailed, JobID: job.JobID, Text: fmt.Sprintf("%s could not run: %v", describe(job), err)})
			default:
				d.tell(Notice{Kind: finishedKind(st), JobID: job.JobID, Text: fmt.Sprintf("%s %s", describe(job), st.State)})
			}
		}
	}
}
