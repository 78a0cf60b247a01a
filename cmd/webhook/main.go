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
