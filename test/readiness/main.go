// Command readiness measures how soon wait-for-service notices that a backend
// came up, and how hard it probes while waiting, next to the loop the docs
// replace: `until nslookup NAME; do sleep 2; done` (and its TCP variant).
//
// It builds ./cmd/wait-for-service and, for each case, runs it -runs times
// against loopback backends that come up at a random instant (uniform in
// [-lead, -lead + -window] after the start):
//
//	tcp       tcp:NAME:PORT, NAME resolves from the start, PORT is closed, then listens
//	http      http://NAME:PORT/ready answers 503, then 200
//	dns       dns:NAME, NAME is NXDOMAIN, then resolves
//	loop-dns  the docs' loop, in Go: look NAME up; if it fails sleep 2s and retry
//	loop-tcp  the same with a TCP connect (until nc -z NAME PORT; do sleep 2; done)
//
// Names are served by a small UDP DNS server on 127.0.0.1 (wait-for-service
// --dns-server). The delay is from the instant the backend is up to the exit
// of the process (0) or the end of the loop. Probes per second, while the
// backend is down, come from the intervals between consecutive HTTP requests
// or DNS questions for the name; for tcp, refused connects are only counted
// for the whole phase (the TCP AttemptFails counter of /proc/net/snmp, minus
// the background rate measured while nothing of ours connects), so a range is
// given. See docs/performance.md.
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/depends-on/depends-on/test/internal/machine"
	"github.com/depends-on/depends-on/test/testutil"

	"golang.org/x/net/dns/dnsmessage"
)

const (
	maxRuns     = 200
	runTimeout  = 40 * time.Second // one run, whatever happens
	wfsTimeout  = "30s"            // wait-for-service --timeout
	loopTimeout = 30 * time.Second
)

type options struct {
	runs, parallel int
	lead, window   time.Duration
	sleep          time.Duration
	cases          string
	wfsBin         string
}

func main() {
	var o options
	flag.IntVar(&o.runs, "runs", 30, "runs of each case (at most 200)")
	flag.IntVar(&o.parallel, "parallel", 10, "runs of a case at the same time")
	flag.DurationVar(&o.lead, "lead", 2*time.Second, "the backend comes up no sooner than this after the start")
	flag.DurationVar(&o.window, "window", 4*time.Second, "... and at a uniformly random instant within this window after -lead")
	flag.DurationVar(&o.sleep, "loop-sleep", 2*time.Second, "sleep of the docs' loop between two probes")
	flag.StringVar(&o.cases, "cases", "dns,loop-dns,tcp,loop-tcp,http", "cases to run, in this order")
	flag.StringVar(&o.wfsBin, "wfs-bin", "", "wait-for-service binary (default: go build ./cmd/wait-for-service)")
	flag.Parse()
	if err := run(o); err != nil {
		fmt.Fprintln(os.Stderr, "readiness:", err)
		os.Exit(1)
	}
}

// outcome is one run of a case.
type outcome struct {
	delay  time.Duration // backend up -> detected
	waited time.Duration // start -> backend up
	probes int64         // probes seen before the backend was up (-1: not countable per run)
	span   time.Duration // from the first to the last of those probes
	dnsA   int64         // A questions for the name before it was up (dns cases), or over the whole run (tcp/http names)
	err    error
}

type caseResult struct {
	name     string
	outs     []outcome
	phase    time.Duration
	attempts int64 // TCP AttemptFails over the phase
}

