package satisfied

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/depends-on/depends-on/webhook"
)

// Metrics count the checks of object-only Pods (prefix depends_on_satisfied_).
type Metrics struct {
	// Checks by result (satisfied, not-satisfied, unknown, error) and cache
	// (hit: answered from memory; miss: the readiness service was asked).
	Checks *prometheus.CounterVec
}

// NewMetrics creates the collectors and registers them with reg (if not nil).
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{Checks: prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "depends_on_satisfied_checks_total",
		Help: "Pods whose dependencies are all objects, checked against the readiness service before injecting: by result (satisfied: nothing injected) and cache (hit, miss).",
	}, []string{"result", "cache"})}
	for _, r := range []string{string(webhook.VerdictSatisfied), string(webhook.VerdictNotSatisfied), string(webhook.VerdictUnknown), "error"} {
		for _, c := range []string{"hit", "miss"} {
			m.Checks.WithLabelValues(r, c)
		}
	}
	if reg != nil {
		if err := reg.Register(m.Checks); err != nil {
			return nil, fmt.Errorf("register metrics: %w", err)
		}
	}
	return m, nil
}

func (m *Metrics) record(v webhook.Verdict, hit bool) {
	if m == nil {
		return
	}
	c := "miss"
	if hit {
		c = "hit"
	}
	m.Checks.WithLabelValues(string(v), c).Inc()
}

func (m *Metrics) recordError() {
	if m != nil {
		m.Checks.WithLabelValues("error", "miss").Inc()
	}
}
