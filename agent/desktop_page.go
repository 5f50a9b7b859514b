package agent

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/pcm-project/pcm/events"
	"github.com/pcm-project/pcm/internal/offers"
)

// What the desktop face tells a page for its user (agent/desktopweb):
// what ran here, who holds the client, the statuses heard, where a job's
// output grows. Every read is one the desktop's credentials already make.

// Ran is a job of this client with its last status, for the history.
type Ran struct {
	events.JobStatus
	// Name is the job's name, if it has one.
	Name string `json:"name,omitempty"`
	// Package is the package the job installs, if any.
	Package *events.PackageRef `json:"package,omitempty"`
}

// History returns the last status of each job offered to this client
// (cancelled ones too) that has one, latest first.
func (d *Desktop) History(ctx context.Context) ([]Ran, error) {
	if err := d.bind(ctx); err != nil {
		return nil, err
	}
	jobs := map[string]events.JobOffered{}
	err := d.viewOffers(ctx, d.trusted, func(e offers.Entry) bool {
		if e.Offer != nil {
			jobs[e.Offer.JobID] = *e.Offer
		}
		return true
	})
	if err != nil {
		return nil, err
	}
	out := []Ran{}
	for _, job := range byOfferTime(jobs) {
		last, err := d.lastStatus(ctx, job.JobID)
		if err != nil {
			return nil, err
		}
		if last != nil {
			out = append(out, Ran{JobStatus: *last, Name: job.Name, Package: job.Package})
		}
	}
	sort.SliceStable(out, func(a, b int) bool { return when(out[a].JobStatus).After(when(out[b].JobStatus)) })
	return out, nil
}

// when is the time of a status: when its attempt finished, else started.
func when(st events.JobStatus) time.Time {
	switch {
	case st.FinishedAt != nil:
		return *st.FinishedAt
	case st.StartedAt != nil:
		return *st.StartedAt
	}
	return time.Time{}
}

// Holder says who holds this client's lock, and the job it runs; ok is
// false when the lock is free.
func (d *Desktop) Holder(ctx context.Context) (info events.LockInfo, ok bool, err error) {
	if err := d.bind(ctx); err != nil {
		return events.LockInfo{}, false, err
	}
	info, _, ok, err = d.locker.Current(ctx)
	return info, ok, err
}

// HearStatuses calls fn with each status of this client as it is
// published: the service's, from the desktop's subscription to the
// client's status subjects (what is heard is news, the stored status is
// the record), and this desktop's own once stored (its connection has no
// echo). fn must not block. stop ends it.
func (d *Desktop) HearStatuses(fn func(events.JobStatus)) (stop func(), err error) {
	sub, err := d.nc.Subscribe(events.StatusSubjectsOfClient(d.cfg.ClientID), func(m *nats.Msg) {
		ev, err := events.Decode(m.Header, m.Data)
		if err != nil {
			return
		}
		if st, err := events.ParseJobStatus(ev); err == nil {
			fn(st)
		}
	})
	if err != nil {
		return nil, fmt.Errorf("hearing the statuses of %s: %w", d.cfg.ClientID, err)
	}
	unlisten := d.own.listen(fn)
	return func() { _ = sub.Unsubscribe(); unlisten() }, nil
}

// listeners are the functions told of a face's own statuses.
type listeners struct {
	mu   sync.Mutex
	next int
	fns  map[int]func(events.JobStatus)
}

// listen adds fn; the function returned removes it.
func (l *listeners) listen(fn func(events.JobStatus)) func() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.fns == nil {
		l.fns = map[int]func(events.JobStatus){}
	}
	id := l.next
	l.next++
	l.fns[id] = fn
	return func() {
		l.mu.Lock()
		defer l.mu.Unlock()
		delete(l.fns, id)
	}
}

// tell calls every listener with st.
func (l *listeners) tell(st events.JobStatus) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, fn := range l.fns {
		fn(st)
	}
}

// OutputPath is the file the output of jobID's runs by this desktop is
// appended to.
func (d *Desktop) OutputPath(jobID string) string {
	return d.runSpec(events.JobOffered{JobID: jobID}, 0).LogPath
}

// Background says, for the user, what the service runs in the background:
// jobID, looked up among the client's offers.
func (d *Desktop) Background(ctx context.Context, jobID string) string {
	job := events.JobOffered{JobID: jobID}
	if found, err := d.find(ctx, jobID); err == nil {
		job = found.Job
	}
	return backgroundText(job)
}
