//go:build e2e

package e2e

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/yaml"

	"github.com/depends-on/depends-on/deploy"
	"github.com/depends-on/depends-on/webhook"
)

func getenv(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

func lookPath(name string) (string, error) { return exec.LookPath(name) }

func isExecutable(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0
}

func since(t time.Time) time.Duration { return time.Since(t).Round(100 * time.Millisecond) }

var logMu sync.Mutex

// logf prints a suite-level progress line with the time since the start.
func (x *env) logf(format string, args ...any) {
	logMu.Lock()
	defer logMu.Unlock()
	fmt.Printf("e2e [%7.1fs] %s\n", time.Since(x.start).Seconds(), fmt.Sprintf(format, args...))
}

// run runs a command from the repository root. Its output is returned and,
// when logName is set, appended to <artifacts>/logs/<logName>.log. Errors
// carry the output's tail.
func (x *env) run(ctx context.Context, logName, name string, args ...string) (string, error) {
	return x.runStdin(ctx, logName, nil, name, args...)
}

func (x *env) runStdin(ctx context.Context, logName string, stdin []byte, name string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = x.root
	cmd.WaitDelay = 10 * time.Second
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	t0 := time.Now()
	err := cmd.Run()
	if logName != "" {
		dir := filepath.Join(x.artifacts, "logs")
		if mkErr := os.MkdirAll(dir, 0o755); mkErr == nil {
			if f, ferr := os.OpenFile(filepath.Join(dir, logName+".log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644); ferr == nil {
				fmt.Fprintf(f, "$ %s %s   # %s, err=%v\n%s\n", name, strings.Join(args, " "), time.Since(t0).Round(time.Millisecond), err, out.String())
				f.Close()
			}
		}
	}
	if err != nil {
		return out.String(), fmt.Errorf("%s %s: %w\n%s", filepath.Base(name), strings.Join(args, " "), err, tail(out.String(), 30))
	}
	return out.String(), nil
}

func (x *env) kubectlRun(ctx context.Context, logName string, args ...string) (string, error) {
	return x.run(ctx, logName, x.kubectl, append([]string{"--kubeconfig", x.kubeconfig}, args...)...)
}

// kubectl runs kubectl for a test and fails it on error.
func kubectl(t *testing.T, ctx context.Context, args ...string) string {
	t.Helper()
	out, err := e.kubectlRun(ctx, "kubectl-"+sanitize(t.Name()), args...)
	if err != nil {
		t.Fatalf("%v", err)
	}
	return out
}

func sanitize(s string) string {
	return strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' {
			return r
		}
		return '_'
	}, s)
}

func tail(s string, lines int) string {
	ls := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(ls) > lines {
		ls = ls[len(ls)-lines:]
	}
	return strings.Join(ls, "\n")
}

// retry calls fn until it succeeds, ctx ends or timeout passes.
func retry(ctx context.Context, timeout, interval time.Duration, fn func() error) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for {
		err := fn()
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("gave up after %s: %w", timeout, err)
		case <-time.After(interval):
		}
	}
}

// namespace creates a namespace for one case (generateName, so reruns on a
// reused cluster never collide) and deletes it afterwards; if the case
// failed, its objects and logs are saved first.
func namespace(t *testing.T, ctx context.Context, prefix string, labels map[string]string) string {
	t.Helper()
	ns, err := e.cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{
		GenerateName: "e2e-" + prefix + "-",
		Labels:       labels,
	}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create namespace: %v", err)
	}
	name := ns.Name
	t.Cleanup(func() {
		cctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		if t.Failed() {
			dumpNamespace(cctx, name)
		}
		if e.keep {
			return
		}
		_ = e.cs.CoreV1().Namespaces().Delete(cctx, name, metav1.DeleteOptions{})
	})
	return name
}

func dumpNamespace(ctx context.Context, ns string) {
	dir := filepath.Join(e.artifacts, "namespaces", ns)
	_ = os.MkdirAll(dir, 0o755)
	var b strings.Builder
	for _, args := range [][]string{
		{"-n", ns, "get", "all,events", "-o", "wide"},
		{"-n", ns, "describe", "pods,deployments,replicasets,services"},
		{"-n", ns, "get", "pods", "-o", "yaml"},
	} {
		out, _ := e.kubectlRun(ctx, "", args...)
		fmt.Fprintf(&b, "$ kubectl %s\n%s\n", strings.Join(args, " "), out)
	}
	_ = os.WriteFile(filepath.Join(dir, "state.txt"), []byte(b.String()), 0o644)
	e.dumpPodLogs(ctx, ns, dir)
}

