package metrics_test

import (
	"encoding/json"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/pcm-project/pcm/metrics"
)

var metricName = regexp.MustCompile(`pcm_[a-z_]+`)

// TestDocsListEveryMetric: docs/metrics.md names every metric the package
// registers, and the Grafana dashboard uses only metrics that exist.
func TestDocsListEveryMetric(t *testing.T) {
	doc, err := os.ReadFile("../docs/metrics.md")
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	if _, err := metrics.NewEvents(reg); err != nil {
		t.Fatal(err)
	}
	r, err := metrics.NewRollouts(reg)
	if err != nil {
		t.Fatal(err)
	}
	r.Set("j", map[string]int{"succeeded": 1})
	if _, err := metrics.NewLockTimes(reg); err != nil {
		t.Fatal(err)
	}
	type stats struct{ Offers, StatusWaits int64 }
	if err := metrics.AgentStats(reg, func() any { return stats{} }); err != nil {
		t.Fatal(err)
	}
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	defined := map[string]bool{}
	for _, f := range fams {
		defined[f.GetName()] = true
		if !strings.Contains(string(doc), "`"+f.GetName()+"`") && !strings.Contains(string(doc), "`"+f.GetName()+"{") {
			t.Errorf("docs/metrics.md does not list %s", f.GetName())
		}
	}
	for _, want := range []string{"pcm_agent_offers_total", "pcm_agent_status_waits_total"} {
		if !defined[want] {
			t.Errorf("AgentStats defines no %s", want)
		}
	}
	b, err := os.ReadFile("../docs/grafana-dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Panels []struct {
			Title   string
			Targets []struct{ Expr string }
		}
	}
	if err := json.Unmarshal(b, &dash); err != nil {
		t.Fatal(err)
	}
	for _, p := range dash.Panels {
		for _, tg := range p.Targets {
			for _, m := range metricName.FindAllString(tg.Expr, -1) {
				m = strings.TrimSuffix(m, "_bucket")
				if !strings.Contains(string(doc), m) {
					t.Errorf("panel %q uses %s, which docs/metrics.md does not list", p.Title, m)
				}
			}
		}
	}
}
