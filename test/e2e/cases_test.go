//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	"github.com/depends-on/depends-on/deploy"
	"github.com/depends-on/depends-on/test/testutil"
	"github.com/depends-on/depends-on/webhook"
)

// The page examples/info-page.yaml serves.
const infoPageText = "home of the first website"

func TestE2E(t *testing.T) {
	requireSetup(t)
	// First and alone: it reads the webhook's request counter, which any
	// other case would move.
	t.Run("unannotated-pods-never-reach-the-webhook", testUnannotated)
	t.Run("cases", func(t *testing.T) {
		for _, c := range []struct {
			name string
			fn   func(*testing.T)
		}{
			{"myapp-pod-dns", testMyAppDNS},
			{"myapp-pod-ports-and-backends", testMyAppPorts},
			{"init-demo-fetch", testInitDemo},
			{"timeout", testTimeout},
			{"deployment-all-replicas-injected", testDeployment},
			{"deployment-bad-annotation-denied", testBadAnnotation},
			{"restricted-namespace", testRestricted},
			{"rolling-restart-under-load", testAvailability},
			{"native-sidecar", testNativeSidecar},
			{"objects", testObjects}, {"inject-cli", testInjectCLI},
		} {
			t.Run(c.name, func(t *testing.T) {
				t.Parallel()
				c.fn(t)
			})
		}
	})
	// Last and alone: it compares Pod start times with and without
	// depends-on, which the parallel cases' load would drown.
	t.Run("satisfied-job-no-init-container", testSatisfied)
}

func caseContext(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), d)
	t.Cleanup(cancel)
	return ctx
}