// readObjects decodes the YAML documents of a file under examples/.
func readObjects(t *testing.T, file string) [][]byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(e.root, file))
	if err != nil {
		t.Fatal(err)
	}
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	var docs [][]byte
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		if len(bytes.TrimSpace(stripComments(doc))) > 0 {
			docs = append(docs, doc)
		}
	}
	return docs
}

func stripComments(doc []byte) []byte {
	var out [][]byte
	for _, l := range bytes.Split(doc, []byte("\n")) {
		if !bytes.HasPrefix(bytes.TrimSpace(l), []byte("#")) {
			out = append(out, l)
		}
	}
	return bytes.Join(out, []byte("\n"))
}

// examplePod reads the single Pod of an examples/ file.
func examplePod(t *testing.T, file string) *corev1.Pod {
	t.Helper()
	for _, doc := range readObjects(t, file) {
		var pod corev1.Pod
		if err := yaml.UnmarshalStrict(doc, &pod); err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		if pod.Kind == "Pod" {
			return &pod
		}
	}
	t.Fatalf("%s has no Pod", file)
	return nil
}

// exampleServices reads the Services of an examples/ file.
func exampleServices(t *testing.T, file string) []*corev1.Service {
	t.Helper()
	var out []*corev1.Service
	for _, doc := range readObjects(t, file) {
		var meta metav1.TypeMeta
		if err := yaml.Unmarshal(doc, &meta); err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		if meta.Kind != "Service" {
			continue
		}
		var svc corev1.Service
		if err := yaml.UnmarshalStrict(doc, &svc); err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		out = append(out, &svc)
	}
	return out
}

// tinyPod is a busybox Pod that sleeps, with the given annotations.
func tinyPod(name string, annotations map[string]string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Annotations: annotations},
		Spec: corev1.PodSpec{
			TerminationGracePeriodSeconds: ptr.To[int64](0),
			Containers: []corev1.Container{{
				Name:    "app",
				Image:   "busybox:1.28",
				Command: []string{"sh", "-c", "echo started && exec sleep 3600"},
			}},
		},
	}
}

// waitPod polls the Pod until cond is true. cond may return an error to stop
// early (e.g. the Pod failed). On timeout the test fails with the Pod's status.
func waitPod(t *testing.T, ctx context.Context, ns, name string, timeout time.Duration, what string, cond func(*corev1.Pod) (bool, error)) *corev1.Pod {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var last *corev1.Pod
	for {
		p, err := e.cs.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
		if err == nil {
			last = p
			ok, cerr := cond(p)
			if cerr != nil {
				t.Fatalf("pod %s/%s: %s: %v\n%s", ns, name, what, cerr, podStatus(p))
			}
			if ok {
				return p
			}
		}
		select {
		case <-ctx.Done():
			t.Fatalf("pod %s/%s: timed out after %s waiting until %s\n%s", ns, name, timeout, what, podStatus(last))
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// readyWatch records when Pods matching a selector are first seen Ready,
// through a watch started before they are created (watchReady).
type readyWatch struct {
	ns, selector string
	mu           sync.Mutex
	readyAt      map[string]time.Time
	err          error
	changed      chan struct{}
}

// watchReady starts watching the Pods matching selector in ns. Start it
// before creating them, so that no Ready transition is missed or seen late.
func watchReady(t *testing.T, ctx context.Context, ns, selector string) *readyWatch {
	t.Helper()
	list, err := e.cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: selector})
	if err != nil {
		t.Fatal(err)
	}
	r := &readyWatch{ns: ns, selector: selector, readyAt: map[string]time.Time{}, changed: make(chan struct{}, 1)}
	for i := range list.Items {
		if isReady(&list.Items[i]) {
			r.readyAt[list.Items[i].Name] = time.Now()
		}
	}
	w, err := e.cs.CoreV1().Pods(ns).Watch(ctx, metav1.ListOptions{LabelSelector: selector, ResourceVersion: list.ResourceVersion})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.Stop)
	go func() {
		for ev := range w.ResultChan() {
			now := time.Now()
			r.mu.Lock()
			if ev.Type == watch.Error {
				r.err = apierrors.FromObject(ev.Object)
			} else if p, ok := ev.Object.(*corev1.Pod); ok && ev.Type != watch.Deleted && isReady(p) {
				if _, seen := r.readyAt[p.Name]; !seen {
					r.readyAt[p.Name] = now
				}
			}
			r.mu.Unlock()
			select {
			case r.changed <- struct{}{}:
			default:
			}
		}
	}()
	return r
}

