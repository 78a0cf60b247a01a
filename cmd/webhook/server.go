package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net/http"
	"os"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/sync/errgroup"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"
	ctrlwebhook "sigs.k8s.io/controller-runtime/pkg/webhook"

	"github.com/depends-on/depends-on/webhook"
	"github.com/depends-on/depends-on/webhook/satisfied"
	"github.com/depends-on/depends-on/webhook/serving"
)

// MutatePath is where the admission endpoint is served.
const MutatePath = "/mutate"

type serverOptions struct {
	host, certDir           string
	port                    int
	healthAddr, metricsAddr string
	drainPeriod             time.Duration
	shutdownTimeout         time.Duration
	injector                webhook.Config
	maxInFlightBytes        int64
	version                 string
	// skipSatisfied asks the readiness service (webhook/satisfied) about
	// object-only Pods; set only with a readiness URL.
	skipSatisfied      bool
	satisfiedDeadline  time.Duration
	satisfiedTTL       time.Duration
	satisfiedTokenFile string
	// caReloadInterval is how often the readiness CA file is read again
	// (0: never); a changed CA reaches new wait containers and the
	// satisfied client without a restart.
	caReloadInterval time.Duration
	// registry receives the metrics; nil means controller-runtime's registry,
	// which already holds its webhook request metrics.
	registry prometheus.Registerer
	gatherer prometheus.Gatherer
}

// decisionCounter counts admission outcomes in Prometheus.
type decisionCounter struct{ vec *prometheus.CounterVec }

func (d decisionCounter) Record(o webhook.Outcome) {
	d.vec.WithLabelValues(string(o.Decision), string(o.Reason)).Inc()
}

// run serves until ctx is done, then drains: /readyz fails and connections are
// closed after their current response for drainPeriod, so the Service's endpoints
// move to other replicas before the listener goes away.
func run(ctx context.Context, o serverOptions, log logr.Logger) error {
	logf.SetLogger(log)
	ctx = logf.IntoContext(ctx, log)

	injector, err := webhook.NewInjector(o.injector)
	if err != nil {
		return err
	}
	reg, gath := o.registry, o.gatherer
	if reg == nil {
		reg, gath = ctrlmetrics.Registry, ctrlmetrics.Registry
	}
	decisions := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "depends_on_admission_decisions_total",
		Help: "Admission requests by decision (allowed: nothing to inject, patched, denied, errored) and reason.",
	}, []string{"decision", "reason"})
	for _, o := range webhook.Outcomes() {
		decisions.WithLabelValues(string(o.Decision), string(o.Reason))
	}
	if err := reg.Register(decisions); err != nil {
		return fmt.Errorf("register metrics: %w", err)
	}
	defer reg.Unregister(decisions)

	recorder := decisionCounter{decisions}
	hopts := webhook.HandlerOptions{Recorder: recorder, SatisfiedDeadline: o.satisfiedDeadline}
	if o.skipSatisfied {
		s, err := newSatisfier(o, reg, log)
		if err != nil {
			return err
		}
		if s != nil {
			hopts.Satisfier = s
			defer reg.Unregister(s.metrics.Checks)
			go s.Run(ctx) // keeps the answers of recently asked targets fresh
		}
	}
	handler := webhook.NewHandler(injector, hopts)
	if f := o.injector.ReadinessCAFile; f != "" && o.caReloadInterval > 0 {
		go watchFile(ctx, f, o.injector.ReadinessCA, o.caReloadInterval, func(pem string) {
			cfg := o.injector
			cfg.ReadinessCA = pem
			in, err := webhook.NewInjector(cfg)
			if err != nil {
				log.Error(err, "readiness CA changed but is not usable: keeping the previous one", "file", f)
				return
			}
			if s, ok := hopts.Satisfier.(*satisfier); ok {
				if err := s.SetCA([]byte(pem)); err != nil {
					log.Error(err, "readiness CA changed but is not usable: keeping the previous one", "file", f)
					return
				}
			}
			handler.SetInjector(in)
			log.Info("readiness CA changed: new wait containers and the satisfied checks use it", "file", f)
		})
	}
	srv := ctrlwebhook.NewServer(ctrlwebhook.Options{
		Host:    o.host,
		Port:    o.port,
		CertDir: o.certDir,
		TLSOpts: []func(*tls.Config){func(c *tls.Config) {
			c.MinVersion = tls.VersionTLS12
			// HTTP/2 off: its rapid-reset and stream-exhaustion attacks are not worth it here.
			c.NextProtos = []string{"http/1.1"}
		}},
	})
	var draining atomic.Bool
	srv.Register(MutatePath, closeWhenDraining(&draining, webhook.NewReviewHandler(handler, webhook.ReviewOptions{
		Logger:           log.WithName("admission"),
		Recorder:         recorder,
		MaxInFlightBytes: o.maxInFlightBytes,
	})))

	started := srv.StartedChecker()
	healthMux := serving.HealthMux(map[string]healthz.Checker{
		"webhook":  started,
		"draining": serving.Draining(&draining),
	})

	serveCtx, stopServing := context.WithCancel(context.WithoutCancel(ctx))
	defer stopServing()
	g, gctx := errgroup.WithContext(serveCtx)
	g.Go(func() error { return srv.Start(gctx) })
	g.Go(func() error {
		return serving.ServeHTTP(gctx, "health", o.healthAddr, healthMux, o.shutdownTimeout, log)
	})
	if o.metricsAddr != "0" && o.metricsAddr != "" {
		metricsMux := http.NewServeMux()
		metricsMux.Handle("/metrics", promhttp.HandlerFor(gath, promhttp.HandlerOpts{}))
		g.Go(func() error {
			return serving.ServeHTTP(gctx, "metrics", o.metricsAddr, metricsMux, o.shutdownTimeout, log)
		})
	}
	log.Info("depends-on webhook starting", "version", o.version, "port", o.port, "certDir", o.certDir,
		"waitImage", o.injector.WaitImage, "clusterDomain", o.injector.ClusterDomain, "defaultTimeout", o.injector.DefaultTimeout.String(),
		"skipSatisfied", hopts.Satisfier != nil)

	select {
	case <-ctx.Done():
		log.Info("shutdown requested: draining", "drainPeriod", o.drainPeriod.String())
		draining.Store(true)
		select {
		case <-time.After(o.drainPeriod):
		case <-gctx.Done():
		}
		log.Info("drained: stopping", "shutdownTimeout", o.shutdownTimeout.String())
		stopServing()
	case <-gctx.Done():
	}
	// controller-runtime's webhook server waits up to a minute for in-flight
	// requests; the Pod's grace period is shorter, so bound the wait ourselves.
	stopped := make(chan error, 1)
	go func() { stopped <- g.Wait() }()
	select {
	case err := <-stopped:
		if err != nil && !errors.Is(err, context.Canceled) {
			return err
		}
		return nil
	case <-time.After(o.shutdownTimeout):
		return fmt.Errorf("requests still in flight after --shutdown-timeout=%s: exiting anyway", o.shutdownTimeout)
	}
}

