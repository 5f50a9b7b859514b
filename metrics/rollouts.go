package metrics

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Rollouts is the rollout progress of each live job: its clients by state
// (the console's states: succeeded, failed, running, pending, ...). A job
// is dropped when it is over or expired.
type Rollouts struct {
	clients *prometheus.GaugeVec
	known   map[string][]string // the states set for each job
}

// NewRollouts registers the rollout gauge in reg.
func NewRollouts(reg prometheus.Registerer) (*Rollouts, error) {
	g := prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: Namespace, Name: "rollout_clients",
		Help: "Clients of each live job by state (succeeded, failed, running, pending, not_received, offline, not_applicable, cancelled, halted, not_reported)."},
		[]string{"job", "state"})
	if err := reg.Register(g); err != nil {
		return nil, err
	}
	return &Rollouts{clients: g, known: map[string][]string{}}, nil
}

// Set sets the counts of job, state by state; a state no longer counted
// goes back to 0. It is not safe for concurrent use.
func (r *Rollouts) Set(job string, counts map[string]int) {
	for _, s := range r.known[job] {
		if _, ok := counts[s]; !ok {
			r.clients.WithLabelValues(job, s).Set(0)
		}
	}
	states := make([]string, 0, len(counts))
	for s, n := range counts {
		r.clients.WithLabelValues(job, s).Set(float64(n))
		states = append(states, s)
	}
	r.known[job] = states
}

// Drop removes job's gauges.
func (r *Rollouts) Drop(job string) {
	if _, ok := r.known[job]; !ok {
		return
	}
	r.clients.DeletePartialMatch(prometheus.Labels{"job": job})
	delete(r.known, job)
}