// Seed example 1, as in the docs: examples/myapp-pod.yaml waits for the
// Services of examples/services.yaml by DNS.
func testMyAppDNS(t *testing.T) {
	ctx := caseContext(t, 5*time.Minute)
	ns := namespace(t, ctx, "myapp-dns", nil)
	kubectl(t, ctx, "-n", ns, "apply", "-f", "examples/myapp-pod.yaml")

	p := waitPod(t, ctx, ns, "myapp-pod", 3*time.Minute, "wait-for-service runs", func(p *corev1.Pod) (bool, error) {
		return initRunning(p, webhook.WaitContainerName), nil
	})
	wantInit(t, p, webhook.WaitContainerName, e.waitImg,
		"dns:myservice."+ns+".svc.cluster.local.", "dns:mydb."+ns+".svc.cluster.local.")
	out := waitLogsKubectl(t, ctx, ns, "myapp-pod", webhook.WaitContainerName, time.Minute,
		"waiting for 2 targets: dns:myservice."+ns+".svc.cluster.local., dns:mydb."+ns+".svc.cluster.local.",
		"dns:myservice."+ns+".svc.cluster.local. not ready", "dns:mydb."+ns+".svc.cluster.local. not ready")
	t.Logf("kubectl logs myapp-pod -c wait-for-service (before the Services exist):\n%s", out)
	p = getPod(t, ctx, ns, "myapp-pod")
	inInit(t, p, webhook.WaitContainerName)
	t.Logf("kubectl get pod:\n%s", kubectl(t, ctx, "-n", ns, "get", "pod", "myapp-pod"))

	// Now the docs' Services; the last Create's return is the ready instant.
	var ready time.Time
	for _, svc := range exampleServices(t, "examples/services.yaml") {
		if _, err := e.cs.CoreV1().Services(ns).Create(ctx, svc, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		ready = time.Now()
	}
	p = waitPod(t, ctx, ns, "myapp-pod", 2*time.Minute, "myapp-container runs", containerRunning("myapp-container"))
	startDelay(t, ctx, "myapp-pod (DNS)", p, "myapp-container", ready)
	if got := logs(t, ctx, ns, "myapp-pod", "myapp-container", false); !strings.Contains(got, "The app is running!") {
		t.Errorf("app log %q lacks the docs' greeting", got)
	}
	t.Logf("kubectl logs -c wait-for-service (after):\n%s", logs(t, ctx, ns, "myapp-pod", webhook.WaitContainerName, false))
}

// Seed example 1 with ports: TCP waits on name:port, which need a backend
// behind each Service, not just the Service.
func testMyAppPorts(t *testing.T) {
	ctx := caseContext(t, 5*time.Minute)
	ns := namespace(t, ctx, "myapp-ports", nil)
	pod := examplePod(t, "examples/myapp-pod.yaml")
	pod.Annotations[webhook.AnnotationServices] = "myservice:80, mydb:5432"
	if _, err := e.cs.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	svcA := "tcp:myservice." + ns + ".svc.cluster.local.:80"
	svcB := "tcp:mydb." + ns + ".svc.cluster.local.:5432"
	p := waitPod(t, ctx, ns, "myapp-pod", 3*time.Minute, "wait-for-service runs", func(p *corev1.Pod) (bool, error) {
		return initRunning(p, webhook.WaitContainerName), nil
	})
	wantInit(t, p, webhook.WaitContainerName, e.waitImg, svcA, svcB)
	out := waitLogsKubectl(t, ctx, ns, "myapp-pod", webhook.WaitContainerName, time.Minute,
		"waiting for 2 targets: "+svcA+", "+svcB, svcA+" not ready", svcB+" not ready")
	t.Logf("kubectl logs -c wait-for-service (no Services yet):\n%s", out)

	// Services first: they resolve, but nothing accepts connections yet.
	for _, s := range []struct {
		name         string
		port, target int32
	}{{"myservice", 80, 9376}, {"mydb", 5432, 9377}} {
		svc := &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Name: s.name},
			Spec: corev1.ServiceSpec{
				Selector: map[string]string{"app.kubernetes.io/name": s.name + "-backend"},
				Ports:    []corev1.ServicePort{{Protocol: corev1.ProtocolTCP, Port: s.port, TargetPort: intstr.FromInt32(s.target)}},
			},
		}
		if _, err := e.cs.CoreV1().Services(ns).Create(ctx, svc, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(3 * time.Second)
	p = getPod(t, ctx, ns, "myapp-pod")
	inInit(t, p, webhook.WaitContainerName)
	t.Logf("3 s after the Services exist, without backends, still in Init:\n%s", kubectl(t, ctx, "-n", ns, "get", "pod", "myapp-pod"))

	// Then a backend Pod behind each; ready = the instant the later one is seen Ready.
	backends := watchReady(t, ctx, ns, "e2e.depends-on.dev/role=backend")
	for _, b := range []struct {
		name string
		port int32
	}{{"myservice-backend", 9376}, {"mydb-backend", 9377}} {
		if _, err := e.cs.CoreV1().Pods(ns).Create(ctx, backendPod(b.name, b.port), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	ready := backends.wait(t, ctx, 2, 2*time.Minute)
	p = waitPod(t, ctx, ns, "myapp-pod", 2*time.Minute, "myapp-container runs", containerRunning("myapp-container"))
	startDelay(t, ctx, "myapp-pod (ports, backends)", p, "myapp-container", ready)
	t.Logf("kubectl logs -c wait-for-service:\n%s", logs(t, ctx, ns, "myapp-pod", webhook.WaitContainerName, false))
}

// backendPod listens on port (busybox httpd) and is Ready once it accepts connections.
func backendPod(name string, port int32) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{
			"app.kubernetes.io/name": name, "e2e.depends-on.dev/role": "backend"}},
		Spec: corev1.PodSpec{
			TerminationGracePeriodSeconds: ptr.To[int64](0),
			Containers: []corev1.Container{{
				Name:    "server",
				Image:   "busybox:1.28",
				Command: []string{"sh", "-c", fmt.Sprintf("mkdir -p /tmp/www && echo ok > /tmp/www/index.html && exec httpd -f -p %d -h /tmp/www", port)},
				Ports:   []corev1.ContainerPort{{ContainerPort: port}},
				ReadinessProbe: &corev1.Probe{
					ProbeHandler:  corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{Port: intstr.FromInt32(port)}},
					PeriodSeconds: 1,
				},
			}},
		},
	}
}