// wait returns when n Pods have been Ready, with the instant the last of
// them was first seen Ready.
func (r *readyWatch) wait(t *testing.T, ctx context.Context, n int, timeout time.Duration) time.Time {
	t.Helper()
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	for {
		r.mu.Lock()
		var last time.Time
		for _, at := range r.readyAt {
			if at.After(last) {
				last = at
			}
		}
		count, err := len(r.readyAt), r.err
		r.mu.Unlock()
		if err != nil {
			t.Fatalf("%s: watch of %q: %v", r.ns, r.selector, err)
		}
		if count >= n {
			return last
		}
		select {
		case <-r.changed:
		case <-timer.C:
			t.Fatalf("%s: %d of %d Pods %q Ready after %s", r.ns, count, n, r.selector, timeout)
		case <-ctx.Done():
			t.Fatalf("%s: %v while waiting for Pods %q", r.ns, ctx.Err(), r.selector)
		}
	}
}

func isReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// containerRunning reports whether the named (app) container has started.
func containerRunning(name string) func(*corev1.Pod) (bool, error) {
	return func(p *corev1.Pod) (bool, error) {
		if p.Status.Phase == corev1.PodFailed || p.Status.Phase == corev1.PodSucceeded {
			return false, fmt.Errorf("pod ended %s", p.Status.Phase)
		}
		for _, s := range p.Status.InitContainerStatuses {
			if t := s.State.Terminated; t != nil && t.ExitCode != 0 {
				return false, fmt.Errorf("init container %s exited %d: %s", s.Name, t.ExitCode, t.Message)
			}
		}
		for _, s := range p.Status.ContainerStatuses {
			if s.Name == name && s.State.Running != nil {
				return true, nil
			}
		}
		return false, nil
	}
}

// inInit checks that the Pod is Pending in its init phase: the given init
// container runs and no app container has started.
func inInit(t *testing.T, p *corev1.Pod, initName string) {
	t.Helper()
	if p.Status.Phase != corev1.PodPending {
		t.Fatalf("pod %s is %s, want Pending (in Init)\n%s", p.Name, p.Status.Phase, podStatus(p))
	}
	running := false
	for _, s := range p.Status.InitContainerStatuses {
		running = running || s.Name == initName && s.State.Running != nil
	}
	if !running {
		t.Fatalf("pod %s: init container %s is not running\n%s", p.Name, initName, podStatus(p))
	}
	for _, s := range p.Status.ContainerStatuses {
		if s.State.Running != nil || s.State.Terminated != nil {
			t.Fatalf("pod %s: container %s started while in Init\n%s", p.Name, s.Name, podStatus(p))
		}
	}
}

// podStatus is a one-screen summary of a Pod's status for failure messages.
func podStatus(p *corev1.Pod) string {
	if p == nil {
		return "(pod not found)"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "  phase=%s reason=%s message=%s\n", p.Status.Phase, p.Status.Reason, p.Status.Message)
	for _, c := range p.Status.Conditions {
		fmt.Fprintf(&b, "  condition %s=%s %s\n", c.Type, c.Status, c.Message)
	}
	state := func(kind string, ss []corev1.ContainerStatus) {
		for _, s := range ss {
			switch {
			case s.State.Running != nil:
				fmt.Fprintf(&b, "  %s %s: running since %s\n", kind, s.Name, s.State.Running.StartedAt.Format(time.RFC3339))
			case s.State.Terminated != nil:
				fmt.Fprintf(&b, "  %s %s: terminated exit=%d reason=%s message=%q\n", kind, s.Name, s.State.Terminated.ExitCode, s.State.Terminated.Reason, s.State.Terminated.Message)
			case s.State.Waiting != nil:
				fmt.Fprintf(&b, "  %s %s: waiting %s %s\n", kind, s.Name, s.State.Waiting.Reason, s.State.Waiting.Message)
			}
		}
	}
	state("init", p.Status.InitContainerStatuses)
	state("container", p.Status.ContainerStatuses)
	return b.String()
}

// logs returns a container's log, with the runtime's timestamps if asked.
func logs(t *testing.T, ctx context.Context, ns, pod, container string, timestamps bool) string {
	t.Helper()
	raw, err := e.cs.CoreV1().Pods(ns).GetLogs(pod, &corev1.PodLogOptions{Container: container, Timestamps: timestamps}).DoRaw(ctx)
	if err != nil {
		t.Fatalf("logs %s/%s -c %s: %v", ns, pod, container, err)
	}
	return string(raw)
}

