package metrics

import (
	"context"
	"strings"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/pcm-project/pcm/audit"
	"github.com/pcm-project/pcm/events"
)

// maxReason bounds the reason label of a status: the reasons agents write
// are short phrases ("exit code 1", "already present"); a longer one is cut.
const maxReason = 64

// DurationBuckets are the buckets of pcm_command_duration_seconds: from a
// second to four hours.
var DurationBuckets = []float64{1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 7200, 14400}

// Events counts the events stored in PCM_JOBS and PCM_STATUS, as Observe
// is given them (Follow gives it every stored event, then each new one).
type Events struct {
	published, cancelled, halted, resumed prometheus.Counter
	statuses                              *prometheus.CounterVec
	durations                             *prometheus.HistogramVec
	once                                  seen
}

// NewEvents registers the event counters in reg.
func NewEvents(reg prometheus.Registerer) (*Events, error) {
	c := func(name, help string) prometheus.Counter {
		return prometheus.NewCounter(prometheus.CounterOpts{Namespace: Namespace, Name: name, Help: help})
	}
	m := &Events{
		published: c("jobs_published_total", "Jobs offered: offer events stored in PCM_JOBS, counted once per job (not per target copy)."),
		cancelled: c("jobs_cancelled_total", "Cancellations stored in PCM_JOBS, counted once per job."),
		halted:    c("jobs_halted_total", "Halt events stored on jobs' halt subjects."),
		resumed:   c("jobs_resumed_total", "Resume events stored on jobs' halt subjects."),
		statuses: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: Namespace, Name: "statuses_total",
			Help: "Statuses stored in PCM_STATUS, by state and reason (cut to 64 characters)."}, []string{"state", "reason"}),
		durations: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: Namespace, Name: "command_duration_seconds",
			Help:    "How long commands ran: finished minus started time of each final status that has both, by state.",
			Buckets: DurationBuckets}, []string{"state"}),
		once: seen{},
	}
	for _, col := range []prometheus.Collector{m.published, m.cancelled, m.halted, m.resumed, m.statuses, m.durations} {
		if err := reg.Register(col); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// seen remembers the jobs counted once although stored once per target.
type seen map[string]bool

// Observe counts one stored event. Offers and cancellations are stored once
// per target; only the first copy of a job counts (Observe remembers the
// job ids it counted). It is not safe for concurrent use.
func (m *Events) Observe(e audit.Event) {
	once := m.once
	ev, err := e.Decode()
	if err != nil {
		return
	}
	switch ev.Type() {
	case events.TypeJobOffered:
		if once.first("o." + ev.Subject()) {
			m.published.Inc()
		}
	case events.TypeJobCancelled:
		if once.first("c." + ev.Subject()) {
			m.cancelled.Inc()
		}
	case events.TypeJobHalted:
		m.halted.Inc()
	case events.TypeJobResumed:
		m.resumed.Inc()
	case events.TypeJobStatus:
		st, err := events.ParseJobStatus(ev)
		if err != nil {
			return
		}
		m.ObserveStatus(st)
	}
}

// first reports whether key is new to once.
func (s seen) first(key string) bool {
	if s[key] {
		return false
	}
	s[key] = true
	return true
}

// ObserveStatus counts one status.
func (m *Events) ObserveStatus(st events.JobStatus) {
	reason := strings.TrimSpace(st.Reason)
	if len(reason) > maxReason {
		reason = reason[:maxReason]
	}
	m.statuses.WithLabelValues(string(st.State), reason).Inc()
	if st.State.Final() && st.StartedAt != nil && st.FinishedAt != nil && !st.FinishedAt.Before(*st.StartedAt) {
		m.durations.WithLabelValues(string(st.State)).Observe(st.FinishedAt.Sub(*st.StartedAt).Seconds())
	}
}

// Follow counts every event stored in PCM_JOBS and PCM_STATUS, then each
// new one as it is stored, until ctx ends (it returns ctx.Err()) or the
// replay fails. Each job's offer and cancellation count once.
func (m *Events) Follow(ctx context.Context, js jetstream.JetStream) error {
	return audit.Replay(ctx, js, audit.Filter{Follow: true}, func(e audit.Event) error {
		m.Observe(e)
		return nil
	})
}
