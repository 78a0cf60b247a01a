// Command loadgen measures the real webhook server under load: it builds
// ./cmd/webhook, starts it on loopback with a fresh certificate, and posts
// AdmissionReviews of an API-server-shaped Pod over TLS from keep-alive
// HTTP/1.1 connections, then prints throughput, latency percentiles, errors,
// and the server's CPU and memory.
//
//	go run ./test/loadgen -mode=max -concurrency=8 -duration=10s
//	go run ./test/loadgen -mode=rate -rate=1000 -duration=10s
//
// -mode=max runs closed loop: each connection sends its next request when the
// previous answer arrives. -mode=rate runs open loop: request i is due at
// start+i/rate whatever happened before, and its latency is counted from that
// due time, so a stalled server shows up as latency instead of as requests
// not sent (no coordinated omission). -mode=both runs max, then rate, against
// the same server. -mode=memory posts bursts of large concurrent bodies
// (16 x 3 MB, 8 x 7 MB, 32 x 10 MB) to a server running with GOMEMLIMIT
// equal to the Deployment's memory limit, and prints its peak RSS, which must
// stay under that limit. -satisfied (with KUBEBUILDER_ASSETS) admits Pods
// whose dependencies are completed Jobs, which the webhook answers from its
// cache of the real readiness service (test/loadgen/satisfied.go), then the
// injected Pod against the same server. See docs/performance.md.
package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/depends-on/depends-on/test/internal/machine"

	admissionv1 "k8s.io/api/admission/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	k8sruntime "k8s.io/apimachinery/pkg/runtime"

	"github.com/depends-on/depends-on/certs/certgen"
)

// Bounds, whatever the flags say.
const (
	maxDuration    = 5 * time.Minute
	maxConcurrency = 512
	maxRate        = 100000
	startTimeout   = 60 * time.Second
)

type options struct {
	mode        string
	concurrency int
	rate        float64
	duration    time.Duration
	warmup      time.Duration
	requests    int64
	pod         string
	annotated   bool
	serverBin   string
	keep        bool
	memLimit    int64 // bytes; -mode=memory
	rounds      int
	satisfied   bool
}

func main() {
	var o options
	flag.StringVar(&o.mode, "mode", "max", "max (closed loop, as fast as possible), rate (open loop at -rate), both, or memory (bursts of large bodies)")
	flag.Int64Var(&o.memLimit, "memory-limit", 128<<20, "-mode=memory: the server's GOMEMLIMIT and the bound on its peak RSS, in bytes (the Deployment's limit)")
	flag.IntVar(&o.rounds, "rounds", 5, "-mode=memory: bursts of each size")
	flag.IntVar(&o.concurrency, "concurrency", 8, "keep-alive connections (one request in flight on each)")
	flag.Float64Var(&o.rate, "rate", 1000, "requests per second in -mode=rate")
	flag.DurationVar(&o.duration, "duration", 10*time.Second, "measured time of each mode (at most "+maxDuration.String()+")")
	flag.DurationVar(&o.warmup, "warmup", time.Second, "load before the measured time, not counted")
	flag.Int64Var(&o.requests, "requests", 0, "stop each mode after this many measured requests (0: -duration only)")
	flag.StringVar(&o.pod, "pod", "webhook/testdata/bench-pod.json", "Pod JSON to admit (relative to the module root)")
	flag.BoolVar(&o.annotated, "annotated", true, "keep the Pod's depends-on.dev/ annotations (false: a Pod with nothing to inject)")
	flag.StringVar(&o.serverBin, "server-bin", "", "webhook binary to run (default: go build ./cmd/webhook)")
	flag.BoolVar(&o.satisfied, "satisfied", false, "admit Pods whose dependencies are two completed Jobs, checked by the webhook against the real readiness service (envtest: needs KUBEBUILDER_ASSETS); every answer must skip the injection")
	flag.BoolVar(&o.keep, "keep", false, "keep the temporary directory (binary, certificates, server log)")
	flag.Parse()
	if err := run(o); err != nil {
		fmt.Fprintln(os.Stderr, "loadgen:", err)
		os.Exit(1)
	}
}

