// Command webhook serves the depends-on mutating admission webhook over HTTPS.
// It is flags and wiring only: the injection logic lives in package webhook.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"k8s.io/apimachinery/pkg/api/resource"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"github.com/depends-on/depends-on/webhook"
)

// Set at build time with -ldflags "-X main.version=... -X main.waitImage=...".
var (
	version   = "dev"
	waitImage = ""
)

func main() {
	os.Exit(runMain(os.Args[1:], os.Stderr))
}

func runMain(args []string, stderr io.Writer) int {
	opts, err := parseFlags(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintln(stderr, "webhook:", err)
		return 2
	}
	if opts.printVersion {
		fmt.Fprintln(stderr, "depends-on webhook", version)
		return 0
	}
	log := zap.New(zap.UseFlagOptions(&opts.zap), zap.WriteTo(stderr))

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if err := run(ctx, opts.server, log); err != nil {
		log.Error(err, "webhook server failed")
		return 1
	}
	return 0
}

type cliOptions struct {
	server       serverOptions
	zap          zap.Options
	printVersion bool
}

func defaultWaitImage() string {
	if waitImage != "" {
		return waitImage
	}
	return webhook.WaitImageName + ":" + version
}

func parseFlags(args []string, out io.Writer) (*cliOptions, error) {
	fs := flag.NewFlagSet("webhook", flag.ContinueOnError)
	fs.SetOutput(out)
	o := &cliOptions{zap: zap.Options{Development: false}}
	s := &o.server
	s.version = version

	fs.IntVar(&s.port, "port", 9443, "HTTPS port of the admission endpoint (/mutate)")
	fs.StringVar(&s.host, "host", "", "address to bind the HTTPS port on (default all)")
	fs.StringVar(&s.certDir, "cert-dir", "/tmp/k8s-webhook-server/serving-certs", "directory with tls.crt and tls.key; reloaded when they change")
	fs.StringVar(&s.healthAddr, "health-probe-bind-address", ":8081", "address of /healthz and /readyz")
	fs.StringVar(&s.metricsAddr, "metrics-bind-address", ":8080", "address of /metrics (Prometheus); 0 disables it")
	fs.DurationVar(&s.drainPeriod, "drain-period", 10*time.Second, "on SIGTERM, how long to keep serving while /readyz fails, so endpoints move away first")
	fs.DurationVar(&s.shutdownTimeout, "shutdown-timeout", 10*time.Second, "after draining, how long in-flight requests may take")

	config := webhook.BindConfigFlags(fs, defaultWaitImage(), func() string { return filepath.Join(s.certDir, "ca.crt") })
	inFlight := fs.String("max-in-flight-bytes", resource.NewQuantity(webhook.DefaultMaxInFlightBytes, resource.BinarySI).String(),
		"bytes of AdmissionReview bodies handled at once; more wait up to 1s, then get 429 (bounds memory)")
	fs.BoolVar(&s.skipSatisfied, "skip-satisfied", true, "with --readiness-url: inject nothing into a Pod whose dependencies are all objects (jobs, workloads, endpoints) the readiness service sees satisfied at admission (the record annotation says so); false: always inject")
	fs.DurationVar(&s.satisfiedDeadline, "satisfied-deadline", webhook.DefaultSatisfiedDeadline, "longest an admission waits for the readiness service when its answer is not cached; past it the Pod is injected")
	fs.DurationVar(&s.satisfiedTTL, "satisfied-ttl", 5*time.Second, "how long a satisfied answer is used, refreshed in the background after half of it")
	fs.StringVar(&s.satisfiedTokenFile, "satisfied-token-file", webhook.ReadinessTokenDir+"/token", "the webhook's projected ServiceAccount token for the readiness service (audience "+webhook.ReadinessAudience+"), read again before each request")
	fs.DurationVar(&s.caReloadInterval, "readiness-ca-reload-interval", 10*time.Second, "how often the webhook reads --readiness-ca-file again, so that a rotated CA reaches new wait containers without a restart (0: never)")
	fs.BoolVar(&o.printVersion, "version", false, "print the version and exit")
	o.zap.BindFlags(fs)

	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments: %v", fs.Args())
	}

	cfg, err := config()
	var errs []error
	if err != nil {
		errs = append(errs, err)
	}
	explicit := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { explicit[f.Name] = true })
	if cfg.ReadinessURL == "" && s.skipSatisfied && explicit["skip-satisfied"] {
		errs = append(errs, errors.New("--skip-satisfied needs --readiness-url"))
	}
	s.skipSatisfied = s.skipSatisfied && cfg.ReadinessURL != ""
	if s.satisfiedDeadline <= 0 || s.satisfiedDeadline > 2*time.Second {
		errs = append(errs, fmt.Errorf("--satisfied-deadline=%s: want more than 0 and at most 2s (admission must stay fast)", s.satisfiedDeadline))
	}
	if s.satisfiedTTL <= 0 || s.satisfiedTTL > time.Minute {
		errs = append(errs, fmt.Errorf("--satisfied-ttl=%s: want more than 0 and at most 1m", s.satisfiedTTL))
	}
	if q, err := resource.ParseQuantity(*inFlight); err != nil {
		errs = append(errs, fmt.Errorf("--max-in-flight-bytes=%q: %w", *inFlight, err))
	} else if q.Value() < webhook.DefaultMaxRequestBytes {
		errs = append(errs, fmt.Errorf("--max-in-flight-bytes=%s: must be at least the largest request, %d bytes", *inFlight, webhook.DefaultMaxRequestBytes))
	} else {
		s.maxInFlightBytes = q.Value()
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	s.injector = cfg
	return o, nil
}