// Seed example 2: examples/init-demo.yaml fetches the page that
// examples/info-page.yaml serves; nginx serves the fetched file.
func testInitDemo(t *testing.T) {
	ctx := caseContext(t, 5*time.Minute)
	ns := namespace(t, ctx, "init-demo", nil)
	kubectl(t, ctx, "-n", ns, "apply", "-f", "examples/init-demo.yaml")
	p := waitPod(t, ctx, ns, "init-demo", 3*time.Minute, "wait-for-service runs", func(p *corev1.Pod) (bool, error) {
		return initRunning(p, webhook.WaitContainerName), nil
	})
	wantInit(t, p, webhook.WaitContainerName, e.waitImg, "tcp:info-page."+ns+".svc.cluster.local.:80")
	wantInit(t, p, webhook.FetchContainerName, e.waitImg, "=http://info-page/")
	out := waitLogsKubectl(t, ctx, ns, "init-demo", webhook.WaitContainerName, time.Minute, "waiting for 1 target", "not ready")
	t.Logf("kubectl logs init-demo -c wait-for-service (no info-page yet):\n%s", out)
	inInit(t, getPod(t, ctx, ns, "init-demo"), webhook.WaitContainerName)

	infoPage := watchReady(t, ctx, ns, "app.kubernetes.io/name=info-page")
	kubectl(t, ctx, "-n", ns, "apply", "-f", "examples/info-page.yaml")
	ready := infoPage.wait(t, ctx, 1, 2*time.Minute)
	p = waitPod(t, ctx, ns, "init-demo", 2*time.Minute, "nginx runs", containerRunning("nginx"))
	startDelay(t, ctx, "init-demo (fetch)", p, "nginx", ready)

	page := kubectl(t, ctx, "-n", ns, "exec", "init-demo", "-c", "nginx", "--", "cat", "/usr/share/nginx/html/index.html")
	if !strings.Contains(page, infoPageText) {
		t.Fatalf("fetched index.html is not the info page:\n%s", page)
	}
	t.Logf("kubectl exec init-demo -- cat /usr/share/nginx/html/index.html:\n%s", page)
	// The file is mounted read-only.
	if out, err := e.kubectlRun(ctx, "", "-n", ns, "exec", "init-demo", "-c", "nginx", "--",
		"sh", "-c", "echo x >> /usr/share/nginx/html/index.html"); err == nil {
		t.Errorf("the fetched file is writable in the app container: %s", out)
	}
	// nginx serves it on port 80 (through the API server's Pod proxy).
	var served string
	if err := retry(ctx, 30*time.Second, time.Second, func() error {
		raw, err := e.cs.CoreV1().Pods(ns).ProxyGet("http", "init-demo", "80", "/", nil).DoRaw(ctx)
		served = string(raw)
		if err == nil && !strings.Contains(served, infoPageText) {
			err = fmt.Errorf("nginx served %q", served)
		}
		return err
	}); err != nil {
		t.Fatalf("GET http://init-demo:80/: %v", err)
	}
	t.Logf("nginx on port 80 serves the fetched page (%d bytes)", len(served))
}

// A dependency that never appears, with a 10 s timeout and restartPolicy
// Never: the Pod fails and the termination message names the dependency.
func testTimeout(t *testing.T) {
	ctx := caseContext(t, 4*time.Minute)
	ns := namespace(t, ctx, "timeout", nil)
	pod := tinyPod("never-ready", map[string]string{
		webhook.AnnotationServices: "never-there",
		webhook.AnnotationTimeout:  "10s",
	})
	pod.Spec.RestartPolicy = corev1.RestartPolicyNever
	if _, err := e.cs.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	p := waitPod(t, ctx, ns, "never-ready", 3*time.Minute, "the Pod Failed", podFailed)
	missing := "dns:never-there." + ns + ".svc.cluster.local."
	var term *corev1.ContainerStateTerminated
	for _, s := range p.Status.InitContainerStatuses {
		if s.Name == webhook.WaitContainerName {
			term = s.State.Terminated
		}
	}
	if term == nil || term.ExitCode != 1 {
		t.Fatalf("wait-for-service did not exit 1:\n%s", podStatus(p))
	}
	if !strings.Contains(term.Message, "timed out after 10s") || !strings.Contains(term.Message, missing) {
		t.Fatalf("termination message %q does not name %s", term.Message, missing)
	}
	if waited := term.FinishedAt.Sub(term.StartedAt.Time); waited < 9*time.Second || waited > 30*time.Second {
		t.Errorf("wait-for-service ran %s, want about 10s", waited)
	}
	for _, s := range p.Status.ContainerStatuses {
		if s.State.Running != nil || s.State.Terminated != nil && s.State.Terminated.StartedAt.Year() > 1 {
			t.Errorf("app container %s ran although its dependency never appeared", s.Name)
		}
	}
	describe := kubectl(t, ctx, "-n", ns, "describe", "pod", "never-ready")
	if !strings.Contains(describe, missing) {
		t.Fatalf("kubectl describe does not show the missing dependency:\n%s", describe)
	}
	t.Logf("Pod Failed; termination message (kubectl describe): %s", term.Message)
}