func run(o options) error {
	switch {
	case o.mode != "max" && o.mode != "rate" && o.mode != "both" && o.mode != "memory":
		return fmt.Errorf("-mode=%q: want max, rate, both or memory", o.mode)
	case o.rounds < 1 || o.rounds > 100:
		return fmt.Errorf("-rounds must be in 1..100")
	case o.concurrency < 1 || o.concurrency > maxConcurrency:
		return fmt.Errorf("-concurrency must be in 1..%d", maxConcurrency)
	case o.rate <= 0 || o.rate > maxRate:
		return fmt.Errorf("-rate must be in (0, %d]", maxRate)
	case o.duration <= 0 || o.duration > maxDuration || o.warmup < 0 || o.warmup > time.Minute:
		return fmt.Errorf("-duration must be in (0, %s] and -warmup in [0, 1m]", maxDuration)
	}
	root, err := machine.ModuleRoot()
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "loadgen-")
	if err != nil {
		return err
	}
	if o.keep {
		fmt.Println("temporary directory:", dir)
	} else {
		defer os.RemoveAll(dir)
	}

	podPath := o.pod
	if !filepath.IsAbs(podPath) {
		podPath = filepath.Join(root, podPath)
	}
	var serverArgs []string
	injectedPod := podPath
	if o.satisfied {
		if o.mode == "memory" || !o.annotated {
			return errors.New("-satisfied goes with -mode=max, rate or both and -annotated")
		}
		var ns string
		if podPath, ns, err = objectPod(podPath, dir); err != nil {
			return err
		}
		backend, err := startReadiness(root, dir, ns)
		if err != nil {
			return err
		}
		defer backend.stop()
		defer func() {
			fmt.Println("readiness service metrics:", metricLines(backend.metrics, "depends_on_readiness_status_answers_total"))
		}()
		serverArgs = backend.args
	}
	body, podSize, wantPatch, err := review(podPath, o.annotated, 0)
	if err != nil {
		return err
	}

	var env []string
	if o.mode == "memory" {
		env = append(env, "GOMEMLIMIT="+strconv.FormatInt(o.memLimit, 10))
	}
	srv, err := startServer(root, dir, o.serverBin, env, serverArgs...)
	if err != nil {
		return err
	}
	defer srv.stop()
	srv.satisfied = o.satisfied

	fmt.Printf("machine: %d CPUs (%s), GOMAXPROCS of both processes = %d; client and server share them\n",
		runtime.NumCPU(), machine.CPUModel(), runtime.GOMAXPROCS(0))
	fmt.Printf("pod: %s, %d bytes (annotated=%v); AdmissionReview %d bytes\n", o.pod, podSize, o.annotated, len(body))
	if o.mode == "memory" {
		return memory(srv, podPath, o)
	}

	modes := []string{o.mode}
	if o.mode == "both" {
		modes = []string{"max", "rate"}
	}
	var failed error
	for _, m := range modes {
		res, err := drive(srv, body, wantPatch, o, m)
		if err != nil {
			return err
		}
		res.print()
		if res.errors() > 0 {
			failed = fmt.Errorf("%d errors in -mode=%s", res.errors(), m)
		}
	}
	if o.satisfied {
		// The same server, backend and machine, the Pod that is injected:
		// what the skip is to be compared with.
		fmt.Printf("\n-- for comparison, the same server and readiness service: %s as is (injected) --\n", o.pod)
		body, _, _, err := review(injectedPod, true, 0)
		if err != nil {
			return err
		}
		srv.satisfied = false
		for _, m := range modes {
			res, err := drive(srv, body, true, o, m)
			if err != nil {
				return err
			}
			res.print()
			if res.errors() > 0 {
				failed = fmt.Errorf("%d errors in -mode=%s (injected)", res.errors(), m)
			}
		}
	}
	if n, err := srv.decisions(); err == nil {
		fmt.Printf("server metrics: %s\n", n)
	}
	if o.satisfied {
		fmt.Printf("server metrics: %s\n", metricLines(srv.metric, "depends_on_satisfied_checks_total"))
	}
	return failed
}

