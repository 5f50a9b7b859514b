package console

import (
	"sort"
	"time"

	"github.com/pcm-project/pcm/events"
	"github.com/pcm-project/pcm/fleet"
)

// JobSummary is a job as the jobs list shows it.
type JobSummary struct {
	ID          string         `json:"id"`
	Name        string         `json:"name,omitempty"`
	Publisher   string         `json:"publisher"`
	OfferedAt   time.Time      `json:"offered_at"`
	ExpireAfter time.Time      `json:"expire_after"`
	Targets     []string       `json:"targets"`
	Groups      []string       `json:"groups,omitempty"`
	Rings       []string       `json:"rings,omitempty"`
	Cancelled   bool           `json:"cancelled,omitempty"`
	Halted      bool           `json:"halted,omitempty"`
	Counts      map[string]int `json:"counts"`
	// Total is the number of clients counted: expected or reported.
	Total int `json:"total"`
	// Live is true while the job may still run somewhere: not expired, not
	// cancelled, not over on every client.
	Live bool `json:"live"`
}

// jobEntry is what the console knows of one job from the streams.
type jobEntry struct {
	offer     events.JobOffered
	publisher string
	offered   time.Time
	subjects  map[string]uint64 // the subjects its copies are stored on, with their PCM_JOBS sequence
	cancelled bool
	halted    bool
	latest    map[string]events.JobStatus // by client
	expected  map[string]bool
	// cached is the summary last computed, nil when something changed
	// since.
	cached *JobSummary
}

// jobIndex is the console's index of the jobs in the streams.
type jobIndex struct {
	jobs     map[string]*jobEntry
	enrolled map[string]fleet.Enrollment
	agents   map[string]events.AgentInfo
	// early are statuses of jobs whose offer was not read yet, by job: the
	// two streams are followed apart, and after a broker restart the
	// statuses of a job offered during it can be read before its offer.
	// They count once the offer comes.
	early  map[string][]events.JobStatus
	nEarly int
}

// maxEarly bounds the statuses kept for jobs not offered yet (statuses
// of jobs whose offer was trimmed from PCM_JOBS stay there for ever).
const maxEarly = 10000

func newJobIndex() *jobIndex {
	return &jobIndex{jobs: map[string]*jobEntry{}, early: map[string][]events.JobStatus{}}
}

// offered records a copy of an offer stored on subject at seq.
func (x *jobIndex) offered(job events.JobOffered, publisher, subject string, seq uint64, at time.Time) *jobEntry {
	e := x.jobs[job.JobID]
	if e == nil {
		e = &jobEntry{offer: job, publisher: publisher, offered: at, subjects: map[string]uint64{},
			latest: map[string]events.JobStatus{}}
		x.jobs[job.JobID] = e
	}
	e.subjects[subject] = seq
	x.expect(e)
	e.cached = nil
	if early, ok := x.early[job.JobID]; ok {
		delete(x.early, job.JobID)
		x.nEarly -= len(early)
		for _, st := range early {
			x.status(st)
		}
	}
	return e
}

// status records a client's status of a job, unless it is older than
// what is known.
func (x *jobIndex) status(st events.JobStatus) *jobEntry {
	e := x.jobs[st.JobID]
	if e == nil {
		if x.nEarly < maxEarly {
			x.early[st.JobID] = append(x.early[st.JobID], st)
			x.nEarly++
		}
		return nil
	}
	if cur, ok := e.latest[st.ClientID]; ok && !st.Supersedes(cur) {
		return e
	}
	e.latest[st.ClientID] = st
	e.cached = nil
	return e
}

// setFleet replaces the enrollments and the agents' heartbeats, and
// recounts who is expected.
func (x *jobIndex) setFleet(enrolled map[string]fleet.Enrollment, agents map[string]events.AgentInfo) {
	x.enrolled, x.agents = enrolled, agents
	for _, e := range x.jobs {
		x.expect(e)
		e.cached = nil
	}
}

// expect recounts the clients expected to run e: named by it, or enrolled
// with a consumer that takes one of its copies.
func (x *jobIndex) expect(e *jobEntry) {
	exp := map[string]bool{}
	for _, t := range e.offer.Targets {
		if t.Kind == events.TargetClient {
			exp[t.Name] = true
		}
	}
	for c, en := range x.enrolled {
		for s := range e.subjects {
			if en.Receives(s) {
				exp[c] = true
				break
			}
		}
	}
	e.expected = exp
}

// waiting is the state of an expected client of e that has not reported:
// offline (its heartbeat is stale or missing), pending (its agent has
// received the offer) or not received.
func (x *jobIndex) waiting(e *jobEntry, client string, now time.Time) string {
	if a, ok := x.agents[client]; !ok || a.Stale(now) {
		return StateOffline
	}
	en, ok := x.enrolled[client]
	if !ok {
		return StateNotReceived
	}
	for s, seq := range e.subjects {
		if en.Receives(s) && en.Delivered >= seq {
			return StatePending
		}
	}
	return StateNotReceived
}

// summary is e as the list shows it at now.
func (x *jobIndex) summary(e *jobEntry, now time.Time) JobSummary {
	s := JobSummary{ID: e.offer.JobID, Name: e.offer.Name, Publisher: e.publisher, OfferedAt: e.offered,
		ExpireAfter: e.offer.ExpireAfter, Cancelled: e.cancelled, Halted: e.halted, Counts: map[string]int{}}
	for _, t := range e.offer.Targets {
		s.Targets = append(s.Targets, t.String())
		if t.Kind == events.TargetGroup {
			s.Groups = append(s.Groups, t.Name)
		}
	}
	if p := e.offer.Rollout; p != nil {
		for _, r := range p.Rings {
			s.Rings = append(s.Rings, r.String())
		}
	}
	done := 0
	for _, st := range e.latest {
		s.Counts[statusState(st.State)]++
		if st.EndsJob(st.MaxAttempts) {
			done++
		}
	}
	waiting := 0
	for c := range e.expected {
		if _, ok := e.latest[c]; ok {
			continue
		}
		waiting++
		switch {
		case e.halted:
			s.Counts[StateHalted]++
		case x.agents == nil:
			s.Counts[StateNotReported]++ // the fleet not read yet
		default:
			s.Counts[x.waiting(e, c, now)]++
		}
	}
	s.Total = len(e.latest) + waiting
	s.Live = !e.cancelled && now.Before(e.offer.ExpireAfter) && (s.Total == 0 || done < s.Total)
	return s
}

// list is the newest max jobs (all when max is 0), newest first. A job's
// summary is computed again only when something changed (an event of the
// job, the fleet read again).
func (x *jobIndex) list(now time.Time, max int) []JobSummary {
	out := make([]JobSummary, 0, len(x.jobs))
	for _, e := range x.jobs {
		if e.cached == nil {
			s := x.summary(e, now)
			e.cached = &s
		}
		out = append(out, *e.cached)
	}
	sort.Slice(out, func(i, j int) bool {
		if !out[i].OfferedAt.Equal(out[j].OfferedAt) {
			return out[i].OfferedAt.After(out[j].OfferedAt)
		}
		return out[i].ID > out[j].ID
	})
	if max > 0 && len(out) > max {
		out = out[:max]
	}
	return out
}

// mark applies set to a known job and has its summary computed again.
func (x *jobIndex) mark(job string, set func(*jobEntry)) {
	if e := x.jobs[job]; e != nil {
		set(e)
		e.changed()
	}
}

// changed marks e's summary to be computed again.
func (e *jobEntry) changed() { e.cached = nil }