// A Deployment with the annotation in its Pod template: every replica is
// injected and waits, and all start once the Service exists.
func testDeployment(t *testing.T) {
	ctx := caseContext(t, 5*time.Minute)
	ns := namespace(t, ctx, "deployment", nil)
	const replicas = 3
	labels := map[string]string{"app.kubernetes.io/name": "web"}
	d := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "web"},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To[int32](replicas),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels, Annotations: map[string]string{webhook.AnnotationServices: "backend"}},
				Spec:       tinyPod("", nil).Spec,
			},
		},
	}
	if _, err := e.cs.AppsV1().Deployments(ns).Create(ctx, d, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	var pods []corev1.Pod
	if err := retry(ctx, 3*time.Minute, 500*time.Millisecond, func() error {
		list, err := e.cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/name=web"})
		if err != nil {
			return err
		}
		pods = list.Items
		running := 0
		for i := range pods {
			if initRunning(&pods[i], webhook.WaitContainerName) {
				running++
			}
		}
		if running < replicas {
			return fmt.Errorf("%d of %d replicas waiting in wait-for-service", running, replicas)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(pods) != replicas {
		t.Fatalf("%d Pods, want %d", len(pods), replicas)
	}
	for i := range pods {
		wantInit(t, &pods[i], webhook.WaitContainerName, e.waitImg, "dns:backend."+ns+".svc.cluster.local.")
		inInit(t, &pods[i], webhook.WaitContainerName)
	}
	t.Logf("all %d replicas injected and waiting:\n%s", replicas, kubectl(t, ctx, "-n", ns, "get", "pods"))

	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "backend"},
		Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Port: 80}}}}
	if _, err := e.cs.CoreV1().Services(ns).Create(ctx, svc, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	ready := time.Now()
	for i := range pods {
		p := waitPod(t, ctx, ns, pods[i].Name, 2*time.Minute, "app runs", containerRunning("app"))
		startDelay(t, ctx, fmt.Sprintf("deployment replica %d", i+1), p, "app", ready)
	}
	if err := retry(ctx, time.Minute, time.Second, func() error {
		d, err := e.cs.AppsV1().Deployments(ns).Get(ctx, "web", metav1.GetOptions{})
		if err == nil && d.Status.AvailableReplicas != replicas {
			err = fmt.Errorf("%d of %d replicas available", d.Status.AvailableReplicas, replicas)
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
}

// A bad annotation in a Deployment's template: the webhook denies every Pod
// and the ReplicaSet's events carry the denial message.
func testBadAnnotation(t *testing.T) {
	ctx := caseContext(t, 4*time.Minute)
	ns := namespace(t, ctx, "bad-annotation", nil)
	labels := map[string]string{"app.kubernetes.io/name": "bad"}
	d := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "bad"},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To[int32](1),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels, Annotations: map[string]string{
					webhook.AnnotationServices: "backend",
					webhook.AnnotationTimeout:  "soon",
				}},
				Spec: tinyPod("", nil).Spec,
			},
		},
	}
	if _, err := e.cs.AppsV1().Deployments(ns).Create(ctx, d, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	var msg string
	if err := retry(ctx, 2*time.Minute, time.Second, func() error {
		evs, err := events(ctx, ns, "ReplicaSet", "")
		if err != nil {
			return err
		}
		for _, ev := range evs {
			if ev.Reason == "FailedCreate" && strings.Contains(ev.Message, `admission webhook "`+deploy.WebhookName+`" denied the request`) {
				msg = ev.Message
				return nil
			}
		}
		return fmt.Errorf("no FailedCreate event from the webhook among %d ReplicaSet events", len(evs))
	}); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"depends-on: 1 problem", "depends-on.dev/timeout", `"soon"`, "not a duration"} {
		if !strings.Contains(msg, want) {
			t.Errorf("ReplicaSet event %q lacks %q", msg, want)
		}
	}
	pods, err := e.cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(pods.Items) != 0 {
		t.Errorf("%d Pods were created despite the bad annotation", len(pods.Items))
	}
	t.Logf("ReplicaSet event: %s", msg)
}