// review wraps the Pod in the AdmissionReview the API server posts when the
// ReplicaSet controller creates it, and says whether the webhook should
// patch it (it has depends-on.dev/ annotations). annotated=false removes
// them, and their managedFields entries, as if they had never been written;
// pad > 0 adds an annotation of that many bytes (a large object).
func review(path string, annotated bool, pad int) ([]byte, int, bool, error) {
	src, err := os.ReadFile(path)
	if err != nil {
		return nil, 0, false, err
	}
	var pod map[string]any
	if err := json.Unmarshal(src, &pod); err != nil {
		return nil, 0, false, fmt.Errorf("%s: %w", path, err)
	}
	md, _ := pod["metadata"].(map[string]any)
	ann, _ := md["annotations"].(map[string]any)
	if !annotated {
		for k := range ann {
			if strings.HasPrefix(k, "depends-on.dev/") {
				delete(ann, k)
			}
		}
		mf, _ := md["managedFields"].([]any)
		for _, e := range mf {
			fields, _ := e.(map[string]any)["fieldsV1"].(map[string]any)
			fm, _ := fields["f:metadata"].(map[string]any)
			fa, _ := fm["f:annotations"].(map[string]any)
			for k := range fa {
				if strings.HasPrefix(k, "f:depends-on.dev/") {
					delete(fa, k)
				}
			}
			if fa != nil && len(fa) == 0 {
				delete(fm, "f:annotations")
			}
		}
	}
	if pad > 0 {
		if ann == nil {
			ann = map[string]any{}
			md["annotations"] = ann
		}
		ann["loadgen.example/padding"] = strings.Repeat("x", pad)
	}
	wantPatch := false
	for k := range ann {
		wantPatch = wantPatch || strings.HasPrefix(k, "depends-on.dev/")
	}
	raw, err := json.Marshal(pod)
	if err != nil {
		return nil, 0, false, err
	}
	ns, _ := pod["metadata"].(map[string]any)["namespace"].(string)
	kind := metav1.GroupVersionKind{Version: "v1", Kind: "Pod"}
	res := metav1.GroupVersionResource{Version: "v1", Resource: "pods"}
	dryRun := false
	ar := admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
		Request: &admissionv1.AdmissionRequest{
			UID: "0b8e3c43-8f55-4c8e-a0f4-3f7d2b1c9e6a", Kind: kind, Resource: res,
			RequestKind: &kind, RequestResource: &res, Namespace: ns, Operation: admissionv1.Create,
			UserInfo: authenticationv1.UserInfo{
				Username: "system:serviceaccount:kube-system:replicaset-controller",
				Groups:   []string{"system:serviceaccounts", "system:serviceaccounts:kube-system", "system:authenticated"},
			},
			Object:  k8sruntime.RawExtension{Raw: raw},
			DryRun:  &dryRun,
			Options: k8sruntime.RawExtension{Raw: []byte(`{"kind":"CreateOptions","apiVersion":"meta.k8s.io/v1"}`)},
		},
	}
	out, err := json.Marshal(ar)
	return out, len(raw), wantPatch, err
}

type server struct {
	cmd                 *exec.Cmd
	url, health, metric string
	client              *tls.Config
	logPath             string
	exited              chan struct{}
	// satisfied: every patch must be the skip record only (-satisfied).
	satisfied bool
}

