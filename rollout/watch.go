package rollout

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/pcm-project/pcm/events"
	"github.com/pcm-project/pcm/fleet"
	"github.com/pcm-project/pcm/internal/backoff"
	"github.com/pcm-project/pcm/internal/kvread"
	"github.com/pcm-project/pcm/internal/offers"
	"github.com/pcm-project/pcm/internal/streamread"
)

// findTimeout bounds the lookup of the job's offer and the enrollments
// when the caller's ctx has no deadline.
const findTimeout = 30 * time.Second

// refreshEvery bounds how often a Watcher re-reads one client's consumer.
const refreshEvery = time.Second

// batchFor bounds how long a Watcher applies a burst of events before it
// computes the rollout again.
const batchFor = 100 * time.Millisecond

// Read reads, once, where job stands on every client it targets: its
// offer, the enrolled consumers, the agents' heartbeats, the locks and
// every status of the job (the first update of Watch).
func Read(ctx context.Context, js jetstream.JetStream, jobID string) (Rollout, error) {
	w, err := Watch(ctx, js, jobID)
	if err != nil {
		return Rollout{}, err
	}
	defer w.Stop()
	r, ok := <-w.Updates()
	if !ok {
		return Rollout{}, w.Err()
	}
	return r, nil
}

// Watcher follows the rollout of one job: what Watch returns. Its Updates
// channel has the shape of nats.go's KeyWatcher.Updates(): the rollout
// once everything stored has been read (the caught-up state), then the
// rollout again each time what it shows changes.
type Watcher struct {
	updates chan Rollout
	done    chan struct{}
	cancel  context.CancelFunc
	err     error // set before done is closed
}

// Updates delivers the rollouts; it is closed when the Watcher stops (see
// Err). A Watcher waits for the caller to take each update.
func (w *Watcher) Updates() <-chan Rollout { return w.updates }

// Err waits until the Watcher has stopped and says why: nil after Stop or
// the end of its context, else the error that ended it.
func (w *Watcher) Err() error {
	<-w.done
	return w.err
}

// Stop stops the Watcher and waits until it has.
func (w *Watcher) Stop() {
	w.cancel()
	<-w.done
}

// Watch starts following where job stands. It finds the job's offer and
// the enrollments first (ErrJobNotFound, ErrNotProvisioned come back
// here), then follows the job's statuses, the agents' heartbeats and the
// locks as they are stored (subscriptions and direct gets, no consumer,
// no polling of the streams) and sends the rollout on Updates once it has
// read all three, and again each time what it shows changes. Without
// events it re-evaluates every second, so an agent whose heartbeat goes
// stale shows as offline. A client that has not received the offer has
// its consumer re-read when its agent's heartbeat arrives, at most once a
// second. It stops when ctx ends or on Stop.
func Watch(ctx context.Context, js jetstream.JetStream, jobID string) (*Watcher, error) {
	return WatchWith(ctx, js, jobID, WatchOptions{})
}

// WatchOptions tune a Watcher.
type WatchOptions struct {
	// Resync is how often the job's statuses are read even when nothing
	// was heard of a new one
	// (streamread.FollowOptions.Resync; default streamread.DefaultResync).
	// It catches a status whose notice was lost; new statuses are heard as
	// they are stored, on a secured broker too (PCM_STATUS republishes
	// them: docs/security.md).
	Resync time.Duration
}

// WatchWith is Watch with options.
func WatchWith(ctx context.Context, js jetstream.JetStream, jobID string, o WatchOptions) (*Watcher, error) {
	if err := events.ValidID("job id", jobID); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidJobID, err)
	}
	fctx, cancel := backoff.WithDefaultTimeout(ctx, findTimeout)
	defer cancel()
	found, err := offers.Find(fctx, js, nil, jobID)
	switch {
	case errors.Is(err, ErrJobNotFound):
		return nil, err
	case err != nil:
		return nil, streamErr("stream "+events.StreamJobs, err)
	}
	enrolled, err := fleet.ListEnrollments(fctx, js)
	if err != nil {
		return nil, err
	}
	ctx, stop := context.WithCancel(ctx)
	f := &follow{js: js, jobID: jobID, v: newView(found, enrolled), refreshed: map[string]time.Time{}, resync: o.Resync}
	f.v.unreachable = unreachableSites(fctx, js, enrolled)
	if err := f.start(ctx); err != nil {
		f.stop()
		stop()
		return nil, err
	}
	w := &Watcher{updates: make(chan Rollout), done: make(chan struct{}), cancel: stop}
	go func() {
		defer close(w.done)
		defer close(w.updates)
		defer stop()
		defer f.stop()
		err := f.run(ctx, w.updates)
		if ctx.Err() != nil {
			err = nil // stopped
		}
		w.err = err
	}()
	return w, nil
}