func run(o options) error {
	if o.runs < 1 || o.runs > maxRuns || o.parallel < 1 || o.parallel > 64 {
		return fmt.Errorf("-runs must be in 1..%d and -parallel in 1..64", maxRuns)
	}
	if o.lead < 0 || o.window <= 0 || o.lead+o.window > 20*time.Second || o.sleep <= 0 || o.sleep > 10*time.Second {
		return errors.New("-lead + -window must be at most 20s, -loop-sleep in (0, 10s]")
	}
	root, err := machine.ModuleRoot()
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "readiness-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	bin := o.wfsBin
	if bin == "" {
		bin = filepath.Join(dir, "wait-for-service")
		fmt.Println("building ./cmd/wait-for-service ...")
		build := exec.Command("go", "build", "-o", bin, "./cmd/wait-for-service")
		build.Dir, build.Stdout, build.Stderr = root, os.Stderr, os.Stderr
		if err := build.Run(); err != nil {
			return fmt.Errorf("go build ./cmd/wait-for-service: %w", err)
		}
	}
	dns, err := testutil.StartDNS()
	if err != nil {
		return err
	}
	defer dns.Close()

	fmt.Printf("machine: %d CPUs (%s); load average %s\n", runtime.NumCPU(), machine.CPUModel(), machine.LoadAvg())
	fmt.Printf("%d runs per case, %d at a time; backend up at start + %s + U(0, %s); docs' loop sleeps %s\n",
		o.runs, o.parallel, o.lead, o.window, o.sleep)

	b := &bench{o: o, bin: bin, dir: dir, dns: dns}
	var results []*caseResult
	var quiet time.Duration // phases in which nothing of ours opens TCP connections
	var quietFails int64
	for _, c := range strings.Split(o.cases, ",") {
		c = strings.TrimSpace(c)
		runOne, ok := map[string]func(int) outcome{
			"tcp": b.tcp, "http": b.http, "dns": b.dnsCase, "loop-dns": b.loopDNS, "loop-tcp": b.loopTCP,
		}[c]
		if !ok {
			return fmt.Errorf("unknown case %q", c)
		}
		fmt.Printf("running %s ... (load average %s)\n", c, machine.LoadAvg())
		res := &caseResult{name: c}
		f0, _ := attemptFails()
		t0 := time.Now()
		res.outs = b.runCase(c, runOne)
		res.phase = time.Since(t0)
		f1, _ := attemptFails()
		res.attempts = f1 - f0
		if c == "dns" || c == "loop-dns" {
			quiet += res.phase
			quietFails += res.attempts
		}
		results = append(results, res)
	}
	background := -1.0
	if quiet > 0 {
		background = float64(quietFails) / quiet.Seconds()
	}
	report(results, background)
	fmt.Printf("load average at the end %s\n", machine.LoadAvg())
	for _, r := range results {
		for _, out := range r.outs {
			if out.err != nil {
				return fmt.Errorf("%s: some runs failed", r.name)
			}
		}
	}
	return nil
}

type bench struct {
	o    options
	bin  string
	dir  string
	dns  *testutil.DNSServer
	seq  atomic.Int64
	rndM sync.Mutex
}

func (b *bench) upAfter() time.Duration {
	b.rndM.Lock()
	defer b.rndM.Unlock()
	return b.o.lead + time.Duration(rand.Int64N(int64(b.o.window)))
}

func (b *bench) runCase(name string, f func(int) outcome) []outcome {
	outs := make([]outcome, b.o.runs)
	sem := make(chan struct{}, b.o.parallel)
	var wg sync.WaitGroup
	for i := range b.o.runs {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			outs[i] = f(int(b.seq.Add(1)))
			if outs[i].err != nil {
				fmt.Printf("  %s run %d: %v\n", name, i, outs[i].err)
			}
		})
		// Spread the starts a little so runs do not probe in lockstep.
		time.Sleep(37 * time.Millisecond)
	}
	wg.Wait()
	return outs
}

// wfs runs wait-for-service on target; up is called at the up instant (it
// brings the backend up and returns when the probes before arrived, or nil if
// it cannot tell). It returns when the process exits.
func (b *bench) wfs(target string, up func() []time.Time) outcome {
	ctx, cancel := context.WithTimeout(context.Background(), runTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, b.bin, "--timeout="+wfsTimeout, "--dns-server="+b.dns.Addr,
		"--termination-log="+filepath.Join(b.dir, "termination-"+strconv.FormatInt(b.seq.Add(1), 10)), target)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return outcome{err: err}
	}
	exited := make(chan time.Time, 1)
	var werr error
	go func() {
		werr = cmd.Wait()
		exited <- time.Now()
	}()
	timer := time.NewTimer(b.upAfter())
	defer timer.Stop()
	select {
	case <-timer.C:
	case <-exited:
		return outcome{err: fmt.Errorf("exited before the backend was up: %v: %s", werr, lastLine(stderr.String()))}
	}
	upAt := time.Now()
	probes, span := fromTimes(up())
	end := <-exited
	if werr != nil {
		return outcome{err: fmt.Errorf("%v: %s", werr, lastLine(stderr.String()))}
	}
	return outcome{delay: end.Sub(upAt), waited: upAt.Sub(start), probes: probes, span: span}
}

// fromTimes counts probes and the time from the first to the last.
func fromTimes(ts []time.Time) (int64, time.Duration) {
	if len(ts) == 0 {
		return 0, 0
	}
	return int64(len(ts)), ts[len(ts)-1].Sub(ts[0])
}

func lastLine(s string) string {
	s = strings.TrimSpace(s)
	return s[strings.LastIndexByte(s, '\n')+1:]
}

// reservePort returns a loopback port that is free now, outside the
// ephemeral range (so that no outgoing connection takes it meanwhile).
func reservePort() (int, error) {
	for range 100 {
		p := 20000 + rand.IntN(12000)
		ln, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p))
		if err == nil {
			ln.Close()
			return p, nil
		}
	}
	return 0, errors.New("no free port")
}

