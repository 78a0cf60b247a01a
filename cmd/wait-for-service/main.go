// Command wait-for-service waits until network dependencies are ready: DNS
// names resolve, TCP ports accept connections, HTTP endpoints answer 2xx, and
// files are fetched. The depends-on webhook runs it as an init container.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/depends-on/depends-on/webhook/target"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

const (
	exitReady = 0
	exitFail  = 1 // timeout, interruption or permanent failure
	exitUsage = 2
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run is the whole program: it parses args (without the program name), waits
// for the targets and returns the exit code.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	return runWith(ctx, args, stdout, stderr, defaultTuning())
}

func runWith(ctx context.Context, args []string, stdout, stderr io.Writer, tu tuning) int {
	fs := flag.NewFlagSet("wait-for-service", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {} // errors get a short hint below; --help prints the full usage
	var (
		timeout        = fs.Duration("timeout", 0, "give up after this long (e.g. 90s, 5m) and exit 1; 0 waits forever")
		terminationLog = fs.String("termination-log", "/dev/termination-log", "write the one-line failure summary to this `path`")
		maxBytes       = fs.Int64("max-bytes", 32<<20, "size limit of the body of each fetch: target, in `bytes`; a larger body fails at once")
		dnsServer      = fs.String("dns-server", "", "use the DNS server at `host:port` (port 53 if omitted) instead of the system resolver")
		showVersion    = fs.Bool("version", false, "print the version and exit")
		// Object targets (object.go).
		readinessURL       = fs.String("readiness-url", "", "ask the depends-on readiness service at this https `URL` about object targets")
		readinessTokenFile = fs.String("readiness-token-file", "", "authenticate to the readiness service with the token in this `file`, read again before each request")
	)
	usageError := func(format string, a ...any) int {
		fmt.Fprintf(stderr, "wait-for-service: "+format+"\n", a...)
		fmt.Fprintln(stderr, "Run 'wait-for-service --help' for usage.")
		return exitUsage
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			printUsage(stdout, fs)
			return exitReady
		}
		// The flag package has already printed the error.
		fmt.Fprintln(stderr, "Run 'wait-for-service --help' for usage.")
		return exitUsage
	}
	if *showVersion {
		fmt.Fprintln(stdout, "wait-for-service", version)
		return exitReady
	}
	if *timeout < 0 {
		return usageError("--timeout must not be negative")
	}
	if *maxBytes <= 0 {
		return usageError("--max-bytes must be positive")
	}
	if *dnsServer != "" {
		addr, err := dnsServerAddr(*dnsServer)
		if err != nil {
			return usageError("invalid --dns-server %q: %v", *dnsServer, err)
		}
		*dnsServer = addr
	}
	if fs.NArg() == 0 {
		return usageError("no targets given")
	}
	log := newLogger(stderr)
	targets, err := parseTargets(fs.Args())
	var readiness *readinessConfig
	if err == nil { // object targets need the readiness service (object.go)
		readiness, err = newReadinessConfig(targets, *readinessURL, *readinessTokenFile, tu.readiness.getenv(envReadinessCA))
	}
	if err != nil {
		if err := os.WriteFile(*terminationLog, []byte(truncate(oneLine(err.Error()), maxTerminationMessage)), 0o644); err != nil {
			log.printf("cannot write termination log: %v", err)
		}
		return usageError("%v", err)
	}
	cfg := &config{
		timeout:        *timeout,
		terminationLog: *terminationLog,
		maxBytes:       *maxBytes,
		lookup:         newLookup(*dnsServer),
		tuning:         tu,
		readiness:      readiness,
	}
	return waitAll(ctx, cfg, targets, log)
}

// dnsServerAddr accepts "host:port", or a bare IP address or name for port 53.
func dnsServerAddr(s string) (string, error) {
	if _, port, err := net.SplitHostPort(s); err == nil {
		if _, err := target.ParsePort(port); err != nil {
			return "", err
		}
		return s, nil
	}
	host := strings.TrimSuffix(strings.TrimPrefix(s, "["), "]")
	if host == "" {
		return "", errors.New("want host:port")
	}
	return net.JoinHostPort(host, "53"), nil
}

func printUsage(w io.Writer, fs *flag.FlagSet) {
	fmt.Fprint(w, `Usage: wait-for-service [flags] TARGET...

Waits until every TARGET is ready, probing all of them in parallel with
backoff, then exits 0. Exits 1 when --timeout expires (or a fetch or an
object fails for good) after writing a one-line summary of what was not
ready to the termination log, and 2 on a usage error. Flags go before the
targets.

Targets:
`+target.Usage("  ")+`
Object targets (job: ... endpoints:) ask the depends-on readiness service
(--readiness-url, --readiness-token-file, and the CA certificates in PEM in
$DEPENDS_ON_READINESS_CA; the system's roots when it is unset).

Flags:
`)
	fs.VisitAll(func(f *flag.Flag) {
		name, usage := flag.UnquoteUsage(f)
		if name == "" || name == "value" && f.Name == "version" {
			fmt.Fprintf(w, "  --%s\n", f.Name)
		} else {
			fmt.Fprintf(w, "  --%s %s\n", f.Name, strings.ToUpper(name))
		}
		fmt.Fprintf(w, "        %s", usage)
		switch f.DefValue {
		case "", "false", "0s":
		default:
			fmt.Fprintf(w, " (default %s)", f.DefValue)
		}
		fmt.Fprintln(w)
	})
	fmt.Fprint(w, `  -h, --help
        show this help

Examples:
  wait-for-service dns:myservice.default.svc.cluster.local.
  wait-for-service --timeout 5m tcp:mydb.default.svc.cluster.local.:5432 \
      http://api.default.svc.cluster.local.:8080/healthz
  wait-for-service fetch:/config/app.json=http://config.default.svc.cluster.local./app.json
`)
}