// follow is the state of a Watcher's loop: the view and the three
// followers that feed it.
type follow struct {
	js        jetstream.JetStream
	jobID     string
	v         *view
	refreshed map[string]time.Time // when each client's consumer was last re-read
	resync    time.Duration        // WatchOptions.Resync

	agents, locks, statuses *streamread.Follower
	// halts follows the job's halt subject (a staged rollout only).
	halts *streamread.Follower
	// windows follows PCM_WINDOWS, for a job that requires a window only.
	windows *streamread.Follower
}

// start starts the followers: every key of PCM_AGENTS and PCM_LOCKS, and
// every status of the job, stored and future.
func (f *follow) start(ctx context.Context) (err error) {
	if f.agents, err = kvread.Follow(ctx, f.js, events.BucketAgents); err != nil {
		return streamErr("bucket "+events.BucketAgents, err)
	}
	if f.locks, err = kvread.Follow(ctx, f.js, events.BucketLocks); err != nil {
		return streamErr("bucket "+events.BucketLocks, err)
	}
	filters := []string{events.StatusSubjectsOfJob(f.jobID)}
	for _, req := range f.v.offer.Job.Requires {
		filters = append(filters, events.StatusSubjectsOfJob(req))
	}
	f.statuses, err = streamread.Follow(ctx, f.js, events.StreamStatus, streamread.FollowOptions{
		Options: streamread.Options{Filters: filters}, Resync: f.resync,
	})
	if err != nil {
		return streamErr("the statuses of "+f.jobID+" in "+events.StreamStatus, err)
	}
	if f.v.offer.Job.Rollout != nil {
		f.halts, err = streamread.Follow(ctx, f.js, events.StreamJobs, streamread.FollowOptions{
			Options: streamread.Options{Filters: []string{events.HaltSubject(f.jobID)}},
		})
		if err != nil {
			return streamErr("the halts of "+f.jobID+" in "+events.StreamJobs, err)
		}
	}
	if f.v.offer.Job.InWindow {
		if f.windows, err = kvread.Follow(ctx, f.js, events.BucketWindows); err != nil {
			return streamErr("bucket "+events.BucketWindows, err)
		}
	}
	return nil
}

// applyHalt records what the last event of the job's halt subject says, as
// an agent that checks no signature reads it (events.ReadHalt): pcm status
// shows what is stored; each agent believes only a trusted halt.
func (f *follow) applyHalt(m *streamread.Msg) {
	h, err := events.ReadHalt(m.Header, m.Data, f.jobID, nil, nil)
	if err != nil {
		return
	}
	by := ""
	if ev, err := events.Decode(m.Header, m.Data); err == nil {
		by = events.MakerOf(ev)
	}
	f.v.applyHalt(h, by)
}

// stop stops the followers that were started.
func (f *follow) stop() {
	for _, fl := range []*streamread.Follower{f.agents, f.locks, f.statuses, f.halts, f.windows} {
		if fl != nil {
			fl.Stop()
		}
	}
}