// closeWhenDraining asks clients to reconnect (Connection: close) once draining
// starts, so the API server's keep-alive connections move to a ready replica.
func closeWhenDraining(draining *atomic.Bool, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if draining.Load() {
			w.Header().Set("Connection", "close")
		}
		next.ServeHTTP(w, r)
	})
}

// satisfier is the webhook.Satisfier with its metrics.
type satisfier struct {
	*satisfied.Client
	metrics *satisfied.Metrics
}

// newSatisfier returns the client of the readiness service's /v1/status, or
// nil (with a log line) when the webhook has no token for it: the
// Deployment mounts one only where the readiness service is installed.
func newSatisfier(o serverOptions, reg prometheus.Registerer, log logr.Logger) (*satisfier, error) {
	if _, err := os.Stat(o.satisfiedTokenFile); err != nil {
		log.Info("not skipping satisfied dependencies: no token for the readiness service (mount a projected ServiceAccount token, audience "+
			webhook.ReadinessAudience+", or set --skip-satisfied=false)", "tokenFile", o.satisfiedTokenFile, "error", err.Error())
		return nil, nil
	}
	m, err := satisfied.NewMetrics(reg)
	if err != nil {
		return nil, err
	}
	c, err := satisfied.New(satisfied.Options{
		URL:       o.injector.ReadinessURL,
		CA:        []byte(o.injector.ReadinessCA),
		TokenFile: o.satisfiedTokenFile,
		TTL:       o.satisfiedTTL,
		Metrics:   m,
		Log:       log.WithName("satisfied"),
	})
	if err != nil {
		reg.Unregister(m.Checks)
		return nil, fmt.Errorf("readiness status client: %w", err)
	}
	return &satisfier{Client: c, metrics: m}, nil
}

// watchFile reads file every interval until ctx is done and calls changed
// with its content when it differs from last (the kubelet replaces a Secret's
// files atomically, so a read sees the old or the new content whole). A
// read error keeps last.
func watchFile(ctx context.Context, file, last string, interval time.Duration, changed func(string)) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		b, err := os.ReadFile(file)
		if err != nil || string(b) == last {
			continue
		}
		last = string(b)
		changed(last)
	}
}