func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// startServer builds (unless bin is set) and starts cmd/webhook on loopback
// with a certificate for 127.0.0.1, and waits until it is ready.
func startServer(root, dir, bin string, env []string, args ...string) (*server, error) {
	if bin == "" {
		bin = filepath.Join(dir, "webhook")
		fmt.Println("building ./cmd/webhook ...")
		build := exec.Command("go", "build", "-o", bin, "./cmd/webhook")
		build.Dir, build.Stdout, build.Stderr = root, os.Stderr, os.Stderr
		if err := build.Run(); err != nil {
			return nil, fmt.Errorf("go build ./cmd/webhook: %w", err)
		}
	}
	bundle, err := certgen.Generate(certgen.Options{NoService: true, Hosts: []string{"127.0.0.1"}})
	if err != nil {
		return nil, err
	}
	certDir := filepath.Join(dir, "certs")
	if err := bundle.WriteFiles(certDir); err != nil {
		return nil, err
	}
	var addrs [3]string
	for i := range addrs {
		if addrs[i], err = freeAddr(); err != nil {
			return nil, err
		}
	}
	_, port, _ := net.SplitHostPort(addrs[0])
	s := &server{
		url: "https://" + addrs[0] + "/mutate", health: "http://" + addrs[1] + "/readyz", metric: "http://" + addrs[2] + "/metrics",
		client:  &tls.Config{RootCAs: bundle.CertPool(), MinVersion: tls.VersionTLS12, NextProtos: []string{"http/1.1"}},
		logPath: filepath.Join(dir, "server.log"),
		exited:  make(chan struct{}),
	}
	logFile, err := os.Create(s.logPath)
	if err != nil {
		return nil, err
	}
	s.cmd = exec.Command(bin, "--host=127.0.0.1", "--port="+port, "--cert-dir="+certDir,
		"--health-probe-bind-address="+addrs[1], "--metrics-bind-address="+addrs[2],
		"--drain-period=0s", "--shutdown-timeout=5s")
	s.cmd.Args = append(s.cmd.Args, args...)
	s.cmd.Stdout, s.cmd.Stderr = logFile, logFile
	s.cmd.Env = append(os.Environ(), env...)
	if err := s.cmd.Start(); err != nil {
		logFile.Close()
		return nil, err
	}
	go func() {
		_ = s.cmd.Wait()
		logFile.Close()
		close(s.exited)
	}()
	deadline := time.Now().Add(startTimeout)
	for {
		resp, err := http.Get(s.health)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				fmt.Printf("server: pid %d on %s\n", s.cmd.Process.Pid, addrs[0])
				return s, nil
			}
		}
		select {
		case <-s.exited:
			return nil, fmt.Errorf("the server exited: %s", s.tail())
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			s.stop()
			return nil, fmt.Errorf("the server was not ready within %s: %s", startTimeout, s.tail())
		}
	}
}

func (s *server) tail() string {
	b, _ := os.ReadFile(s.logPath)
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return string(b)
}

// stop sends SIGTERM, then kills the server if it has not exited in 15s.
func (s *server) stop() {
	select {
	case <-s.exited:
		return
	default:
	}
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.exited:
	case <-time.After(15 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.exited
	}
}

// decisions reads the server's decision counters.
func (s *server) decisions() (string, error) {
	resp, err := http.Get(s.metric)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "depends_on_admission_decisions_total{") {
			out = append(out, strings.TrimPrefix(l, "depends_on_admission_decisions_total"))
		}
	}
	return "depends_on_admission_decisions_total " + strings.Join(out, " "), nil
}

// procStatus reads a field of /proc/PID/status, in KiB.
func procStatus(pid int, field string) (int64, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0, err
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, field+":"); ok {
			return strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		}
	}
	return 0, fmt.Errorf("no %s in /proc/%d/status", field, pid)
}

// procCPU is the CPU time the process has used (utime+stime).
func procCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, err
	}
	// The command name may contain spaces: fields start after the last ')'.
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
	if len(f) < 13 {
		return 0, errors.New("short /proc/PID/stat")
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	const ticks = 100 // USER_HZ
	return time.Duration(ut+st) * time.Second / ticks, nil
}

func selfCPU() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// result is one mode's measurement.
type result struct {
	mode                      string
	concurrency               int
	rate                      float64
	elapsed                   time.Duration
	lat                       []time.Duration // measured requests: from the due time in rate mode
	svc                       []time.Duration // rate mode: from the actual send
	httpErrs, bodyErrs, netEr int64
	firstErr                  string
	late                      int64 // rate mode: sent more than 1ms after due
	handshakes                int64
	serverCPU, clientCPU      time.Duration
	hwm, rssMax, rssEnd       int64 // KiB
	loadBefore, loadAfter     string
}

func (r *result) errors() int64 { return r.httpErrs + r.bodyErrs + r.netEr }

func ms(d time.Duration) string { return strconv.FormatFloat(float64(d)/1e6, 'f', 2, 64) + "ms" }