// run feeds the view from the followers and sends each rollout that
// shows something new, until ctx ends or a follower stops.
func (f *follow) run(ctx context.Context, out chan<- Rollout) error {
	caught, agentsInit, locksInit, ready := false, false, false, false
	haltsInit := f.halts == nil
	var haltUpdates <-chan *streamread.Msg
	if f.halts != nil {
		haltUpdates = f.halts.Updates()
	}
	// The windows count only for a job that requires one.
	var windows <-chan *streamread.Msg
	windowsInit := f.windows == nil
	if f.windows != nil {
		windows = f.windows.Updates()
	}
	last := ""
	lastSent := time.Now()
	// busy reports whether more statuses, heartbeats or locks wait in the
	// followers: a burst (a thousand clients reporting at once) is applied
	// whole before the rollout is computed again, at least every
	// batchFor.
	busy := func() bool {
		if time.Since(lastSent) >= batchFor {
			return false
		}
		return len(f.statuses.Updates()) > 0 || len(f.agents.Updates()) > 0 || len(f.locks.Updates()) > 0
	}
	// send sends the rollout when it shows something new, or always (the
	// first, caught-up one: it may show nothing at all).
	send := func(always bool) bool {
		lastSent = time.Now()
		r := f.v.rollout(time.Now())
		fp := r.fingerprint()
		if fp == last && !always {
			return true
		}
		last = fp
		select {
		case out <- r:
			return true
		case <-ctx.Done():
			return false
		}
	}
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		if !ready && caught && agentsInit && locksInit && haltsInit && windowsInit {
			ready = true
			if !send(true) {
				return ctx.Err()
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case m, ok := <-f.statuses.Updates():
			if !ok {
				return stopped(ctx, "the statuses of "+f.jobID, f.statuses)
			}
			if m == nil {
				caught = true
				continue
			}
			if ev, err := events.Decode(m.Header, m.Data); err == nil {
				if st, err := events.ParseJobStatus(ev); err == nil && events.StatusSubject(st.ClientID, st.JobID) == m.Subject {
					if st.JobID == f.jobID {
						f.v.apply(st, ev.Time())
					} else {
						f.v.applyRequired(st)
					}
				}
			}
		case m, ok := <-haltUpdates:
			if !ok {
				return stopped(ctx, "the halts of "+f.jobID, f.halts)
			}
			if m == nil {
				haltsInit = true
				continue
			}
			f.applyHalt(m)
		case m, ok := <-f.agents.Updates():
			if !ok {
				return stopped(ctx, "bucket "+events.BucketAgents, f.agents)
			}
			if m == nil {
				agentsInit = true
				continue
			}
			e := kvread.EntryOf(events.BucketAgents, *m)
			if e.Deleted {
				delete(f.v.agents, e.Key)
			} else if a, ok := events.ParseAgentInfo(e.Key, e.Value); ok {
				f.v.agents[e.Key] = a
			}
			if ready {
				f.refreshEnrollment(ctx, e.Key)
			}
		case m, ok := <-f.locks.Updates():
			if !ok {
				return stopped(ctx, "bucket "+events.BucketLocks, f.locks)
			}
			if m == nil {
				locksInit = true
				continue
			}
			if e := kvread.EntryOf(events.BucketLocks, *m); e.Deleted {
				delete(f.v.locks, e.Key)
			} else if l, ok := events.ParseLockInfo(e.Value); ok {
				f.v.locks[e.Key] = l
			}
		case m, ok := <-windows:
			if !ok {
				return stopped(ctx, "bucket "+events.BucketWindows, f.windows)
			}
			if m == nil {
				windowsInit = true
				continue
			}
			e := kvread.EntryOf(events.BucketWindows, *m)
			if ws, err := events.ParseWindowSet(e.Value); err == nil && !e.Deleted {
				f.v.windows[e.Key] = ws.Windows
			} else {
				delete(f.v.windows, e.Key)
			}
		case <-tick.C:
		}
		if ready && !busy() && !send(false) {
			return ctx.Err()
		}
	}
}

// stopped is why a follower's updates closed.
func stopped(ctx context.Context, what string, fl *streamread.Follower) error {
	switch err := fl.Err(); {
	case ctx.Err() != nil:
		return ctx.Err()
	case err != nil:
		return streamErr(what, err)
	default:
		return fmt.Errorf("%w: %s stopped arriving", ErrRead, what)
	}
}

// refreshEnrollment re-reads the consumer of an expected client that has no
// status and has not received the offer, at most once per refreshEvery.
func (f *follow) refreshEnrollment(ctx context.Context, client string) {
	v := f.v
	if _, ok := v.statuses[client]; ok || !v.expected(client) {
		return
	}
	e, ok := v.enrolled[client]
	if !ok {
		return
	}
	if seq, ok := v.firstCopy(e); !ok || e.Delivered >= seq {
		return
	}
	if time.Since(f.refreshed[client]) < refreshEvery {
		return
	}
	f.refreshed[client] = time.Now()
	if fresh, ok, err := fleet.EnrollmentOf(ctx, f.js, client); err == nil && ok {
		v.enrolled[client] = fresh
	}
}

// unreachableSites probes, once, the branch sites of the enrolled
// clients: the sites whose JetStream does not answer through the hub.
func unreachableSites(ctx context.Context, js jetstream.JetStream, enrolled map[string]fleet.Enrollment) map[string]bool {
	out := map[string]bool{}
	for _, e := range enrolled {
		if e.Site == "" {
			continue
		}
		if _, done := out[e.Site]; !done {
			out[e.Site] = !fleet.SiteReachable(ctx, js.Conn(), e.Site)
		}
	}
	return out
}

// streamErr says that reading what failed, in the package's sentinels.
func streamErr(what string, err error) error {
	return streamread.Describe(what, err, ErrNotProvisioned, ErrRead)
}