// Pod Security "restricted": the injected containers pass on their own, for
// both the wait and the fetch container.
func testRestricted(t *testing.T) {
	ctx := caseContext(t, 5*time.Minute)
	ns := namespace(t, ctx, "restricted", map[string]string{
		"pod-security.kubernetes.io/enforce":         "restricted",
		"pod-security.kubernetes.io/enforce-version": "latest",
	})
	// Enforcement is on: a plain Pod is rejected.
	if _, err := e.cs.CoreV1().Pods(ns).Create(ctx, tinyPod("plain", nil), metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}}); err == nil ||
		!strings.Contains(err.Error(), "violates PodSecurity") {
		t.Fatalf("a non-compliant Pod was not rejected by Pod Security: %v", err)
	}
	kubectl(t, ctx, "-n", ns, "apply", "-f", "examples/info-page.yaml") // restricted-compliant itself
	pod := testutil.Restricted(tinyPod("restricted-app", map[string]string{
		webhook.AnnotationServices: "info-page:80",
		webhook.AnnotationFetch:    "/etc/app/page.html=http://info-page/",
	}))
	pod.Spec.Containers[0].Command = []string{"sh", "-c", "cat /etc/app/page.html && exec sleep 3600"}
	created, err := e.cs.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("annotated restricted Pod rejected: %v", err)
	}
	wantInit(t, created, webhook.WaitContainerName, e.waitImg, "tcp:info-page."+ns+".svc.cluster.local.:80")
	wantInit(t, created, webhook.FetchContainerName, e.waitImg, "=http://info-page/")
	p := waitPod(t, ctx, ns, "restricted-app", 3*time.Minute, "app runs", containerRunning("app"))
	for _, s := range p.Status.InitContainerStatuses {
		if s.State.Terminated == nil || s.State.Terminated.ExitCode != 0 {
			t.Errorf("init container %s did not succeed:\n%s", s.Name, podStatus(p))
		}
	}
	out := waitLogs(t, ctx, ns, "restricted-app", "app", 30*time.Second, infoPageText)
	t.Logf("restricted Pod runs; app printed the fetched page (%d bytes)", len(out))
}

