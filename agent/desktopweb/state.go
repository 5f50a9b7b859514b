package desktopweb

import (
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/pcm-project/pcm/agent"
	"github.com/pcm-project/pcm/events"
)

// Busy is the banner: the job the service runs in the background.
type Busy struct {
	JobID string     `json:"job_id"`
	Text  string     `json:"text"`
	Since *time.Time `json:"since,omitempty"`
}

// The phases of a run started from the page.
const (
	PhaseStarting = "starting" // asked; the desktop prepares and decides
	PhaseWaiting  = "waiting"  // the service holds the client
	PhaseRunning  = "running"  // its process runs
	PhaseDone     = "done"     // it has a final status (State)
	PhaseError    = "error"    // it could not run (Error says why)
)

// Run is a job started from the page, as it goes.
type Run struct {
	JobID       string       `json:"job_id"`
	Phase       string       `json:"phase"`
	Waiting     string       `json:"waiting,omitempty"`
	RequestedAt time.Time    `json:"requested_at"`
	StartedAt   *time.Time   `json:"started_at,omitempty"`
	FinishedAt  *time.Time   `json:"finished_at,omitempty"`
	State       events.State `json:"state,omitempty"`
	ExitCode    *int         `json:"exit_code,omitempty"`
	Reason      string       `json:"reason,omitempty"`
	Error       string       `json:"error,omitempty"`
	OutputTail  string       `json:"output_tail,omitempty"`
	// Job is the job as it was listed when the user asked: the page still
	// shows it once it is no longer listed (it ran).
	Job *agent.Listed `json:"job,omitempty"`
}

// Snapshot is what the page shows: GET /api/state and each server-sent
// state event.
type Snapshot struct {
	Client    string          `json:"client"`
	Now       time.Time       `json:"now"`
	Available []agent.Listed  `json:"available"`
	Required  []agent.Listed  `json:"required"`
	History   []agent.Ran     `json:"history"`
	Busy      *Busy           `json:"busy"`
	Runs      map[string]*Run `json:"runs"`
	Notices   []agent.Notice  `json:"notices"`
	Error     string          `json:"error,omitempty"`
}

// keptNotices is how many of the last notices the page shows.
const keptNotices = 20

// state is the page's snapshot and the browsers that follow it.
type state struct {
	mu   sync.Mutex
	snap Snapshot
	subs map[chan []byte]struct{}
	poke func()
}

func newState(client string, poke func()) *state {
	return &state{snap: Snapshot{Client: client, Available: []agent.Listed{}, Required: []agent.Listed{},
		History: []agent.Ran{}, Runs: map[string]*Run{}, Notices: []agent.Notice{}},
		subs: map[chan []byte]struct{}{}, poke: poke}
}

// change applies fn under the lock, then sends the new snapshot to every
// browser.
func (s *state) change(fn func(*Snapshot)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	fn(&s.snap)
	s.snap.Now = time.Now().UTC()
	b, err := json.Marshal(s.snap)
	if err != nil {
		return
	}
	for ch := range s.subs {
		select { // the browser gets the latest snapshot; an older unsent one is dropped
		case <-ch:
		default:
		}
		ch <- b
	}
}

// json is the current snapshot.
func (s *state) json() []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.snap.Now = time.Now().UTC()
	b, _ := json.Marshal(s.snap)
	return b
}

// follow returns a channel of snapshots (the current one first) and the
// function that ends it.
func (s *state) follow() (<-chan []byte, func()) {
	ch := make(chan []byte, 1)
	s.mu.Lock()
	s.subs[ch] = struct{}{}
	s.mu.Unlock()
	ch <- s.json()
	return ch, func() {
		s.mu.Lock()
		delete(s.subs, ch)
		s.mu.Unlock()
	}
}

// heard takes a status of the client: the service starting a job sets the
// banner, its final status clears it; the desktop starting a job the page
// asked for marks it running. The lists and the history are read again.
func (s *state) heard(st events.JobStatus) {
	s.change(func(p *Snapshot) {
		switch {
		case st.Runner == events.RunnerService && st.State == events.StateStarted:
			p.Busy = &Busy{JobID: st.JobID, Since: st.StartedAt}
		case st.Runner == events.RunnerService && st.State.Final() && p.Busy != nil && p.Busy.JobID == st.JobID:
			p.Busy = nil
		case st.Runner == events.RunnerDesktop && st.State == events.StateStarted:
			if r := p.Runs[st.JobID]; r != nil && (r.Phase == PhaseStarting || r.Phase == PhaseWaiting) {
				r.Phase, r.Waiting, r.StartedAt = PhaseRunning, "", st.StartedAt
			}
		}
	})
	s.poke()
}

