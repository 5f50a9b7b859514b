package metrics

import (
	"reflect"
	"strings"
	"time"
	"unicode"

	"github.com/prometheus/client_golang/prometheus"
)

// AgentStats registers a counter for each int64 field of the struct that
// stats returns (an agent's Stats: Offers becomes pcm_agent_offers_total,
// StatusWaits pcm_agent_status_waits_total), read at each scrape.
func AgentStats(reg prometheus.Registerer, stats func() any) error {
	t := reflect.TypeOf(stats())
	for i := range t.NumField() {
		f := t.Field(i)
		if f.Type.Kind() != reflect.Int64 || !f.IsExported() {
			continue
		}
		idx := i
		err := reg.Register(prometheus.NewCounterFunc(prometheus.CounterOpts{
			Namespace: Namespace, Subsystem: "agent", Name: snake(f.Name) + "_total",
			Help: "The agent's count of " + strings.ReplaceAll(snake(f.Name), "_", " ") + " since it started (agent.Stats." + f.Name + ").",
		}, func() float64 { return float64(reflect.ValueOf(stats()).Field(idx).Int()) }))
		if err != nil {
			return err
		}
	}
	return nil
}

// GaugeFunc registers a gauge read from fn at each scrape, named
// pcm_<name>.
func GaugeFunc(reg prometheus.Registerer, name, help string, fn func() float64) error {
	return reg.Register(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: Namespace, Name: name, Help: help}, fn))
}

// snake turns StatusWaits into status_waits.
func snake(s string) string {
	var b strings.Builder
	for i, r := range s {
		if unicode.IsUpper(r) {
			if i > 0 {
				b.WriteByte('_')
			}
			r = unicode.ToLower(r)
		}
		b.WriteRune(r)
	}
	return b.String()
}

// LockBuckets are the buckets of the lock wait and hold histograms: from
// 10 ms to four hours.
var LockBuckets = []float64{0.01, 0.1, 0.5, 1, 5, 15, 60, 300, 900, 3600, 14400}

// LockTimes are how long an agent's service waited for its client's lock
// and held it (an agent.Observer).
type LockTimes struct {
	wait, hold prometheus.Histogram
}

// NewLockTimes registers the lock histograms in reg.
func NewLockTimes(reg prometheus.Registerer) (*LockTimes, error) {
	l := &LockTimes{
		wait: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: Namespace, Subsystem: "agent", Name: "lock_wait_seconds",
			Help: "How long the service waited for the client's lock before running a job (the desktop held it).", Buckets: LockBuckets}),
		hold: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: Namespace, Subsystem: "agent", Name: "lock_hold_seconds",
			Help: "How long the service held the client's lock for a job.", Buckets: LockBuckets}),
	}
	for _, h := range []prometheus.Collector{l.wait, l.hold} {
		if err := reg.Register(h); err != nil {
			return nil, err
		}
	}
	return l, nil
}

// LockWaited observes a wait for the lock.
func (l *LockTimes) LockWaited(d time.Duration) { l.wait.Observe(d.Seconds()) }

// LockHeld observes a hold of the lock.
func (l *LockTimes) LockHeld(d time.Duration) { l.hold.Observe(d.Seconds()) }
