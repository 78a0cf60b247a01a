// Command readiness-load measures the readiness service under N concurrent
// waiters on one Job, against a real API server (envtest) and the real
// ./cmd/readiness binary with deploy/readiness's RBAC. It prints the figures
// (docs/performance.md); it asserts nothing about time.
//
//	KUBEBUILDER_ASSETS=/path/to/envtest/bin go run ./test/readiness-load -waiters 1000
//
// Each waiter is a Pod of its own with its own bound token (so N TokenReviews),
// long-polling /v1/wait over its own HTTPS connection, as wait-for-service does.
package main

import (
	"bufio"
	"bytes"
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/depends-on/depends-on/certs/certgen"
	"github.com/depends-on/depends-on/test/internal/machine"
	"github.com/depends-on/depends-on/test/internal/readinessenv"
	"github.com/depends-on/depends-on/webhook/readiness"
)

func main() {
	waiters := flag.Int("waiters", 1000, "concurrent waiters (one Pod and token each)")
	parallel := flag.Int("setup-parallel", 16, "parallel Pod/token creations during set-up")
	flag.Parse()
	if err := run(*waiters, *parallel); err != nil {
		fmt.Fprintln(os.Stderr, "readiness-load:", err)
		os.Exit(1)
	}
}

func run(n, parallel int) error {
	assets := os.Getenv("KUBEBUILDER_ASSETS")
	if assets == "" {
		return fmt.Errorf("KUBEBUILDER_ASSETS is not set: it needs kube-apiserver and etcd (make envtest prints it)")
	}
	root, err := machine.ModuleRoot()
	if err != nil {
		return err
	}
	tmp, err := os.MkdirTemp("", "readiness-load-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)

	env := &envtest.Environment{BinaryAssetsDirectory: assets, ControlPlaneStartTimeout: 3 * time.Minute, ControlPlaneStopTimeout: time.Minute}
	cfg, err := env.Start()
	if err != nil {
		return fmt.Errorf("start envtest: %w", err)
	}
	defer env.Stop()
	cfg.WarningHandler = rest.NoWarnings{}
	admin := rest.CopyConfig(cfg)
	admin.QPS, admin.Burst = 500, 1000
	cs, err := kubernetes.NewForConfig(admin)
	if err != nil {
		return err
	}
	c, err := client.New(admin, client.Options{Scheme: clientgoscheme.Scheme})
	if err != nil {
		return err
	}
	ctx := context.Background()

	bin, err := readinessenv.Build(root, tmp, false)
	if err != nil {
		return err
	}
	kubeconfig, err := readinessenv.Install(ctx, cfg, c, tmp)
	if err != nil {
		return err
	}
	ca, err := certgen.NewCA("readiness-load-ca", 0)
	if err != nil {
		return err
	}
	p, err := readinessenv.NewProcess(bin, kubeconfig, tmp, ca)
	if err != nil {
		return err
	}
	// Info level: debug logs one line per answer, which is not what is measured.
	p.ExtraArgs = []string{"--zap-log-level=info", fmt.Sprintf("--max-waiters=%d", n+100)}
	if err := p.Start(); err != nil {
		return err
	}
	defer p.Stop()

	ns := "load"
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		return err
	}
	setupStart := time.Now()
	tokens := make([]string, n)
	var setupErr atomic.Value
	sem := make(chan struct{}, parallel)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			_, tok, err := readinessenv.PodToken(ctx, cs, ns, "default", fmt.Sprintf("waiter-%d", i))
			if err != nil {
				setupErr.Store(err)
				return
			}
			tokens[i] = tok
		}()
	}
	wg.Wait()
	if err, _ := setupErr.Load().(error); err != nil {
		return err
	}
	job, err := cs.BatchV1().Jobs(ns).Create(ctx, &batchv1.Job{
		ObjectMeta: metav1.ObjectMeta{Name: "migrate"},
		Spec: batchv1.JobSpec{BackoffLimit: ptr.To[int32](0), Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{
			RestartPolicy: corev1.RestartPolicyNever, Containers: []corev1.Container{{Name: "m", Image: "busybox:1.36"}},
		}}},
	}, metav1.CreateOptions{})
	if err != nil {
		return err
	}
	fmt.Printf("set-up: %d Pods and bound tokens in %s\n", n, time.Since(setupStart).Round(time.Millisecond))

	// The API server's watch count before any waiter.
	baseWatches, err := apiserverWatches(ctx, cs)
	if err != nil {
		return err
	}
	cpu0, _ := cpuTime(p.Pid())
	hc := readinessenv.NewClient(p.URL(), ca.CertPEM, n+10)
	target := "job:" + ns + "/migrate"
	answered := make([]time.Time, n)
	var errs atomic.Int64
	var held atomic.Int64
	connectStart := time.Now()
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			seen := ""
			for {
				r, err := hc.Wait(ctx, tokens[i], target, seen, 60*time.Second)
				if err != nil || r.Code != 200 {
					errs.Add(1)
					time.Sleep(200 * time.Millisecond)
					continue
				}
				if r.Answer.State == readiness.StateReady {
					answered[i] = time.Now()
					return
				}
				if seen == "" {
					held.Add(1)
				}
				seen = r.Answer.Reason
			}
		}()
	}
	// All waiters held: the server's own gauge says so.
	for {
		m, err := scrape(p.MetricsURL())
		if err == nil && int(m["depends_on_readiness_waiters"]) >= n && int(held.Load()) == n {
			break
		}
		if time.Since(connectStart) > 5*time.Minute {
			return fmt.Errorf("only %v of %d waiters held after 5 minutes", m["depends_on_readiness_waiters"], n)
		}
		time.Sleep(100 * time.Millisecond)
	}
	connected := time.Since(connectStart)
	cpu1, _ := cpuTime(p.Pid())
	time.Sleep(2 * time.Second) // settle, then look at the steady state
	m, err := scrape(p.MetricsURL())
	if err != nil {
		return err
	}
	watches, err := apiserverWatches(ctx, cs)
	if err != nil {
		return err
	}
	rssHeld, hwmHeld := memory(p.Pid())
	cpu2, _ := cpuTime(p.Pid())

	// The Job completes (as the Job controller would write it).
	now := metav1.Now()
	start := metav1.NewTime(now.Add(-time.Second))
	job.Status = batchv1.JobStatus{StartTime: &start, CompletionTime: &now, Succeeded: 1, Conditions: []batchv1.JobCondition{
		{Type: batchv1.JobSuccessCriteriaMet, Status: corev1.ConditionTrue, Reason: "CompletionsReached", LastProbeTime: now, LastTransitionTime: now},
		{Type: batchv1.JobComplete, Status: corev1.ConditionTrue, Reason: "CompletionsReached", LastProbeTime: now, LastTransitionTime: now},
	}}
	completed := time.Now()
	if _, err := cs.BatchV1().Jobs(ns).UpdateStatus(ctx, job, metav1.UpdateOptions{}); err != nil {
		// Older API servers reject SuccessCriteriaMet on a Job without a successPolicy.
		job.Status.Conditions = job.Status.Conditions[1:]
		completed = time.Now()
		if _, err2 := cs.BatchV1().Jobs(ns).UpdateStatus(ctx, job, metav1.UpdateOptions{}); err2 != nil {
			return fmt.Errorf("complete the Job: %v; without SuccessCriteriaMet: %w", err, err2)
		}
	}
	written := time.Since(completed)
	wg.Wait()
	cpu3, _ := cpuTime(p.Pid())
	rssEnd, hwmEnd := memory(p.Pid())

	lat := make([]time.Duration, n)
	for i, t := range answered {
		lat[i] = t.Sub(completed)
	}
	slices.Sort(lat)
	fmt.Printf("machine: %s, %d CPUs, load average %s\n", machine.CPUModel(), numCPU(), machine.LoadAvg())
	fmt.Printf("waiters: %d on %s, all held after %s (%d retried requests)\n", n, target, connected.Round(time.Millisecond), errs.Load())
	fmt.Printf("watches: readiness gauge depends_on_readiness_watches=%v; API server WATCH requests on jobs: %v before the waiters, %v while %d wait (%s)\n",
		m["depends_on_readiness_watches"], baseWatches.jobs, watches.jobs, n, watches.source)
	fmt.Printf("API server WATCH requests in total: %v before, %v while waiting (the namespace watch and the service's own are in both)\n", baseWatches.total, watches.total)
	fmt.Printf("readiness RSS: %s while %d wait (peak %s); %s at the end (peak %s)\n", mib(rssHeld), n, mib(hwmHeld), mib(rssEnd), mib(hwmEnd))
	fmt.Printf("readiness CPU: %s to authenticate and hold %d waiters (%s per waiter); %s idle for 2s while held; %s from completion to the last answer\n",
		cpu1-cpu0, n, (cpu1-cpu0)/time.Duration(n), cpu2-cpu1, cpu3-cpu2)
	fmt.Printf("Job completion -> answers (status write took %s): p50 %s, p90 %s, p99 %s, last (%dth) %s\n",
		written.Round(time.Millisecond), machine.Percentile(lat, 0.5).Round(time.Millisecond), machine.Percentile(lat, 0.9).Round(time.Millisecond),
		machine.Percentile(lat, 0.99).Round(time.Millisecond), n, lat[n-1].Round(time.Millisecond))
	return nil
}

