package controller

import (
	"fmt"
	"math"
	"strconv"
	"time"

	"github.com/pcm-project/pcm/events"
)

// rollouts is what the controller knows of the staged rollouts it
// watches, fed in stream order: the offers and their halts, resumes and
// cancellations, and the latest status of each client. It is pure: it
// reads nothing, publishes nothing.
type rollouts struct {
	jobs map[string]*rollout
}

// rollout is one staged rollout with a halt threshold.
type rollout struct {
	job     events.JobOffered
	stored  time.Time // when its offer was stored
	halted  bool
	since   time.Time // statuses stored after it count (the last resume)
	clients map[string]latest
	// asked is set when a halt was asked for and not yet seen stored:
	// it is not asked for again until the halt subject says otherwise.
	asked bool
}

// latest is a client's latest status of a job, and when it was stored.
type latest struct {
	st     events.JobStatus
	stored time.Time
}

func newRollouts() *rollouts { return &rollouts{jobs: map[string]*rollout{}} }

// offer starts watching job, offered at stored, when it is a staged
// rollout with a halt threshold (the first copy of an offer counts), and
// says whether it did.
func (r *rollouts) offer(job events.JobOffered, stored time.Time) bool {
	if job.Rollout == nil || job.Rollout.HaltAt == nil || r.jobs[job.JobID] != nil {
		return false
	}
	r.jobs[job.JobID] = &rollout{job: job, stored: stored, clients: map[string]latest{}}
	return true
}

// cancelled stops watching job: it starts nowhere any more.
func (r *rollouts) cancelled(job string) { delete(r.jobs, job) }

// halt records the last event stored on a job's halt subject at stored:
// a halt (halted true) or a resume, after which only the statuses stored
// later count.
func (r *rollouts) halt(job string, halted bool, stored time.Time) {
	ro := r.jobs[job]
	if ro == nil {
		return
	}
	ro.halted, ro.asked = halted, false
	if !halted {
		ro.since = stored
	}
}

// status records a status stored at stored, when its job is watched.
func (r *rollouts) status(st events.JobStatus, stored time.Time) {
	ro := r.jobs[st.JobID]
	if ro == nil {
		return
	}
	if cur, ok := ro.clients[st.ClientID]; ok && !st.Supersedes(cur.st) {
		return
	}
	ro.clients[st.ClientID] = latest{st: st, stored: stored}
}

// watches reports whether job is a watched rollout.
func (r *rollouts) watches(job string) bool { return r.jobs[job] != nil }

// oldest is when the oldest watched offer was stored; ok is false when
// none is watched.
func (r *rollouts) oldest() (t time.Time, ok bool) {
	for _, ro := range r.jobs {
		if !ok || ro.stored.Before(t) {
			t, ok = ro.stored, true
		}
	}
	return t, ok
}

// prune stops watching the rollouts expired at now: nothing starts them
// any more.
func (r *rollouts) prune(now time.Time) {
	for id, ro := range r.jobs {
		if !now.Before(ro.job.ExpireAfter) {
			delete(r.jobs, id)
		}
	}
}

// due returns the halts to ask for at now: one per rollout neither halted
// nor already asked whose clients' latest statuses, stored since its last
// resume, pass its threshold (events.RolloutPlan.Halts). Each is marked
// asked.
func (r *rollouts) due(now time.Time) []events.JobHalted {
	var out []events.JobHalted
	for id, ro := range r.jobs {
		if ro.halted || ro.asked {
			continue
		}
		var t events.RolloutTally
		for _, l := range ro.clients {
			if l.stored.After(ro.since) {
				t.Add(l.st, ro.job.Attempts())
			}
		}
		plan := ro.job.Rollout
		if !plan.Halts(t) {
			continue
		}
		ro.asked = true
		out = append(out, events.JobHalted{JobID: id, Failed: t.Failed, Finished: t.Finished,
			Reason: fmt.Sprintf("failed on %d of %d finished clients (%s%% > halt_at %s%%) with ring %d of %d open",
				t.Failed, t.Finished, percent(float64(t.Failed)*100/float64(t.Finished)), percent(*plan.HaltAt),
				openRing(*plan, ro.job.OfferAfter, now), len(plan.Rings))})
	}
	return out
}

// retry lets a halt asked for and not stored be asked for again.
func (r *rollouts) retry(job string) {
	if ro := r.jobs[job]; ro != nil {
		ro.asked = false
	}
}

// openRing is the last ring of plan open at now.
func openRing(plan events.RolloutPlan, offerAfter, now time.Time) int {
	ring := 1
	for k := 2; k <= len(plan.Rings) && !now.Before(plan.OpensAt(offerAfter, k)); k++ {
		ring = k
	}
	return ring
}

// percent renders a percentage with at most one decimal.
func percent(p float64) string { return strconv.FormatFloat(math.Round(p*10)/10, 'f', -1, 64) }
