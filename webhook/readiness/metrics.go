package readiness

import (
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// Answer results, the label of answers_total.
const (
	ResultReady   = "ready"
	ResultFailed  = "failed"
	ResultWaiting = "waiting"
	ResultError   = "error"
)

// Metrics are the service's Prometheus collectors (prefix depends_on_readiness_).
type Metrics struct {
	Waiters     prometheus.Gauge
	Watches     prometheus.Gauge
	Answers     *prometheus.CounterVec
	WaitSeconds prometheus.Histogram
	// StatusAnswers counts the per-target answers of /v1/status by state
	// (ready, waiting, failed, unknown, refused; error for a refused request).
	StatusAnswers *prometheus.CounterVec
}

// NewMetrics creates the collectors and registers them with reg (if not nil).
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		Waiters: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "depends_on_readiness_waiters",
			Help: "Requests to /v1/wait being held or answered right now.",
		}),
		Watches: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "depends_on_readiness_watches",
			Help: "API watch streams open for waited-for targets (a Service's endpoints count two).",
		}),
		Answers: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "depends_on_readiness_answers_total",
			Help: "Answers of /v1/wait by result: ready, failed, waiting (reason changed or wait elapsed), error (4xx/5xx).",
		}, []string{"result"}),
		WaitSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "depends_on_readiness_wait_seconds",
			Help:    "How long /v1/wait requests were held before the answer.",
			Buckets: []float64{0.005, 0.025, 0.1, 0.25, 1, 2.5, 5, 10, 20, 30, 45, 60},
		}),
		StatusAnswers: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "depends_on_readiness_status_answers_total",
			Help: "Targets answered by /v1/status (the webhook's skip of satisfied dependencies) by state; error counts refused requests.",
		}, []string{"state"}),
	}
	for _, r := range []string{ResultReady, ResultFailed, ResultWaiting, ResultError} {
		m.Answers.WithLabelValues(r)
		m.StatusAnswers.WithLabelValues(r)
	}
	m.StatusAnswers.WithLabelValues(string(StateUnknown))
	m.StatusAnswers.WithLabelValues(string(StateRefused))
	if reg != nil {
		var errs []error
		for _, c := range []prometheus.Collector{m.Waiters, m.Watches, m.Answers, m.WaitSeconds, m.StatusAnswers} {
			errs = append(errs, reg.Register(c))
		}
		if err := errors.Join(errs...); err != nil {
			return nil, fmt.Errorf("register metrics: %w", err)
		}
	}
	return m, nil
}