// notice takes a notice of the desktop: kept for the page; a busy notice
// about a job the page started says why it waits.
func (s *state) notice(n agent.Notice) {
	s.change(func(p *Snapshot) {
		p.Notices = append(p.Notices, n)
		if len(p.Notices) > keptNotices {
			p.Notices = p.Notices[len(p.Notices)-keptNotices:]
		}
		if r := p.Runs[n.JobID]; r != nil && n.Kind == agent.NoticeBusy && r.Phase == PhaseStarting {
			r.Phase, r.Waiting = PhaseWaiting, n.Text
		}
	})
}

// holder takes what the lock says: held by the service or not.
func (s *state) holder(info events.LockInfo, byService bool) {
	poke := false
	s.change(func(p *Snapshot) {
		switch {
		case byService && p.Busy == nil:
			since := info.Since
			p.Busy, poke = &Busy{JobID: info.JobID, Since: &since}, true
		case !byService:
			p.Busy = nil
		}
	})
	if poke {
		s.poke()
	}
}

// busyJob is the job of a banner whose words are not read yet.
func (s *state) busyJob() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if b := s.snap.Busy; b != nil && b.Text == "" {
		return b.JobID
	}
	return ""
}

// setLists takes what the refresher read: the jobs the user may run, what
// ran here, and the words of the banner of busyID.
func (s *state) setLists(listed []agent.Listed, lerr error, history []agent.Ran, herr error, busyID, busyText string) {
	s.change(func(p *Snapshot) {
		if lerr == nil {
			p.Available, p.Required = []agent.Listed{}, []agent.Listed{}
			for _, l := range listed {
				if l.Mandatory() {
					p.Required = append(p.Required, l)
				} else {
					p.Available = append(p.Available, l)
				}
			}
		}
		if herr == nil {
			p.History = history
		}
		p.Error = ""
		if err := errors.Join(lerr, herr); err != nil {
			p.Error = "cannot read the jobs of this computer now: " + err.Error()
		}
		if b := p.Busy; b != nil && b.JobID == busyID && busyText != "" {
			b.Text = busyText
		}
	})
}

// startRun records that the page asked to run jobID; ErrRunning when it
// runs already.
func (s *state) startRun(jobID string) (Run, error) {
	var r Run
	var err error
	s.change(func(p *Snapshot) {
		if old := p.Runs[jobID]; old != nil && old.Phase != PhaseDone && old.Phase != PhaseError {
			err = fmt.Errorf("%w: job %s (%s)", ErrRunning, jobID, old.Phase)
			return
		}
		r = Run{JobID: jobID, Phase: PhaseStarting, RequestedAt: time.Now().UTC()}
		for _, l := range append(p.Available[:len(p.Available):len(p.Available)], p.Required...) {
			if l.JobID == jobID {
				r.Job = &l
			}
		}
		p.Runs[jobID] = &r
	})
	return r, err
}

// runOutput takes the tail of a running job's output.
func (s *state) runOutput(jobID, tail string) {
	s.change(func(p *Snapshot) {
		if r := p.Runs[jobID]; r != nil && r.Phase != PhaseDone && r.Phase != PhaseError {
			r.OutputTail = tail
		}
	})
}

// phase is the phase of the run of jobID.
func (s *state) phase(jobID string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if r := s.snap.Runs[jobID]; r != nil {
		return r.Phase
	}
	return ""
}

// name names the job of a run for the user: its name, else its id.
func (s *state) name(jobID string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if r := s.snap.Runs[jobID]; r != nil && r.Job != nil && r.Job.Name != "" {
		return r.Job.Name
	}
	return "job " + jobID
}

// runDone takes how the run of jobID ended.
func (s *state) runDone(jobID string, st events.JobStatus, err error) {
	s.change(func(p *Snapshot) {
		r := p.Runs[jobID]
		if r == nil {
			return
		}
		now := time.Now().UTC()
		r.FinishedAt, r.Waiting = &now, ""
		if err != nil {
			r.Phase, r.Error = PhaseError, err.Error()
			return
		}
		r.Phase, r.State, r.ExitCode, r.Reason = PhaseDone, st.State, st.ExitCode, st.Reason
		if st.StartedAt != nil && r.StartedAt == nil {
			r.StartedAt = st.StartedAt
		}
		if st.FinishedAt != nil {
			r.FinishedAt = st.FinishedAt
		}
		if st.OutputTail != "" {
			r.OutputTail = st.OutputTail
		}
	})
	s.poke()
}