func (r *result) print() {
	slices.Sort(r.lat)
	n := len(r.lat)
	secs := r.elapsed.Seconds()
	fmt.Printf("\n== mode=%s concurrency=%d", r.mode, r.concurrency)
	if r.mode == "rate" {
		fmt.Printf(" rate=%.0f/s (open loop; latency from the due time)", r.rate)
	}
	fmt.Printf("\nload average before %s, after %s\n", r.loadBefore, r.loadAfter)
	fmt.Printf("requests: %d in %.2fs = %.0f/s; errors %d (HTTP %d, body %d, transport %d)\n",
		n, secs, float64(n)/secs, r.errors(), r.httpErrs, r.bodyErrs, r.netEr)
	if r.firstErr != "" {
		fmt.Printf("first error: %s\n", r.firstErr)
	}
	fmt.Printf("latency: p50 %s  p90 %s  p99 %s  max %s\n", ms(machine.Percentile(r.lat, 0.5)), ms(machine.Percentile(r.lat, 0.9)), ms(machine.Percentile(r.lat, 0.99)), ms(machine.Percentile(r.lat, 1)))
	if r.mode == "rate" {
		slices.Sort(r.svc)
		fmt.Printf("  (from the actual send: p50 %s  p90 %s  p99 %s  max %s; sent more than 1ms after due: %d = %.2f%%)\n",
			ms(machine.Percentile(r.svc, 0.5)), ms(machine.Percentile(r.svc, 0.9)), ms(machine.Percentile(r.svc, 0.99)), ms(machine.Percentile(r.svc, 1)), r.late, 100*float64(r.late)/float64(max(n, 1)))
	}
	perReq := time.Duration(0)
	if n > 0 {
		perReq = r.serverCPU / time.Duration(n)
	}
	fmt.Printf("server CPU: %.2f cores = %dµs per request (2 cores at that cost: %.0f/s); client CPU: %.2f cores\n",
		r.serverCPU.Seconds()/secs, perReq.Microseconds(), 2/max(perReq.Seconds(), 1e-9), r.clientCPU.Seconds()/secs)
	fmt.Printf("server memory: peak RSS (VmHWM) %.1f MiB; VmRSS sampled every 100ms: max %.1f MiB, at the end %.1f MiB\n",
		float64(r.hwm)/1024, float64(r.rssMax)/1024, float64(r.rssEnd)/1024)
	fmt.Printf("TLS connections opened: %d\n", r.handshakes)
}