// Availability: annotated Pods keep being created during a rolling restart of
// the webhook; none may fail. The Pods are held by a scheduling gate: what
// counts is admission, and 200 running Pods would exceed the node's 110.
func testAvailability(t *testing.T) {
	ctx := caseContext(t, 8*time.Minute)
	ns := namespace(t, ctx, "availability", nil)
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "dep"},
		Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Port: 80}}}}
	if _, err := e.cs.CoreV1().Services(ns).Create(ctx, svc, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	oldPods, err := webhookPods(ctx)
	if err != nil || len(oldPods) == 0 {
		t.Fatalf("webhook Pods: %v (%d)", err, len(oldPods))
	}

	const want, limit = 200, 600
	const interval = 250 * time.Millisecond
	var (
		created, failed atomic.Int64
		mu              sync.Mutex
		errs            []string
		first, last     time.Time
		wg              sync.WaitGroup
		rolloutDone     atomic.Bool
		rolloutStart    time.Time
		rolloutTook     time.Duration
	)
	sem := make(chan struct{}, 16)
	create := func(i int) {
		defer wg.Done()
		defer func() { <-sem }()
		p := tinyPod(fmt.Sprintf("load-%03d", i), map[string]string{webhook.AnnotationServices: "dep"})
		p.Labels = map[string]string{"e2e.depends-on.dev/role": "load"}
		p.Spec.SchedulingGates = []corev1.PodSchedulingGate{{Name: "e2e.depends-on.dev/hold"}}
		_, err := e.cs.CoreV1().Pods(ns).Create(ctx, p, metav1.CreateOptions{})
		mu.Lock()
		defer mu.Unlock()
		if err != nil {
			failed.Add(1)
			errs = append(errs, fmt.Sprintf("%s %s: %v", time.Now().UTC().Format("15:04:05.000"), p.Name, err))
			return
		}
		created.Add(1)
	}

	// Watch the rollout: done when the Deployment is complete and every old
	// Pod is gone (they drain for 10 s after SIGTERM).
	monitorDone := make(chan struct{})
	// Requests the old replicas answered after their SIGTERM (scraped from the
	// first sight of their deletionTimestamp until they are gone): the drain
	// at work. A lower bound.
	var (
		drainWG     sync.WaitGroup
		drainMu     sync.Mutex
		drainServed float64
	)
	for _, p := range oldPods {
		drainWG.Add(1)
		go func(name string) {
			defer drainWG.Done()
			atTerm, last := -1.0, 0.0
			for ctx.Err() == nil {
				pod, err := e.cs.CoreV1().Pods(deploy.Namespace).Get(ctx, name, metav1.GetOptions{})
				if apierrors.IsNotFound(err) {
					break
				}
				if err == nil {
					if m, err := metrics(ctx, name); err == nil {
						last = sumMetric(m, "controller_runtime_webhook_requests_total", `webhook="/mutate"`)
						if pod.DeletionTimestamp != nil && atTerm < 0 {
							atTerm = last
						}
					}
				}
				time.Sleep(250 * time.Millisecond)
			}
			if atTerm >= 0 {
				drainMu.Lock()
				drainServed += last - atTerm
				drainMu.Unlock()
			}
		}(p.Name)
	}
	startRollout := func() {
		rolloutStart = time.Now()
		kubectl(t, ctx, "-n", deploy.Namespace, "rollout", "restart", "deployment/"+deploy.Name)
		go func() {
			defer close(monitorDone)
			for ctx.Err() == nil {
				if rolloutComplete(ctx, oldPods) {
					rolloutTook = time.Since(rolloutStart)
					rolloutDone.Store(true)
					return
				}
				time.Sleep(500 * time.Millisecond)
			}
		}()
	}

	ticker := time.NewTicker(interval)
	defer ticker.Stop()
	first = time.Now()
	for i := 0; i < limit; i++ {
		if i >= want && rolloutDone.Load() {
			break
		}
		if i == 8 {
			startRollout()
		}
		<-ticker.C
		sem <- struct{}{}
		wg.Add(1)
		go create(i)
		last = time.Now()
	}
	wg.Wait()
	select {
	case <-monitorDone:
	case <-ctx.Done():
	}
	if !rolloutDone.Load() {
		t.Fatalf("the rollout restart did not complete while %d Pods were created", created.Load()+failed.Load())
	}
	drainWG.Wait()

	// The new replicas serve: their request counters moved.
	var servedByNew float64
	newPods, err := webhookPods(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range newPods {
		m, err := metrics(ctx, p.Name)
		if err != nil {
			t.Fatalf("metrics of %s: %v", p.Name, err)
		}
		servedByNew += sumMetric(m, "controller_runtime_webhook_requests_total", `webhook="/mutate"`)
	}

	a := &availability{
		created: int(created.Load()), failed: int(failed.Load()),
		window: last.Sub(first), rollout: rolloutTook, servedByNew: servedByNew, servedDraining: drainServed,
	}
	results.Lock()
	results.avail = a
	results.Unlock()
	t.Logf("rolling restart: %d annotated Pods created over %s, %d failed; rollout restart -> old Pods gone in %s; old replicas answered >= %.0f requests while draining, new replicas %.0f",
		a.created, a.window.Round(100*time.Millisecond), a.failed, a.rollout.Round(100*time.Millisecond), drainServed, servedByNew)
	if a.failed > 0 {
		n := min(len(errs), 10)
		t.Fatalf("%d Pod creations failed during the rolling restart; first %d:\n%s", a.failed, n, strings.Join(errs[:n], "\n"))
	}
	if a.created < want {
		t.Fatalf("only %d Pods created", a.created)
	}
	if servedByNew == 0 {
		t.Errorf("the new webhook replicas served no requests")
	}
	// Every created Pod went through the webhook.
	list, err := e.cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "e2e.depends-on.dev/role=load"})
	if err != nil {
		t.Fatal(err)
	}
	notInjected := 0
	for i := range list.Items {
		if _, ok := list.Items[i].Annotations[webhook.AnnotationInjected]; !ok {
			notInjected++
		}
	}
	if len(list.Items) != a.created || notInjected > 0 {
		t.Fatalf("%d Pods listed (want %d), %d without injection", len(list.Items), a.created, notInjected)
	}
	// Delete them now rather than with the namespace: nothing waits on them.
	_ = e.cs.CoreV1().Pods(ns).DeleteCollection(ctx, metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](0)},
		metav1.ListOptions{LabelSelector: "e2e.depends-on.dev/role=load"})
}

