package integration_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/pcm-project/pcm/agent"
	"github.com/pcm-project/pcm/broker/auth"
	"github.com/pcm-project/pcm/metrics"
	"github.com/pcm-project/pcm/testenv"
)

// scrape reads the metrics at url (with a bearer token when given) with
// the Prometheus text parser.
func scrape(t testing.TB, url, token string) map[string]*dto.MetricFamily {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("scraping %s: %s", url, resp.Status)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return fams
}

// value sums the family's samples whose labels include want (counters,
// gauges; a histogram's sample count).
func value(fams map[string]*dto.MetricFamily, name string, want map[string]string) float64 {
	f := fams[name]
	if f == nil {
		return -1
	}
	sum := 0.0
next:
	for _, m := range f.Metric {
		labels := map[string]string{}
		for _, l := range m.Label {
			labels[l.GetName()] = l.GetValue()
		}
		for k, v := range want {
			if labels[k] != v {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			sum += m.Counter.GetValue()
		case m.Gauge != nil:
			sum += m.Gauge.GetValue()
		case m.Histogram != nil:
			sum += float64(m.Histogram.GetSampleCount())
		}
	}
	return sum
}

// TestMetricsCountWhatHappened runs a known sequence of jobs on three
// agents (and a fourth client without one), then scrapes the console's
// metrics, the broker's (the same collectors pcm broker --metrics serves)
// and an agent's with the Prometheus text parser: every counter equals
// what happened.
func TestMetricsCountWhatHappened(t *testing.T) {
	env := testenv.StartBroker(t)
	// m1's metrics, as pcm agent --metrics registers them.
	areg := metrics.NewRegistry()
	locks, err := metrics.NewLockTimes(areg)
	if err != nil {
		t.Fatal(err)
	}
	var agents []*runningAgent
	for _, c := range []string{"m1", "m2", "m3"} {
		enroll(t, env.JS, c, "metrics")
		var opts []agentOpts
		if c == "m1" {
			opts = append(opts, func(cfg *agent.Config) { cfg.Observer = locks })
		}
		agents = append(agents, startAgent(t, env.URL, c, t.TempDir(), opts...))
	}
	enroll(t, env.JS, "m4", "metrics") // no agent: its offers stay pending
	for _, a := range agents {
		a.waitReady(t)
	}
	p := newPublisher(t, env.JS)
	// A succeeds on m1..m3 (m4 never runs it); B fails on m1; C is
	// cancelled on m2 before its time.
	// m1 runs B once A's lock is released (an agent keeps its lock a
	// moment for a next job: back to back, A and B would take it once).
	lockReleased := func(client string) {
		testenv.WaitFor(t, 10*time.Second, client+"'s lock released", func() bool {
			m := lockTrace(t, env.JS, client)
			return m != nil && m.Header.Get("KV-Operation") == "DEL"
		})
	}
	a := publish(t, p, job([]string{"true"}, toGroup("metrics")))
	for _, cl := range []string{"m1", "m2", "m3"} {
		waitFinal(t, env.JS, cl, a, 30*time.Second)
	}
	lockReleased("m1")
	b := publish(t, p, job([]string{"sh", "-c", "exit 3"}, toClient("m1")))
	held := job([]string{"true"}, toClient("m2"))
	later := time.Now().Add(time.Hour).UTC()
	held.MandatoryAfter = &later
	c := publish(t, p, held)
	waitFinal(t, env.JS, "m1", b, 30*time.Second)
	lockReleased("m1")
	waitPulling(t, env.JS, "m2")
	if err := p.Cancel(context.Background(), c, "metrics test"); err != nil {
		t.Fatal(err)
	}
	waitFinal(t, env.JS, "m2", c, 30*time.Second)

	want := []struct {
		name   string
		labels map[string]string
		n      float64
	}{
		{"pcm_jobs_published_total", nil, 3},
		{"pcm_jobs_cancelled_total", nil, 1},
		{"pcm_statuses_total", map[string]string{"state": "started"}, 4},
		{"pcm_statuses_total", map[string]string{"state": "succeeded"}, 3},
		{"pcm_statuses_total", map[string]string{"state": "failed"}, 1},
		{"pcm_statuses_total", map[string]string{"state": "cancelled"}, 1},
		{"pcm_statuses_total", nil, 9},
		{"pcm_command_duration_seconds", map[string]string{"state": "succeeded"}, 3},
		{"pcm_command_duration_seconds", map[string]string{"state": "failed"}, 1},
	}
	check := func(what string, fams map[string]*dto.MetricFamily) error {
		for _, w := range want {
			if got := value(fams, w.name, w.labels); got != w.n {
				return fmt.Errorf("%s: %s%v = %v, want %v", what, w.name, w.labels, got, w.n)
			}
		}
		return nil
	}

	// The console's, with its rollout gauges.
	rc := startConsole(t, env, auth.RoleAuditor, "metrics")
	testenv.CheckFor(t, 30*time.Second, 100*time.Millisecond, func() error {
		fams := scrape(t, rc.srv.URL+"/metrics", viewerToken)
		if err := check("console", fams); err != nil {
			return err
		}
		for state, n := range map[string]float64{"succeeded": 3, "offline": 1} {
			if got := value(fams, "pcm_rollout_clients", map[string]string{"job": a, "state": state}); got != n {
				return fmt.Errorf("console: pcm_rollout_clients{job=A,state=%s} = %v, want %v", state, got, n)
			}
		}
		if got := value(fams, "pcm_rollout_clients", map[string]string{"job": b}); got != 0 && got != -1 {
			return fmt.Errorf("console: job B is over, yet pcm_rollout_clients counts %v clients", got)
		}
		return nil
	})

	// The broker's: the streams and the consumers.
	reg := metrics.NewRegistry()
	ev, err := metrics.NewEvents(reg)
	if err != nil {
		t.Fatal(err)
	}
	reg.MustRegister(metrics.NewConsumers(env.JS))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { _ = ev.Follow(ctx, env.JS) }()
	srv := httptest.NewServer(metrics.Handler(reg))
	defer srv.Close()
	testenv.CheckFor(t, 30*time.Second, 100*time.Millisecond, func() error {
		fams := scrape(t, srv.URL, "")
		if err := check("broker", fams); err != nil {
			return err
		}
		if got := value(fams, "pcm_offers_pending", map[string]string{"client": "m4"}); got != 1 {
			return fmt.Errorf("broker: pcm_offers_pending{client=m4} = %v, want 1 (job A, no agent)", got)
		}
		for _, cl := range []string{"m1", "m3"} {
			if got := value(fams, "pcm_offers_pending", map[string]string{"client": cl}) + value(fams, "pcm_offers_ack_pending", map[string]string{"client": cl}); got != 0 {
				return fmt.Errorf("broker: %s has %v offers pending, want 0", cl, got)
			}
		}
		return nil
	})

	// An agent's: m1 started A and B, taking and releasing the lock for each.
	if err := metrics.AgentStats(areg, func() any { return agents[0].svc.Stats() }); err != nil {
		t.Fatal(err)
	}
	if err := metrics.GaugeFunc(areg, "agent_journal_outbox", "outbox", func() float64 { n, _ := agents[0].svc.Outbox(); return float64(n) }); err != nil {
		t.Fatal(err)
	}
	asrv := httptest.NewServer(metrics.Handler(areg))
	defer asrv.Close()
	fams := scrape(t, asrv.URL, "")
	if got := value(fams, "pcm_agent_started_total", nil); got != 2 {
		t.Errorf("agent m1: pcm_agent_started_total = %v, want 2", got)
	}
	if got := value(fams, "pcm_agent_journal_outbox", nil); got != 0 {
		t.Errorf("agent m1: pcm_agent_journal_outbox = %v, want 0", got)
	}
	for _, h := range []string{"pcm_agent_lock_wait_seconds", "pcm_agent_lock_hold_seconds"} {
		if got := value(fams, h, nil); got != 2 {
			t.Errorf("agent m1: %s counts %v, want 2", h, got)
		}
	}
}