// drive runs one mode against the server.
func drive(s *server, body []byte, wantPatch bool, o options, mode string) (*result, error) {
	pid := s.cmd.Process.Pid
	// Reset the peak RSS so that VmHWM is this mode's (Linux clear_refs).
	_ = os.WriteFile("/proc/"+strconv.Itoa(pid)+"/clear_refs", []byte("5"), 0)
	r := &result{mode: mode, concurrency: o.concurrency, rate: o.rate, loadBefore: machine.LoadAvg()}

	var handshakes atomic.Int64
	clients := make([]*http.Client, o.concurrency)
	for i := range clients {
		tr := &http.Transport{
			TLSClientConfig:     s.client,
			MaxIdleConnsPerHost: 1,
			MaxConnsPerHost:     1,
			DisableCompression:  true,
			ForceAttemptHTTP2:   false,
			DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
				handshakes.Add(1)
				var d net.Dialer
				return d.DialContext(ctx, network, addr)
			},
		}
		defer tr.CloseIdleConnections()
		clients[i] = &http.Client{Transport: tr, Timeout: 10 * time.Second}
	}

	var errMu sync.Mutex
	fail := func(counter *int64, msg string) {
		atomic.AddInt64(counter, 1)
		errMu.Lock()
		if r.firstErr == "" {
			r.firstErr = msg
		}
		errMu.Unlock()
	}
	var checked atomic.Int64
	post := func(c *http.Client) bool {
		req, _ := http.NewRequest(http.MethodPost, s.url, bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		resp, err := c.Do(req)
		if err != nil {
			fail(&r.netEr, err.Error())
			return false
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		switch {
		case err != nil:
			fail(&r.netEr, err.Error())
			return false
		case resp.StatusCode != http.StatusOK:
			fail(&r.httpErrs, resp.Status)
			return false
		case !bytes.Contains(b, []byte(`"allowed":true`)) || wantPatch != bytes.Contains(b, []byte(`"patchType":"JSONPatch"`)):
			fail(&r.bodyErrs, "unexpected answer: "+string(b[:min(len(b), 300)]))
			return false
		}
		// Decode one answer in a hundred in full (cheap checks above for the rest).
		if checked.Add(1)%100 == 1 {
			var ar admissionv1.AdmissionReview
			if err := json.Unmarshal(b, &ar); err != nil || ar.Response == nil || !ar.Response.Allowed ||
				ar.Response.UID != "0b8e3c43-8f55-4c8e-a0f4-3f7d2b1c9e6a" || wantPatch != (len(ar.Response.Patch) > 0) {
				fail(&r.bodyErrs, "unexpected answer: "+string(b[:min(len(b), 300)]))
				return false
			}
			if s.satisfied && (!bytes.Contains(ar.Response.Patch, []byte(`\"satisfied\":{\"checked\"`)) || bytes.Contains(ar.Response.Patch, []byte(`"path":"/spec/`))) {
				fail(&r.bodyErrs, "not skipped: patch "+string(ar.Response.Patch))
				return false
			}
		}
		return true
	}

	// Sample the server's RSS while the load runs.
	stopSampling := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for {
			if v, err := procStatus(pid, "VmRSS"); err == nil {
				r.rssMax = max(r.rssMax, v)
			}
			select {
			case <-stopSampling:
				return
			case <-t.C:
			}
		}
	}()

	start := time.Now()
	measureFrom := start.Add(o.warmup)
	end := measureFrom.Add(o.duration)
	var measured atomic.Int64 // measured requests started
	limitReached := func() bool { return o.requests > 0 && measured.Load() >= o.requests }
	var cpu0, self0 time.Duration
	var cpuOnce sync.Once
	markStart := func() {
		cpuOnce.Do(func() {
			cpu0, _ = procCPU(pid)
			self0 = selfCPU()
		})
	}
	if o.warmup == 0 {
		markStart()
	}
	go func() {
		time.Sleep(time.Until(measureFrom))
		markStart()
	}()

	lats := make([][]time.Duration, o.concurrency)
	svcs := make([][]time.Duration, o.concurrency)
	var lateCount atomic.Int64
	var wg sync.WaitGroup
	switch mode {
	case "max":
		for w := range o.concurrency {
			wg.Go(func() {
				for {
					t0 := time.Now()
					if !t0.Before(end) || limitReached() {
						return
					}
					counted := !t0.Before(measureFrom)
					if counted {
						measured.Add(1)
					}
					ok := post(clients[w])
					if counted && ok {
						lats[w] = append(lats[w], time.Since(t0))
					}
				}
			})
		}
	case "rate":
		interval := time.Duration(float64(time.Second) / o.rate)
		var next atomic.Int64
		for w := range o.concurrency {
			wg.Go(func() {
				for {
					i := next.Add(1) - 1
					due := start.Add(time.Duration(i) * interval)
					if !due.Before(end) || limitReached() {
						return
					}
					if d := time.Until(due); d > 0 {
						time.Sleep(d)
					}
					counted := !due.Before(measureFrom)
					sent := time.Now()
					if counted {
						measured.Add(1)
						if sent.Sub(due) > time.Millisecond {
							lateCount.Add(1)
						}
					}
					ok := post(clients[w])
					if counted && ok {
						now := time.Now()
						lats[w] = append(lats[w], now.Sub(due))
						svcs[w] = append(svcs[w], now.Sub(sent))
					}
				}
			})
		}
	}
	wg.Wait()
	stopAt := time.Now()
	cpu1, _ := procCPU(pid)
	self1 := selfCPU()
	close(stopSampling)
	<-sampled
	markStart() // in case the run ended before the warmup did

	r.elapsed = stopAt.Sub(measureFrom) // includes the last answers after the end
	r.serverCPU, r.clientCPU = cpu1-cpu0, self1-self0
	for w := range lats {
		r.lat = append(r.lat, lats[w]...)
		r.svc = append(r.svc, svcs[w]...)
	}
	r.late = lateCount.Load()
	r.handshakes = handshakes.Load()
	r.hwm, _ = procStatus(pid, "VmHWM")
	r.rssEnd, _ = procStatus(pid, "VmRSS")
	r.loadAfter = machine.LoadAvg()
	select {
	case <-s.exited:
		return nil, fmt.Errorf("the server exited during the run: %s", s.tail())
	default:
	}
	return r, nil
}