// acceptAll accepts and closes connections until ln is closed.
func acceptAll(ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		c.Close()
	}
}

func (b *bench) tcp(id int) outcome {
	name := fmt.Sprintf("db-%d.bench.test.", id)
	b.dns.Set(name, netip.MustParseAddr("127.0.0.1"))
	port, err := reservePort()
	if err != nil {
		return outcome{err: err}
	}
	var ln net.Listener
	var lnErr error
	out := b.wfs(fmt.Sprintf("tcp:%s:%d", name, port), func() []time.Time {
		ln, lnErr = net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port))
		if lnErr == nil {
			go acceptAll(ln)
		}
		return nil
	})
	out.probes = -1 // counted for the phase from AttemptFails
	if ln != nil {
		ln.Close()
	}
	if out.err == nil && lnErr != nil {
		out.err = lnErr
	}
	out.dnsA = int64(len(b.dns.Times(name, dnsmessage.TypeA)))
	return out
}

func (b *bench) http(id int) outcome {
	name := fmt.Sprintf("api-%d.bench.test.", id)
	b.dns.Set(name, netip.MustParseAddr("127.0.0.1"))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return outcome{err: err}
	}
	var ready atomic.Bool
	var mu sync.Mutex
	var requests []time.Time // before ready
	srv := &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		if !ready.Load() {
			requests = append(requests, time.Now())
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		w.WriteHeader(http.StatusOK)
	})}
	go func() { _ = srv.Serve(ln) }()
	defer srv.Close()
	url := fmt.Sprintf("http://%s:%d/ready", name, ln.Addr().(*net.TCPAddr).Port)
	out := b.wfs(url, func() []time.Time {
		mu.Lock()
		defer mu.Unlock()
		ready.Store(true)
		return requests
	})
	out.dnsA = int64(len(b.dns.Times(name, dnsmessage.TypeA)))
	return out
}

func (b *bench) dnsCase(id int) outcome {
	name := fmt.Sprintf("svc-%d.bench.test.", id)
	out := b.wfs("dns:"+name, func() []time.Time {
		return b.dns.Set(name, netip.MustParseAddr("127.0.0.1"))
	})
	out.dnsA = out.probes
	return out
}

// loop runs probe, then sleeps -loop-sleep, until probe succeeds: the docs'
// shell loop. It returns the number of probes before up.
func (b *bench) loop(probe func(context.Context) error, up func()) outcome {
	ctx, cancel := context.WithTimeout(context.Background(), loopTimeout)
	defer cancel()
	start := time.Now()
	upAt := start.Add(b.upAfter())
	var upOnce sync.Once
	upTimer := time.AfterFunc(time.Until(upAt), func() { upOnce.Do(up) })
	defer upTimer.Stop()
	var probes []time.Time // before up
	for {
		pctx, pcancel := context.WithTimeout(ctx, time.Second)
		t := time.Now()
		err := probe(pctx)
		pcancel()
		if err == nil {
			if t.Before(upAt) {
				return outcome{err: errors.New("ready before the backend was up")}
			}
			n, span := fromTimes(probes)
			return outcome{delay: time.Since(upAt), waited: upAt.Sub(start), probes: n, span: span}
		}
		if t.Before(upAt) {
			probes = append(probes, t)
		}
		select {
		case <-ctx.Done():
			return outcome{err: fmt.Errorf("not ready after %s: %v", loopTimeout, err)}
		case <-time.After(b.o.sleep):
		}
	}
}

func (b *bench) resolver() *net.Resolver {
	return &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, network, b.dns.Addr)
	}}
}

func (b *bench) loopDNS(id int) outcome {
	name := fmt.Sprintf("loop-%d.bench.test.", id)
	r := b.resolver()
	out := b.loop(func(ctx context.Context) error {
		_, err := r.LookupHost(ctx, name)
		return err
	}, func() { b.dns.Set(name, netip.MustParseAddr("127.0.0.1")) })
	out.dnsA = int64(len(b.dns.UnknownTimes(name)))
	return out
}

func (b *bench) loopTCP(id int) outcome {
	name := fmt.Sprintf("loopdb-%d.bench.test.", id)
	b.dns.Set(name, netip.MustParseAddr("127.0.0.1"))
	port, err := reservePort()
	if err != nil {
		return outcome{err: err}
	}
	d := net.Dialer{Resolver: b.resolver()}
	var ln net.Listener
	var mu sync.Mutex
	out := b.loop(func(ctx context.Context) error {
		c, err := d.DialContext(ctx, "tcp", net.JoinHostPort(name, strconv.Itoa(port)))
		if err == nil {
			c.Close()
		}
		return err
	}, func() {
		mu.Lock()
		defer mu.Unlock()
		var err error
		if ln, err = net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port)); err == nil {
			go acceptAll(ln)
		}
	})
	mu.Lock()
	if ln != nil {
		ln.Close()
	}
	mu.Unlock()
	out.dnsA = int64(len(b.dns.Times(name, dnsmessage.TypeA)))
	return out
}