// waitLogs polls a container's log until it contains every string in want.
func waitLogs(t *testing.T, ctx context.Context, ns, pod, container string, timeout time.Duration, want ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var last string
	for {
		raw, err := e.cs.CoreV1().Pods(ns).GetLogs(pod, &corev1.PodLogOptions{Container: container}).DoRaw(ctx)
		if err == nil {
			last = string(raw)
			missing := false
			for _, w := range want {
				missing = missing || !strings.Contains(last, w)
			}
			if !missing {
				return last
			}
		}
		select {
		case <-ctx.Done():
			t.Fatalf("logs of %s/%s -c %s: want %q within %s, got:\n%s", ns, pod, container, want, timeout, last)
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// startDelay measures from ready (the instant the last dependency became
// ready) to the start of container c of pod: its first log line's runtime
// timestamp and its status.startedAt.
func startDelay(t *testing.T, ctx context.Context, name string, p *corev1.Pod, c string, ready time.Time) delaySample {
	t.Helper()
	var startedAt time.Time
	for _, s := range p.Status.ContainerStatuses {
		if s.Name == c && s.State.Running != nil {
			startedAt = s.State.Running.StartedAt.Time
		}
	}
	if startedAt.IsZero() {
		t.Fatalf("%s: container %s has not started", p.Name, c)
	}
	var first time.Time
	if err := retry(ctx, 30*time.Second, 250*time.Millisecond, func() error {
		out := logs(t, ctx, p.Namespace, p.Name, c, true)
		ts, _, ok := strings.Cut(out, " ")
		if !ok {
			return errors.New("no log line yet")
		}
		var err error
		first, err = time.Parse(time.RFC3339Nano, ts)
		return err
	}); err != nil {
		t.Fatalf("%s: first log line of %s: %v", p.Name, c, err)
	}
	s := delaySample{name: name, fromLog: first.Sub(ready), fromStartedAt: startedAt.Sub(ready)}
	// When wait-for-service saw the last dependency: the runtime's timestamp
	// of its "all ... ready" line. The rest is the kubelet starting containers.
	for _, line := range strings.Split(logs(t, ctx, p.Namespace, p.Name, webhook.WaitContainerName, true), "\n") {
		ts, msg, _ := strings.Cut(line, " ")
		if _, rest, ok := strings.Cut(msg, " "); ok && strings.HasPrefix(rest, "all ") && strings.Contains(rest, " ready after ") {
			if at, err := time.Parse(time.RFC3339Nano, ts); err == nil {
				s.detect = at.Sub(ready)
			}
		}
	}
	t.Logf("%s: dependency ready at %s; wait-for-service saw it %s later; app container %s started at %s (first log line %s): delay %s (startedAt: %s)",
		name, ready.UTC().Format("15:04:05.000"), s.detect.Round(time.Millisecond), c, startedAt.UTC().Format("15:04:05"), first.UTC().Format("15:04:05.000"),
		s.fromLog.Round(time.Millisecond), s.fromStartedAt.Round(time.Millisecond))
	if s.fromLog < 0 {
		t.Errorf("%s: the app started %s before its dependency was ready", name, -s.fromLog)
	}
	recordDelay(s)
	return s
}

// metrics scrapes /metrics of a webhook Pod through the API server's Pod proxy.
func metrics(ctx context.Context, pod string) (string, error) {
	raw, err := e.cs.CoreV1().Pods(deploy.Namespace).ProxyGet("http", pod, "8080", "/metrics", nil).DoRaw(ctx)
	return string(raw), err
}

// sumMetric adds the samples of a metric whose labels contain every want pair
// (e.g. `webhook="/mutate"`), from the Prometheus text format.
func sumMetric(text, name string, want ...string) float64 {
	var sum float64
	for _, line := range strings.Split(text, "\n") {
		if !strings.HasPrefix(line, name+"{") && !strings.HasPrefix(line, name+" ") {
			continue
		}
		labels := ""
		rest := line[len(name):]
		if strings.HasPrefix(rest, "{") {
			end := strings.Index(rest, "}")
			if end < 0 {
				continue
			}
			labels, rest = rest[1:end], rest[end+1:]
		}
		match := true
		for _, w := range want {
			match = match && strings.Contains(","+labels+",", ","+w+",")
		}
		if !match {
			continue
		}
		fs := strings.Fields(rest)
		if len(fs) == 0 {
			continue
		}
		if v, err := strconv.ParseFloat(fs[0], 64); err == nil {
			sum += v
		}
	}
	return sum
}

// events lists the core/v1 Events of an object (what kubectl describe shows).
func events(ctx context.Context, ns, kind, name string) ([]corev1.Event, error) {
	sel := fields.Set{"involvedObject.kind": kind}
	if name != "" {
		sel["involvedObject.name"] = name
	}
	list, err := e.cs.CoreV1().Events(ns).List(ctx, metav1.ListOptions{FieldSelector: sel.String()})
	if err != nil {
		return nil, err
	}
	return list.Items, nil
}