// memory posts, for each burst size, rounds bursts of n concurrent requests
// of about size bytes each (each on its own connection, all released at
// once), and prints the server's answers and peak RSS. It fails if the peak
// reaches the limit.
func memory(s *server, podPath string, o options) error {
	pid := s.cmd.Process.Pid
	fmt.Printf("server GOMEMLIMIT=%d (%.0f MiB)\n", o.memLimit, float64(o.memLimit)/(1<<20))
	var over []string
	for _, b := range []struct{ n, size int }{{16, 3_000_000}, {8, 7_000_000}, {32, 10_000_000}} {
		base, _, _, err := review(podPath, true, 0)
		if err != nil {
			return err
		}
		body, _, _, err := review(podPath, true, b.size-len(base))
		if err != nil {
			return err
		}
		_ = os.WriteFile("/proc/"+strconv.Itoa(pid)+"/clear_refs", []byte("5"), 0)
		load := machine.LoadAvg()
		statuses := map[string]int{}
		var mu sync.Mutex
		start := time.Now()
		for range o.rounds {
			var wg sync.WaitGroup
			gate := make(chan struct{})
			for range b.n {
				wg.Go(func() {
					tr := &http.Transport{TLSClientConfig: s.client, DisableKeepAlives: true}
					defer tr.CloseIdleConnections()
					c := &http.Client{Transport: tr, Timeout: 30 * time.Second}
					<-gate
					st := postOnce(c, s.url, body)
					mu.Lock()
					statuses[st]++
					mu.Unlock()
				})
			}
			close(gate)
			wg.Wait()
		}
		hwm, _ := procStatus(pid, "VmHWM")
		peak := hwm * 1024
		fmt.Printf("%2d x %5.1f MB concurrent (%d bursts, %.1fs, load %s): peak RSS %.1f MiB of %.0f MiB; answers %v\n",
			b.n, float64(len(body))/1e6, o.rounds, time.Since(start).Seconds(), load, float64(peak)/(1<<20), float64(o.memLimit)/(1<<20), statuses)
		if peak >= o.memLimit {
			over = append(over, fmt.Sprintf("%d x %d bytes", b.n, b.size))
		}
		select {
		case <-s.exited:
			return fmt.Errorf("the server exited: %s", s.tail())
		default:
		}
	}
	if n, err := s.decisions(); err == nil {
		fmt.Printf("server metrics: %s\n", n)
	}
	if len(over) > 0 {
		return fmt.Errorf("peak RSS reached the limit with %s", strings.Join(over, ", "))
	}
	return nil
}

// postOnce posts body and classifies the answer: the HTTP status, and for
// 200 the AdmissionReview's verdict (allowed, or the status code of the refusal).
func postOnce(c *http.Client, url string, body []byte) string {
	req, _ := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.Do(req)
	if err != nil {
		return "transport error"
	}
	defer resp.Body.Close()
	var ar admissionv1.AdmissionReview
	if err := json.NewDecoder(resp.Body).Decode(&ar); err != nil || ar.Response == nil {
		return "HTTP " + strconv.Itoa(resp.StatusCode) + " (no AdmissionReview)"
	}
	switch {
	case resp.StatusCode != http.StatusOK:
		return "HTTP " + strconv.Itoa(resp.StatusCode)
	case ar.Response.Allowed:
		return "allowed"
	case ar.Response.Result != nil:
		return "refused " + strconv.Itoa(int(ar.Response.Result.Code))
	}
	return "refused"
}
