package metrics

import (
	"reflect"
	"strings"
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