type watchCount struct {
	jobs, total float64
	source      string
}

// apiserverWatches reads the API server's apiserver_longrunning_requests gauge (WATCH verb).
func apiserverWatches(ctx context.Context, cs kubernetes.Interface) (watchCount, error) {
	raw, err := cs.CoreV1().RESTClient().Get().AbsPath("/metrics").DoRaw(ctx)
	if err != nil {
		return watchCount{}, fmt.Errorf("API server /metrics: %w", err)
	}
	w := watchCount{source: "apiserver_longrunning_requests{verb=\"WATCH\"}"}
	sc := bufio.NewScanner(bytes.NewReader(raw))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "apiserver_longrunning_requests{") || !strings.Contains(line, `verb="WATCH"`) {
			continue
		}
		f := strings.Fields(line)
		v, err := strconv.ParseFloat(f[len(f)-1], 64)
		if err != nil {
			continue
		}
		w.total += v
		if strings.Contains(line, `resource="jobs"`) {
			w.jobs += v
		}
	}
	return w, sc.Err()
}

// scrape reads the plain gauges and counters of a /metrics page.
func scrape(url string) (map[string]float64, error) {
	hc := readinessenv.NewClient("", nil, 1).HTTP
	resp, err := hc.Get(url)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Fields(line)
		if len(f) != 2 {
			continue
		}
		if v, err := strconv.ParseFloat(f[1], 64); err == nil {
			out[f[0]] = v
		}
	}
	return out, sc.Err()
}

// cpuTime is user+system CPU of pid from /proc (clock ticks of 10ms).
func cpuTime(pid int) (time.Duration, error) {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return 0, err
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * 10 * time.Millisecond, nil
}

// memory returns VmRSS and VmHWM of pid in bytes.
func memory(pid int) (rss, hwm int64) {
	b, _ := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "status"))
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		v, _ := strconv.ParseInt(f[1], 10, 64)
		switch f[0] {
		case "VmRSS:":
			rss = v << 10
		case "VmHWM:":
			hwm = v << 10
		}
	}
	return rss, hwm
}

func mib(b int64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }

func numCPU() int {
	b, _ := os.ReadFile("/proc/cpuinfo")
	return strings.Count(string(b), "processor\t:")
}
