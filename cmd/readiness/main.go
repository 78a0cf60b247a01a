// Command readiness serves the depends-on readiness service (issue 9): the
// injected wait-for-service containers long-poll it over HTTPS to learn when
// the Jobs, workloads and endpoints they depend on are ready. Flags and wiring
// only: the logic lives in package webhook/readiness.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"sigs.k8s.io/controller-runtime/pkg/log/zap"
)

// Set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	os.Exit(runMain(os.Args[1:], os.Stderr))
}

func runMain(args []string, stderr io.Writer) int {
	opts, err := parseFlags(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintln(stderr, "readiness:", err)
		return 2
	}
	if opts.printVersion {
		fmt.Fprintln(stderr, "depends-on readiness", version)
		return 0
	}
	log := zap.New(zap.UseFlagOptions(&opts.zap), zap.WriteTo(stderr))
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if err := run(ctx, opts.server, log); err != nil {
		log.Error(err, "readiness server failed")
		return 1
	}
	return 0
}

type cliOptions struct {
	server       serverOptions
	zap          zap.Options
	printVersion bool
}

func parseFlags(args []string, out io.Writer) (*cliOptions, error) {
	fs := flag.NewFlagSet("readiness", flag.ContinueOnError)
	fs.SetOutput(out)
	o := &cliOptions{}
	s := &o.server
	s.version = version
	fs.IntVar(&s.port, "port", 8443, "HTTPS port of the readiness API (/v1/wait)")
	fs.StringVar(&s.host, "host", "", "address to bind the HTTPS port on (default all)")
	fs.StringVar(&s.certDir, "cert-dir", "/etc/depends-on/readiness-tls", "directory with tls.crt and tls.key; reloaded when they change")
	fs.StringVar(&s.healthAddr, "health-probe-bind-address", ":8081", "address of /healthz and /readyz")
	fs.StringVar(&s.metricsAddr, "metrics-bind-address", ":8080", "address of /metrics (Prometheus); 0 disables it")
	fs.DurationVar(&s.drainPeriod, "drain-period", 10*time.Second, "on SIGTERM, how long to keep serving while /readyz fails, before held requests are answered and new ones refused")
	fs.DurationVar(&s.shutdownTimeout, "shutdown-timeout", 10*time.Second, "after draining, how long in-flight requests may take")
	fs.IntVar(&s.maxWaiters, "max-waiters", 10000, "concurrent /v1/wait requests; above it the server answers 503")
	fs.DurationVar(&s.maxWait, "max-wait", 60*time.Second, "longest a request is held (its wait= is capped to this)")
	fs.DurationVar(&s.linger, "watch-linger", 30*time.Second, "how long a target's watch stays open after its last waiter left")
	fs.DurationVar(&s.eventInterval, "event-interval", 30*time.Second, "at most one Event per waiting Pod and target per interval (and one when the reason changes)")
	fs.StringVar(&s.namespace, "namespace", envOr("POD_NAMESPACE", "depends-on-system"), "namespace of the state ConfigMap (default $POD_NAMESPACE)")
	fs.StringVar(&s.kubeconfig, "kubeconfig", os.Getenv("KUBECONFIG"), "kubeconfig file (default: in-cluster configuration)")
	fs.Float64Var(&s.qps, "kube-api-qps", 100, "client-side rate of API requests (TokenReviews, lists, Events)")
	fs.IntVar(&s.burst, "kube-api-burst", 200, "client-side burst of API requests")
	statusClients := fs.String("status-clients", "", "comma-separated users (system:serviceaccount:NAMESPACE:NAME) allowed to ask /v1/status, the immediate answer the admission webhook uses to skip satisfied dependencies; empty: nobody")
	fs.DurationVar(&s.statusSyncWait, "status-sync-wait", 100*time.Millisecond, "how long /v1/status waits for a watch it opened to list its target before answering unknown")
	fs.BoolVar(&o.printVersion, "version", false, "print the version and exit")
	o.zap.BindFlags(fs)
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments: %v", fs.Args())
	}
	for _, c := range strings.Split(*statusClients, ",") {
		c = strings.TrimSpace(c)
		if c == "" {
			continue
		}
		if rest, ok := strings.CutPrefix(c, "system:serviceaccount:"); !ok || strings.Count(rest, ":") != 1 || strings.HasPrefix(rest, ":") || strings.HasSuffix(rest, ":") {
			return nil, fmt.Errorf("--status-clients: %q is not system:serviceaccount:NAMESPACE:NAME", c)
		}
		s.statusClients = append(s.statusClients, c)
	}
	switch {
	case s.statusSyncWait <= 0 || s.statusSyncWait > 5*time.Second:
		return nil, fmt.Errorf("--status-sync-wait=%s: want more than 0 and at most 5s (the webhook waits less)", s.statusSyncWait)
	case s.port < 1 || s.port > 65535:
		return nil, fmt.Errorf("--port=%d: want 1-65535", s.port)
	case s.maxWaiters < 1:
		return nil, fmt.Errorf("--max-waiters=%d: want at least 1", s.maxWaiters)
	case s.maxWait < time.Second:
		return nil, fmt.Errorf("--max-wait=%s: want at least 1s", s.maxWait)
	case s.namespace == "":
		return nil, errors.New("--namespace is empty")
	}
	return o, nil
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}