// rolloutComplete: the webhook Deployment has all replicas updated and
// available, and none of the old Pods exists anymore.
func rolloutComplete(ctx context.Context, old []corev1.Pod) bool {
	d, err := e.cs.AppsV1().Deployments(deploy.Namespace).Get(ctx, deploy.Name, metav1.GetOptions{})
	if err != nil || d.Status.ObservedGeneration < d.Generation {
		return false
	}
	want := ptr.Deref(d.Spec.Replicas, 1)
	if d.Status.UpdatedReplicas != want || d.Status.AvailableReplicas != want || d.Status.Replicas != want {
		return false
	}
	for _, p := range old {
		_, err := e.cs.CoreV1().Pods(deploy.Namespace).Get(ctx, p.Name, metav1.GetOptions{})
		if !apierrors.IsNotFound(err) {
			return false
		}
	}
	return true
}

// Unannotated Pods never reach the webhook: its request counter, summed over
// its replicas, does not move when they are created; an annotated Pod moves it.
func testUnannotated(t *testing.T) {
	ctx := caseContext(t, 3*time.Minute)
	ns := namespace(t, ctx, "unannotated", nil)
	scrape := func() (requests, patched float64, pods string) {
		t.Helper()
		wp, err := webhookPods(ctx)
		if err != nil || len(wp) == 0 {
			t.Fatalf("webhook Pods: %v (%d)", err, len(wp))
		}
		all, err := e.cs.CoreV1().Pods(deploy.Namespace).List(ctx, metav1.ListOptions{LabelSelector: webhookLabelSelector})
		if err != nil || len(all.Items) != len(wp) {
			t.Fatalf("webhook Pods not settled (%d running of %d): %v", len(wp), len(all.Items), err)
		}
		var names []string
		for _, p := range wp {
			m, err := metrics(ctx, p.Name)
			if err != nil {
				t.Fatalf("GET /api/v1/namespaces/%s/pods/%s:8080/proxy/metrics: %v", deploy.Namespace, p.Name, err)
			}
			if !strings.Contains(m, "depends_on_admission_decisions_total") {
				t.Fatalf("metrics of %s lack depends_on_admission_decisions_total", p.Name)
			}
			requests += sumMetric(m, "controller_runtime_webhook_requests_total", `webhook="/mutate"`)
			patched += sumMetric(m, "depends_on_admission_decisions_total", `decision="patched"`)
			var restarts int32
			for _, s := range p.Status.ContainerStatuses {
				restarts += s.RestartCount
			}
			names = append(names, fmt.Sprintf("%s/%s/%d", p.Name, p.UID, restarts))
		}
		return requests, patched, strings.Join(names, ",")
	}
	// createPlain creates unannotated Pods (held by a scheduling gate: admission
	// is what counts) and returns how far the request counter moved.
	round := 0
	createPlain := func() (moved float64, pods string) {
		t.Helper()
		round++
		before, _, podsBefore := scrape()
		plain := []*corev1.Pod{
			tinyPod(fmt.Sprintf("plain-r%d", round), nil),
			tinyPod(fmt.Sprintf("other-annotations-r%d", round), map[string]string{"example.com/depends-on": "mydb", "depends-on.dev": "not a key under the prefix"}),
		}
		for i := 0; i < 3; i++ {
			plain = append(plain, tinyPod(fmt.Sprintf("plain-r%d-%d", round, i), nil))
		}
		for _, p := range plain {
			p.Spec.SchedulingGates = []corev1.PodSchedulingGate{{Name: "e2e.depends-on.dev/hold"}}
			got, err := e.cs.CoreV1().Pods(ns).Create(ctx, p, metav1.CreateOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if len(got.Spec.InitContainers) != 0 {
				t.Errorf("unannotated Pod %s was injected", p.Name)
			}
		}
		after, _, podsAfter := scrape()
		if podsAfter != podsBefore {
			t.Fatalf("webhook Pods changed during the measurement (%s -> %s)", podsBefore, podsAfter)
		}
		return after - before, podsAfter
	}
	const plainPods = 5

	// cert-manager >= v1.12 keeps matchConditions when it injects the
	// caBundle; an older one strips them, which fails here (deploy/README.md).
	if e.matchConditionsStripped {
		t.Fatalf("the MutatingWebhookConfiguration lost its matchConditions with cert-manager %s: use cert-manager >= v1.12", e.cmVersion)
	}

	moved, pods := createPlain()
	if moved != 0 {
		t.Fatalf("the webhook received %v requests for %d unannotated Pods, want 0", moved, plainPods)
	}
	t.Logf("%d unannotated Pods created: controller_runtime_webhook_requests_total{webhook=\"/mutate\"} did not move (%s)", plainPods, pods)

	// Control: an annotated Pod does reach it, so the counter is the right one.
	after, patchedBefore, _ := scrape()
	annotated := tinyPod("annotated", map[string]string{webhook.AnnotationServices: "kubernetes.default"})
	annotated.Spec.SchedulingGates = []corev1.PodSchedulingGate{{Name: "e2e.depends-on.dev/hold"}}
	if _, err := e.cs.CoreV1().Pods(ns).Create(ctx, annotated, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	control, patchedAfter, _ := scrape()
	if control < after+1 || patchedAfter < patchedBefore+1 {
		t.Fatalf("an annotated Pod did not move the counters: requests %v -> %v, patched %v -> %v", after, control, patchedBefore, patchedAfter)
	}
	t.Logf("control: one annotated Pod moved requests %v -> %v, patched decisions %v -> %v", after, control, patchedBefore, patchedAfter)
}

// --- helpers specific to the cases ---

func getPod(t *testing.T, ctx context.Context, ns, name string) *corev1.Pod {
	t.Helper()
	p, err := e.cs.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func initRunning(p *corev1.Pod, name string) bool {
	for _, s := range p.Status.InitContainerStatuses {
		if s.Name == name && s.State.Running != nil {
			return true
		}
	}
	return false
}

// wantInit checks the injected init container: image, and args containing each of want.
func wantInit(t *testing.T, p *corev1.Pod, name, image string, want ...string) {
	t.Helper()
	for _, c := range p.Spec.InitContainers {
		if c.Name != name {
			continue
		}
		if c.Image != image {
			t.Errorf("%s: init container %s has image %s, want %s", p.Name, name, c.Image, image)
		}
		args := strings.Join(c.Args, " ")
		for _, w := range want {
			if !strings.Contains(args, w) {
				t.Errorf("%s: init container %s args %q lack %q", p.Name, name, args, w)
			}
		}
		return
	}
	t.Fatalf("%s: no injected init container %s (have %d init containers)", p.Name, name, len(p.Spec.InitContainers))
}

// podFailed is waitPod's condition for a Pod that must fail: an error if it
// succeeded instead.
func podFailed(p *corev1.Pod) (bool, error) {
	if p.Status.Phase == corev1.PodSucceeded {
		return false, fmt.Errorf("pod succeeded")
	}
	return p.Status.Phase == corev1.PodFailed, nil
}

// waitLogsKubectl waits until `kubectl logs -c container` shows every want
// string and returns that output (what a user would see).
func waitLogsKubectl(t *testing.T, ctx context.Context, ns, pod, container string, timeout time.Duration, want ...string) string {
	t.Helper()
	waitLogs(t, ctx, ns, pod, container, timeout, want...)
	return kubectl(t, ctx, "-n", ns, "logs", pod, "-c", container)
}