// attemptFails reads the TCP AttemptFails counter: connections that went from
// SYN-SENT to CLOSED, i.e. refused connects.
func attemptFails() (int64, error) {
	f, err := os.Open("/proc/net/snmp")
	if err != nil {
		return 0, err
	}
	defer f.Close()
	var header []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) == 0 || fields[0] != "Tcp:" {
			continue
		}
		if header == nil {
			header = fields
			continue
		}
		if i := slices.Index(header, "AttemptFails"); i > 0 && i < len(fields) {
			return strconv.ParseInt(fields[i], 10, 64)
		}
	}
	return 0, errors.New("no Tcp AttemptFails in /proc/net/snmp")
}

func report(results []*caseResult, background float64) {
	fmt.Println()
	fmt.Printf("%-9s %4s %4s  %8s %8s %8s %8s  %-34s\n", "case", "runs", "errs", "p50", "p90", "p99", "max", "probes/s while waiting (per target)")
	p50, maxs := map[string]time.Duration{}, map[string]time.Duration{}
	for _, r := range results {
		var delays []time.Duration
		var waited, whole, span time.Duration
		var probes, intervals, dnsA int64
		errs := 0
		for _, out := range r.outs {
			if out.err != nil {
				errs++
				continue
			}
			delays = append(delays, out.delay)
			waited += out.waited
			whole += out.waited + out.delay
			probes += out.probes
			if out.probes >= 2 {
				intervals += out.probes - 1
				span += out.span
			}
			dnsA += out.dnsA
		}
		slices.Sort(delays)
		p50[r.name], maxs[r.name] = machine.Percentile(delays, 0.5), machine.Percentile(delays, 1)
		// Probes per second: intervals between consecutive probes over
		// their total length (counting probes over the waiting time would
		// include each run's first probe, at its start).
		perSec := float64(intervals) / span.Seconds()
		var rate string
		w := waited.Seconds()
		switch r.name {
		case "tcp":
			// Only the phase's total is known: give the range between
			// counting each run's first connect and not.
			if background >= 0 && w > 0 {
				ours := float64(r.attempts) - background*r.phase.Seconds()
				rate = fmt.Sprintf("%.2f-%.2f connects (%d refused in the phase, background %.2f/s); DNS %.2f lookups/s over the run",
					(ours-float64(len(delays)))/w, ours/w, r.attempts, background, float64(dnsA)/whole.Seconds())
			}
		case "http":
			rate = fmt.Sprintf("%.2f requests; DNS %.2f lookups/s over the run", perSec, float64(dnsA)/whole.Seconds())
		case "dns", "loop-dns":
			rate = fmt.Sprintf("%.2f lookups (each an A and an AAAA question)", perSec)
		case "loop-tcp":
			rate = fmt.Sprintf("%.2f connects (%d refused, %d counted by AttemptFails in the phase)", perSec, probes, r.attempts)
		}
		if w == 0 {
			rate = "-"
		}
		fmt.Printf("%-9s %4d %4d  %8s %8s %8s %8s  %s\n", r.name, len(r.outs), errs,
			ms(machine.Percentile(delays, 0.5)), ms(machine.Percentile(delays, 0.9)), ms(machine.Percentile(delays, 0.99)), ms(machine.Percentile(delays, 1)), rate)
	}
	fmt.Println("(delay: from the backend coming up to wait-for-service exiting 0, or to the loop's success;")
	fmt.Println(" probes/s: while the backend was down, from the intervals between consecutive probes)")
	for _, pair := range [][2]string{{"dns", "loop-dns"}, {"tcp", "loop-tcp"}} {
		a, oka := p50[pair[0]]
		b, okb := p50[pair[1]]
		if oka && okb && a > 0 && maxs[pair[0]] > 0 {
			fmt.Printf("%s vs the docs' loop (%s): p50 %s vs %s (%.1fx sooner), max %s vs %s (%.1fx)\n", pair[0], pair[1],
				ms(a), ms(b), float64(b)/float64(a), ms(maxs[pair[0]]), ms(maxs[pair[1]]), float64(maxs[pair[1]])/float64(maxs[pair[0]]))
		}
	}
}

func ms(d time.Duration) string { return strconv.FormatFloat(float64(d)/1e6, 'f', 0, 64) + "ms" }
