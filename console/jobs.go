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
	subjects  map[string]bool // the subjects its copies are stored on
	cancelled bool
	halted    bool
	latest    map[string]events.JobStatus // by client
	expected  map[string]bool
}

// jobIndex is the console's index of the jobs in the streams.
type jobIndex struct {
	jobs     map[string]*jobEntry
	enrolled map[string]fleet.Enrollment
}

func newJobIndex() *jobIndex {
	return &jobIndex{jobs: map[string]*jobEntry{}}
}

// offered records a copy of an offer stored on subject.
func (x *jobIndex) offered(job events.JobOffered, publisher, subject string, at time.Time) *jobEntry {
	e := x.jobs[job.JobID]
	if e == nil {
		e = &jobEntry{offer: job, publisher: publisher, offered: at, subjects: map[string]bool{},
			latest: map[string]events.JobStatus{}}
		x.jobs[job.JobID] = e
	}
	e.subjects[subject] = true
	x.expect(e)
	return e
}

// status records a client's status of a job, unless it is older than
// what is known.
func (x *jobIndex) status(st events.JobStatus) *jobEntry {
	e := x.jobs[st.JobID]
	if e == nil {
		return nil
	}
	if cur, ok := e.latest[st.ClientID]; ok && !st.Supersedes(cur) {
		return e
	}
	e.latest[st.ClientID] = st
	return e
}

// setEnrolled replaces the enrollments and recounts who is expected.
func (x *jobIndex) setEnrolled(enrolled map[string]fleet.Enrollment) {
	x.enrolled = enrolled
	for _, e := range x.jobs {
		x.expect(e)
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

// summary is e as the list shows it at now.
func (e *jobEntry) summary(now time.Time) JobSummary {
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
	for c, st := range e.latest {
		s.Counts[statusState(st.State)]++
		if st.EndsJob(st.MaxAttempts) {
			done++
		}
		_ = c
	}
	waiting := 0
	for c := range e.expected {
		if _, ok := e.latest[c]; !ok {
			waiting++
		}
	}
	if waiting > 0 {
		if e.halted {
			s.Counts[StateHalted] += waiting
		} else {
			s.Counts[StateNotReported] += waiting
		}
	}
	s.Total = len(e.latest) + waiting
	s.Live = !e.cancelled && now.Before(e.offer.ExpireAfter) && (s.Total == 0 || done < s.Total)
	return s
}

// list is every job, newest first.
func (x *jobIndex) list(now time.Time) []JobSummary {
	out := make([]JobSummary, 0, len(x.jobs))
	for _, e := range x.jobs {
		out = append(out, e.summary(now))
	}
	sort.Slice(out, func(i, j int) bool {
		if !out[i].OfferedAt.Equal(out[j].OfferedAt) {
			return out[i].OfferedAt.After(out[j].OfferedAt)
		}
		return out[i].ID > out[j].ID
	})
	return out
}
