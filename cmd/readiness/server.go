package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/sync/errgroup"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/client-go/tools/record"
	"sigs.k8s.io/controller-runtime/pkg/certwatcher"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/depends-on/depends-on/webhook/readiness"
	"github.com/depends-on/depends-on/webhook/serving"
)

type serverOptions struct {
	host, certDir           string
	port                    int
	healthAddr, metricsAddr string
	drainPeriod             time.Duration
	shutdownTimeout         time.Duration
	maxWaiters              int
	maxWait, linger         time.Duration
	eventInterval           time.Duration
	statusClients           []string
	statusSyncWait          time.Duration
	namespace, kubeconfig   string
	qps                     float64
	burst                   int
	version                 string
	// registry receives the metrics; nil means controller-runtime's registry.
	registry prometheus.Registerer
	gatherer prometheus.Gatherer
}

// run serves until ctx is done, then drains: /readyz fails for drainPeriod
// (the Service's endpoints drop this replica), held requests are answered
// and new ones refused with 503, and the servers stop.
func run(ctx context.Context, o serverOptions, log logr.Logger) error {
	logf.SetLogger(log)
	cfg, err := clientcmd.BuildConfigFromFlags("", o.kubeconfig)
	if err != nil {
		return fmt.Errorf("kubernetes client configuration: %w", err)
	}
	cfg.QPS, cfg.Burst = float32(o.qps), o.burst
	cfg.UserAgent = "depends-on-readiness/" + o.version
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}

	reg, gath := o.registry, o.gatherer
	if reg == nil {
		reg, gath = ctrlmetrics.Registry, ctrlmetrics.Registry
	}
	metrics, err := readiness.NewMetrics(reg)
	if err != nil {
		return err
	}

	certs, err := certwatcher.New(filepath.Join(o.certDir, "tls.crt"), filepath.Join(o.certDir, "tls.key"))
	if err != nil {
		return fmt.Errorf("serving certificate in --cert-dir=%s: %w", o.certDir, err)
	}

	// Background work lives until the servers have stopped, not just until SIGTERM.
	bg, stopBackground := context.WithCancel(context.WithoutCancel(ctx))
	defer stopBackground()

	completions := readiness.NewConfigMapCompletions(bg, client.CoreV1().ConfigMaps(o.namespace),
		readiness.CompletionOptions{Log: log.WithName("completions")})
	if err := completions.Load(ctx); err != nil {
		// Not fatal: completions are then remembered in memory, and written once the ConfigMap is back.
		log.Error(err, "remembered Job completions not loaded", "namespace", o.namespace, "configMap", readiness.StateConfigMap)
	}
	namespaces := readiness.NewNamespaceCache(client, log)
	go namespaces.Run(bg)
	watches := readiness.NewWatches(bg, client, readiness.WatchOptions{
		Linger: o.linger, Completions: completions, Log: log.WithName("watch"),
		OnWatches: func(d int) { metrics.Watches.Add(float64(d)) },
	})

	broadcaster := record.NewBroadcaster(record.WithContext(bg))
	// Events get their own client and rate limiter: a burst of new waiters
	// must not delay TokenReviews and watches (the broadcaster drops past 1000 queued).
	eventsCfg := rest.CopyConfig(cfg)
	eventsCfg.QPS, eventsCfg.Burst = 20, 50
	eventsClient, err := kubernetes.NewForConfig(eventsCfg)
	if err != nil {
		return err
	}
	broadcaster.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: eventsClient.CoreV1().Events("")})
	defer broadcaster.Shutdown()
	recorder := broadcaster.NewRecorder(scheme.Scheme, corev1.EventSource{Component: "depends-on-readiness"})

	handler, err := readiness.NewHandler(readiness.HandlerOptions{
		Authenticator:  readiness.NewTokenReviewAuthenticator(client.AuthenticationV1().TokenReviews(), readiness.TokenReviewOptions{}),
		Authorizer:     readiness.NamespaceAuthorizer{Namespaces: namespaces},
		Source:         watches,
		Notifier:       readiness.NewEventNotifier(recorder, readiness.EventNotifierOptions{Interval: o.eventInterval}),
		Metrics:        metrics,
		MaxWaiters:     o.maxWaiters,
		MaxWait:        o.maxWait,
		StatusClients:  o.statusClients,
		StatusSyncWait: o.statusSyncWait,
		Log:            log.WithName("api"),
	})
	if err != nil {
		return err
	}

	var draining atomic.Bool
	healthMux := serving.HealthMux(map[string]healthz.Checker{
		"namespaces": func(*http.Request) error {
			if !namespaces.HasSynced() {
				return errors.New("namespace informer not synced")
			}
			return nil
		},
		"draining": serving.Draining(&draining),
	})

	ln, err := net.Listen("tcp", net.JoinHostPort(o.host, strconv.Itoa(o.port)))
	if err != nil {
		return fmt.Errorf("readiness API: %w", err)
	}
	api := &http.Server{
		Handler: handler,
		// No ReadTimeout: it would also cut the held long-polls. Requests are
		// bodiless GETs; the header deadline bounds slow clients.
		ReadHeaderTimeout: 10 * time.Second,
		WriteTimeout:      o.maxWait + 30*time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    32 << 10,
		TLSConfig: &tls.Config{
			MinVersion:     tls.VersionTLS12,
			GetCertificate: certs.GetCertificate,
			// HTTP/1.1 only: one long-poll per connection, no HTTP/2 stream attacks.
			NextProtos: []string{"http/1.1"},
		},
		TLSNextProto: map[string]func(*http.Server, *tls.Conn, http.Handler){},
	}

	serveCtx, stopServing := context.WithCancel(context.WithoutCancel(ctx))
	defer stopServing()
	g, gctx := errgroup.WithContext(serveCtx)
	g.Go(func() error { return certs.Start(gctx) })
	g.Go(func() error {
		go func() {
			<-gctx.Done()
			sctx, cancel := context.WithTimeout(context.Background(), o.shutdownTimeout)
			defer cancel()
			_ = api.Shutdown(sctx)
		}()
		log.Info("serving", "server", "readiness", "addr", ln.Addr().String())
		if err := api.ServeTLS(ln, "", ""); err != nil && !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("readiness API: %w", err)
		}
		return nil
	})
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
	log.Info("depends-on readiness starting", "version", o.version, "port", o.port, "certDir", o.certDir,
		"namespace", o.namespace, "maxWaiters", o.maxWaiters, "maxWait", o.maxWait.String(), "statusClients", o.statusClients)

	select {
	case <-ctx.Done():
		log.Info("shutdown requested: draining", "drainPeriod", o.drainPeriod.String(), "inflight", handler.Inflight())
		draining.Store(true)
		select {
		case <-time.After(o.drainPeriod):
		case <-gctx.Done():
		}
		handler.Drain()
		log.Info("drained: stopping", "shutdownTimeout", o.shutdownTimeout.String())
		stopServing()
	case <-gctx.Done():
	}
	stopped := make(chan error, 1)
	go func() { stopped <- g.Wait() }()
	var runErr error
	select {
	case err := <-stopped:
		if err != nil && !errors.Is(err, context.Canceled) {
			runErr = err
		}
	case <-time.After(o.shutdownTimeout + time.Second):
		runErr = fmt.Errorf("requests still in flight after --shutdown-timeout=%s: exiting anyway", o.shutdownTimeout)
	}
	// Persist what this replica learnt before it goes.
	fctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := completions.Flush(fctx); err != nil {
		log.Error(err, "persist remembered Job completions at shutdown")
	}
	return runErr
}
