package metrics

import (
	"net/http"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/pcm-project/pcm/internal/httpserve"
)

// Namespace starts the name of every metric pcm defines.
const Namespace = "pcm"

// NewRegistry returns a registry holding the Go runtime's and the
// process's collectors, to which each component adds its own.
func NewRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}

// Handler serves reg in the Prometheus text format (the /metrics page).
func Handler(reg *prometheus.Registry) http.Handler {
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg})
}

// Mux serves reg at /metrics, with /healthz and /readyz (see
// httpserve.Health).
func Mux(reg *prometheus.Registry, ready func() error) *http.ServeMux {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", Handler(reg))
	httpserve.Health(mux, ready)
	return mux
}

// Conn registers the reconnections of nc, labelled by the component that
// owns the connection (agent, broker, console, controller).
func Conn(reg prometheus.Registerer, nc *nats.Conn, component string) error {
	return reg.Register(prometheus.NewCounterFunc(prometheus.CounterOpts{
		Namespace: Namespace, Name: "nats_reconnects_total",
		Help:        "Reconnections of the component's NATS connection to the broker.",
		ConstLabels: prometheus.Labels{"component": component},
	}, func() float64 { return float64(nc.Stats().Reconnects) }))
}
