package metrics

import (
	"context"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/pcm-project/pcm/events"
)

// scrapeTimeout bounds the consumer list read at each scrape.
const scrapeTimeout = 5 * time.Second

// Consumers collects, at each scrape, the offers pending on each client's
// consumer of PCM_JOBS: not delivered yet, and delivered but not acked.
// It needs the right to list the stream's consumers (the broker's own
// connection, or an admin's).
type Consumers struct {
	js                  jetstream.JetStream
	pending, ackPending *prometheus.Desc
	up                  *prometheus.Desc
}

// NewConsumers returns the collector reading js; register it.
func NewConsumers(js jetstream.JetStream) *Consumers {
	return &Consumers{js: js,
		pending: prometheus.NewDesc(Namespace+"_offers_pending", "Offers stored for the client that its agent has not fetched yet (the consumer's pending count).",
			[]string{"client"}, nil),
		ackPending: prometheus.NewDesc(Namespace+"_offers_ack_pending", "Offers the client's agent fetched and has not acked yet (held for later, or running).",
			[]string{"client"}, nil),
		up: prometheus.NewDesc(Namespace+"_consumers_read_ok", "1 when the last scrape read the consumer list of PCM_JOBS, 0 when it failed.", nil, nil),
	}
}

// Describe implements prometheus.Collector.
func (c *Consumers) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.pending
	ch <- c.ackPending
	ch <- c.up
}

// Collect implements prometheus.Collector.
func (c *Consumers) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), scrapeTimeout)
	defer cancel()
	ok := 1.0
	stream, err := c.js.Stream(ctx, events.StreamJobs)
	if err != nil {
		ch <- prometheus.MustNewConstMetric(c.up, prometheus.GaugeValue, 0)
		return
	}
	l := stream.ListConsumers(ctx)
	for info := range l.Info() {
		client, found := strings.CutPrefix(info.Name, events.ConsumerName(""))
		if !found {
			continue
		}
		ch <- prometheus.MustNewConstMetric(c.pending, prometheus.GaugeValue, float64(info.NumPending), client)
		ch <- prometheus.MustNewConstMetric(c.ackPending, prometheus.GaugeValue, float64(info.NumAckPending), client)
	}
	if l.Err() != nil {
		ok = 0
	}
	ch <- prometheus.MustNewConstMetric(c.up, prometheus.GaugeValue, ok)
}
