//go:build e2e

package e2e

// Objects as dependencies (issue 9): depends-on.dev/jobs, workloads and
// endpoints, answered by the readiness service (deploy/readiness) on a real
// kubelet and API server. The app's Pods run on their namespace's `default`
// ServiceAccount with no Role or RoleBinding in the namespace; every case
// asserts that, and that the ServiceAccount may not even read Jobs.

import (
	"context"
	"fmt"
	"maps"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/utils/ptr"

	"github.com/depends-on/depends-on/deploy"
	"github.com/depends-on/depends-on/webhook"
	"github.com/depends-on/depends-on/webhook/readiness"
)

const (
	// The label that lets other namespaces wait for a namespace's objects.
	sharedLabel = "depends-on.dev/shared"
	// What the injected wait container mounts, and nothing else does.
	readinessTokenDir = "/var/run/secrets/depends-on.dev/readiness"
	// The ServiceAccount admission plugin's token, which the wait container must not get.
	apiTokenDir = "/var/run/secrets/kubernetes.io/serviceaccount"
	// The uid of the injected containers (distroless nonroot).
	waitUID = 65532
)

// testObjects runs the object cases in parallel, each in its own namespace,
// then the rolling restart of the readiness service alone: it would move the
// latencies the others measure.
func testObjects(t *testing.T) {
	t.Run("waits", func(t *testing.T) {
		for _, c := range []struct {
			name string
			fn   func(*testing.T)
		}{
			{"job-migration", testJobMigration},
			{"job-failed", testJobFailed},
			{"deployment-available", testDeploymentAvailable},
			{"headless-endpoints", testHeadlessEndpoints},
			{"job-ttl-deleted", testJobTTLDeleted},
			{"cross-namespace", testCrossNamespace},
		} {
			t.Run(c.name, func(t *testing.T) {
				t.Parallel()
				c.fn(t)
			})
		}
	})
	t.Run("readiness-rolling-restart", testReadinessRestart)
}

// A Deployment whose Pods wait for a migration Job (sleep 10, exit 0): they
// wait (Event on each Pod), and the app starts after the Job's completion.
func testJobMigration(t *testing.T) {
	ctx := caseContext(t, 6*time.Minute)
	ns := objectNamespace(t, ctx, "obj-job")
	const replicas = 2
	target := "job:" + ns + "/migrate"
	createWaiter(t, ctx, ns, waiterDeployment("app", replicas, map[string]string{webhook.AnnotationJobs: "migrate"}))
	// The Deployment first: its Pods wait for a Job that does not exist yet.
	pods := waitingPods(t, ctx, ns, "app", replicas, target+" not ready: not found")
	for i := range pods {
		wantObjectWait(t, &pods[i], target)
	}

	done := watchJob(t, ctx, ns, "migrate")
	if _, err := e.cs.BatchV1().Jobs(ns).Create(ctx, job("migrate", "sleep 10"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// While the Job runs, each Pod carries the readiness service's Event.
	for i := range pods {
		ev := waitEvent(t, ctx, ns, pods[i].Name, "DependencyWaiting", "Waiting for job/migrate: 0/1 succeeded")
		if done.seen() {
			t.Errorf("the Job completed before the Event on %s was seen: the Event was not shown while waiting", pods[i].Name)
		}
		t.Logf("Event on %s while waiting: %s %s (from %s)", pods[i].Name, ev.Reason, ev.Message, ev.Source.Component)
	}
	describe := kubectl(t, ctx, "-n", ns, "describe", "pod", pods[0].Name)
	if !strings.Contains(describe, "Waiting for job/migrate: 0/1 succeeded") {
		t.Errorf("kubectl describe pod %s does not show the Event:\n%s", pods[0].Name, describe)
	}
	t.Logf("kubectl describe pod %s (Events):\n%s", pods[0].Name, describe[strings.LastIndex(describe, "Events:"):])

	ready := done.wait(t, ctx, 2*time.Minute)
	j, err := e.cs.BatchV1().Jobs(ns).Get(ctx, "migrate", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if j.Status.CompletionTime == nil {
		t.Fatalf("Job migrate has no completionTime: %+v", j.Status)
	}
	for i := range pods {
		p := waitPod(t, ctx, ns, pods[i].Name, 2*time.Minute, "app runs", containerRunning("app"))
		started := runningSince(t, p, "app")
		// Both whole seconds, rounded down: a later instant is never earlier.
		if started.Before(j.Status.CompletionTime.Time) {
			t.Errorf("%s: app started at %s, before the Job completed at %s", p.Name, started.UTC().Format(time.RFC3339), j.Status.CompletionTime.UTC().Format(time.RFC3339))
		}
		startDelay(t, ctx, fmt.Sprintf("job migrate, replica %d", i+1), p, "app", ready)
		recordObjectWait(t, ctx, fmt.Sprintf("job migrate, replica %d", i+1), p, target, ready, j.Status.CompletionTime.Time)
	}
	// uid 65532 read the projected token: the service answered it (a missing
	// or unreadable token is a permanent failure, exit 1).
	t.Logf("the wait containers (uid %d) read their projected token and were answered; app containers started after completionTime %s",
		waitUID, j.Status.CompletionTime.UTC().Format(time.RFC3339))
	assertNoWorkloadRBAC(t, ctx, ns)
}

// A failing Job ends the wait at once: exit 1, the Job and its reason in the
// termination message and kubectl describe; the app never runs.
func testJobFailed(t *testing.T) {
	ctx := caseContext(t, 5*time.Minute)
	ns := objectNamespace(t, ctx, "obj-job-failed")
	target := "job:" + ns + "/migrate"
	pod := objectPod("app", map[string]string{webhook.AnnotationJobs: "migrate"})
	pod.Spec.RestartPolicy = corev1.RestartPolicyNever
	if _, err := e.cs.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitLogs(t, ctx, ns, "app", webhook.WaitContainerName, 3*time.Minute, target+" not ready: not found")
	wantObjectWait(t, getPod(t, ctx, ns, "app"), target)

	done := watchJob(t, ctx, ns, "migrate")
	if _, err := e.cs.BatchV1().Jobs(ns).Create(ctx, job("migrate", "sleep 2; echo schema broken; exit 3"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	failedAt := done.wait(t, ctx, 2*time.Minute)
	if !done.failed() {
		t.Fatalf("Job migrate completed; it was meant to fail")
	}
	p := waitPod(t, ctx, ns, "app", time.Minute, "the Pod Failed", podFailed)
	term := initTerminated(p, webhook.WaitContainerName)
	if term == nil || term.ExitCode != 1 {
		t.Fatalf("wait-for-service did not exit 1:\n%s", podStatus(p))
	}
	const reason = "BackoffLimitExceeded: Job has reached the specified backoff limit"
	if want := target + " failed: " + reason; !strings.Contains(term.Message, want) {
		t.Errorf("termination message %q lacks %q", term.Message, want)
	}
	for _, s := range p.Status.ContainerStatuses {
		if s.State.Running != nil || s.State.Terminated != nil && s.State.Terminated.StartedAt.Year() > 1 {
			t.Errorf("app container %s ran although its Job failed", s.Name)
		}
	}
	describe := kubectl(t, ctx, "-n", ns, "describe", "pod", "app")
	for _, want := range []string{"Message:      " + target + " failed: " + reason, "Exit Code:    1", "DependencyFailed"} {
		if !strings.Contains(describe, want) {
			t.Errorf("kubectl describe pod app lacks %q:\n%s", want, describe)
		}
	}
	// At once: the wait container's exit (whole seconds) is within a few
	// seconds of the instant the test's watch saw Failed=True.
	if lag := term.FinishedAt.Sub(failedAt.Truncate(time.Second)); lag > 5*time.Second {
		t.Errorf("wait-for-service exited %s after the Job failed", lag)
	}
	t.Logf("Job failed at %s; wait-for-service exited 1 at %s; kubectl describe shows: %s",
		failedAt.UTC().Format("15:04:05.000"), term.FinishedAt.UTC().Format("15:04:05"), term.Message)
	assertNoWorkloadRBAC(t, ctx, ns)
}

// A Deployment waits for another Deployment (nginx) to become Available with
// its rollout complete.
func testDeploymentAvailable(t *testing.T) {
	ctx := caseContext(t, 6*time.Minute)
	ns := objectNamespace(t, ctx, "obj-deployment")
	target := "deployment:" + ns + "/api"
	createWaiter(t, ctx, ns, waiterDeployment("web", 1, map[string]string{webhook.AnnotationWorkloads: "deployment/api"}))
	pods := waitingPods(t, ctx, ns, "web", 1, target+" not ready: not found")
	wantObjectWait(t, &pods[0], target)

	done := watchFirst(t, ctx, "deployment/api ready",
		func() (watch.Interface, error) {
			return e.cs.AppsV1().Deployments(ns).Watch(ctx, metav1.ListOptions{FieldSelector: "metadata.name=api"})
		},
		func(d *appsv1.Deployment) (bool, bool) {
			return readiness.EvaluateDeployment(d).State == readiness.StateReady, false
		})
	const apiReplicas = 2
	labels := map[string]string{"app.kubernetes.io/name": "api"}
	api := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "api"},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To[int32](apiReplicas),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{
					TerminationGracePeriodSeconds: ptr.To[int64](0),
					Containers: []corev1.Container{{
						Name:  "nginx",
						Image: "nginx:1.27",
						Ports: []corev1.ContainerPort{{ContainerPort: 80}},
						ReadinessProbe: &corev1.Probe{
							ProbeHandler:  corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/", Port: intstr.FromInt32(80)}},
							PeriodSeconds: 1,
						},
					}},
				},
			},
		},
	}
	if _, err := e.cs.AppsV1().Deployments(ns).Create(ctx, api, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	ev := waitEvent(t, ctx, ns, pods[0].Name, "DependencyWaiting", "Waiting for deployment/api: ")
	t.Logf("Event on %s: %s", pods[0].Name, ev.Message)
	ready := done.wait(t, ctx, 3*time.Minute)
	d, err := e.cs.AppsV1().Deployments(ns).Get(ctx, "api", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var availableAt time.Time
	for _, c := range d.Status.Conditions {
		if c.Type == appsv1.DeploymentAvailable && c.Status == corev1.ConditionTrue {
			availableAt = c.LastTransitionTime.Time
		}
	}
	// Available=True may be older than the complete rollout (maxUnavailable
	// lets it turn true with 1 of 2): the later of the two is the ready instant.
	apiReady := availableAt
	if r := ready.Truncate(time.Second); r.After(apiReady) {
		apiReady = r
	}
	p := waitPod(t, ctx, ns, pods[0].Name, 2*time.Minute, "app runs", containerRunning("app"))
	if started := runningSince(t, p, "app"); started.Before(availableAt) {
		t.Errorf("app started at %s, before deployment/api was Available at %s", started.UTC().Format(time.RFC3339), availableAt.UTC().Format(time.RFC3339))
	}
	startDelay(t, ctx, "deployment/api available", p, "app", ready)
	recordObjectWait(t, ctx, "deployment/api available", p, target, ready, apiReady)
	assertNoWorkloadRBAC(t, ctx, ns)
}

// A headless Service (no ClusterIP, nothing to connect to by name) waited for
// by depends-on.dev/endpoints: ready with the first ready endpoint.
func testHeadlessEndpoints(t *testing.T) {
	ctx := caseContext(t, 5*time.Minute)
	ns := objectNamespace(t, ctx, "obj-endpoints")
	target := "endpoints:" + ns + "/db:5432"
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "db"},
		Spec: corev1.ServiceSpec{
			ClusterIP: corev1.ClusterIPNone,
			Selector:  map[string]string{"app.kubernetes.io/name": "db"},
			Ports:     []corev1.ServicePort{{Name: "pg", Port: 5432, TargetPort: intstr.FromInt32(5432)}},
		},
	}
	if _, err := e.cs.CoreV1().Services(ns).Create(ctx, svc, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.cs.CoreV1().Pods(ns).Create(ctx, objectPod("client", map[string]string{webhook.AnnotationEndpoints: "db:5432"}), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitPod(t, ctx, ns, "client", 3*time.Minute, "wait-for-service runs", func(p *corev1.Pod) (bool, error) {
		return initRunning(p, webhook.WaitContainerName), nil
	})
	waitLogs(t, ctx, ns, "client", webhook.WaitContainerName, 2*time.Minute, target+" not ready: no ready endpoint for port 5432")
	wantObjectWait(t, getPod(t, ctx, ns, "client"), target)
	inInit(t, getPod(t, ctx, ns, "client"), webhook.WaitContainerName)

	stored, err := e.cs.CoreV1().Services(ns).Get(ctx, "db", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	done := watchFirst(t, ctx, "a ready endpoint of db",
		func() (watch.Interface, error) {
			return e.cs.DiscoveryV1().EndpointSlices(ns).Watch(ctx, metav1.ListOptions{LabelSelector: discoveryv1.LabelServiceName + "=db"})
		},
		func(sl *discoveryv1.EndpointSlice) (bool, bool) {
			return readiness.EvaluateEndpoints(stored, []*discoveryv1.EndpointSlice{sl}, "5432").State == readiness.StateReady, false
		})
	if _, err := e.cs.CoreV1().Pods(ns).Create(ctx, backendPod("db", 5432), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	ready := done.wait(t, ctx, 2*time.Minute)
	backend := getPod(t, ctx, ns, "db")
	var backendReady time.Time
	for _, c := range backend.Status.Conditions {
		if c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue {
			backendReady = c.LastTransitionTime.Time
		}
	}
	p := waitPod(t, ctx, ns, "client", 2*time.Minute, "app runs", containerRunning("app"))
	startDelay(t, ctx, "headless endpoints", p, "app", ready)
	recordObjectWait(t, ctx, "headless endpoints", p, target, ready, backendReady)
	assertNoWorkloadRBAC(t, ctx, ns)
}

// A Job deleted by ttlSecondsAfterFinished: 0 after it completed. A Pod
// created afterwards (an HPA scale-up, k8s-wait-for #50) still starts: the
// readiness service remembered the completion.
func testJobTTLDeleted(t *testing.T) {
	ctx := caseContext(t, 6*time.Minute)
	ns := objectNamespace(t, ctx, "obj-job-ttl")
	target := "job:" + ns + "/migrate"
	ann := map[string]string{webhook.AnnotationJobs: "migrate"}
	if _, err := e.cs.CoreV1().Pods(ns).Create(ctx, objectPod("first", ann), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitLogs(t, ctx, ns, "first", webhook.WaitContainerName, 3*time.Minute, target+" not ready: not found")

	done := watchJob(t, ctx, ns, "migrate")
	j := job("migrate", "sleep 3")
	j.Spec.TTLSecondsAfterFinished = ptr.To[int32](0)
	created, err := e.cs.BatchV1().Jobs(ns).Create(ctx, j, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	done.wait(t, ctx, 2*time.Minute)
	p := waitPod(t, ctx, ns, "first", 2*time.Minute, "app runs", containerRunning("app"))
	firstDone := initTerminated(p, webhook.WaitContainerName).FinishedAt.Time

	// The TTL controller deletes it.
	if err := retry(ctx, 2*time.Minute, 500*time.Millisecond, func() error {
		_, err := e.cs.BatchV1().Jobs(ns).Get(ctx, "migrate", metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return nil
		}
		if err == nil {
			err = fmt.Errorf("job migrate still exists")
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
	deletedAt := time.Now()
	// What the service remembers, in its own namespace: <namespace>.<name> with the uid.
	if err := retry(ctx, 30*time.Second, 500*time.Millisecond, func() error {
		cm, err := e.cs.CoreV1().ConfigMaps(deploy.Namespace).Get(ctx, deploy.ReadinessStateConfig, metav1.GetOptions{})
		if err != nil {
			return err
		}
		v, ok := cm.Data[ns+".migrate"]
		if !ok || !strings.Contains(v, string(created.UID)) {
			return fmt.Errorf("ConfigMap %s has no entry %s.migrate with uid %s: %q", deploy.ReadinessStateConfig, ns, created.UID, v)
		}
		t.Logf("ConfigMap %s/%s: %s.migrate = %s", deploy.Namespace, deploy.ReadinessStateConfig, ns, v)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	// The shared watch of the target closes ~30 s after its last waiter left:
	// the next Pod's question then starts from nothing, as after a scale-up
	// much later.
	if d := 35*time.Second - time.Since(firstDone); d > 0 {
		time.Sleep(d)
	}
	// A network wait next to the Job: the webhook injects (it skips only
	// object-only Pods it sees satisfied), so the wait container's own answer
	// about the deleted Job is what this checks.
	if _, err := e.cs.CoreV1().Pods(ns).Create(ctx, objectPod("second", withAlwaysReady(ann)), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	secondCreated := time.Now()
	p = waitPod(t, ctx, ns, "second", 3*time.Minute, "app runs", containerRunning("app"))
	wantObjectWait(t, p, target)
	out := logs(t, ctx, ns, "second", webhook.WaitContainerName, false)
	if want := target + " ready after"; !strings.Contains(out, want) || !strings.Contains(out, readiness.ReasonDeletedSince) {
		t.Errorf("wait-for-service of the second Pod did not report %q with %q:\n%s", want, readiness.ReasonDeletedSince, out)
	}
	t.Logf("Job deleted by its TTL at %s; a Pod created %s after that started; kubectl logs second -c wait-for-service:\n%s",
		deletedAt.UTC().Format("15:04:05"), secondCreated.Sub(deletedAt).Round(time.Second), out)
	// Waiting for the deleted Job alone: the remembered completion is
	// satisfied, so the webhook injects nothing (issue 14).
	wantSkipped(t, ctx, ns, "third", ann, target)
	assertNoWorkloadRBAC(t, ctx, ns)
}

// Cross-namespace: refused at once without the label depends-on.dev/shared=true
// on the other namespace (the message says which label), allowed with it.
func testCrossNamespace(t *testing.T) {
	ctx := caseContext(t, 5*time.Minute)
	shared := objectNamespace(t, ctx, "obj-shared")
	ns := objectNamespace(t, ctx, "obj-cross")
	target := "job:" + shared + "/seed"
	done := watchJob(t, ctx, shared, "seed")
	if _, err := e.cs.BatchV1().Jobs(shared).Create(ctx, job("seed", "true"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	done.wait(t, ctx, 2*time.Minute)

	ann := map[string]string{webhook.AnnotationJobs: "seed." + shared}
	refused := objectPod("refused", ann)
	refused.Spec.RestartPolicy = corev1.RestartPolicyNever
	if _, err := e.cs.CoreV1().Pods(ns).Create(ctx, refused, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	p := waitPod(t, ctx, ns, "refused", 3*time.Minute, "the Pod Failed", podFailed)
	wantObjectWait(t, p, target)
	term := initTerminated(p, webhook.WaitContainerName)
	if term == nil || term.ExitCode != 1 {
		t.Fatalf("wait-for-service did not exit 1:\n%s", podStatus(p))
	}
	want := fmt.Sprintf("%s failed: readiness service answered 403 Forbidden: namespace %q does not share its objects with namespace %q: label it %s=true",
		target, shared, ns, sharedLabel)
	if term.Message != want {
		t.Errorf("termination message\n  %q\nwant\n  %q", term.Message, want)
	}
	// At once: the first answer ends it, no retry (every retry logs "not ready").
	if waited := term.FinishedAt.Sub(term.StartedAt.Time); waited > 5*time.Second {
		t.Errorf("the refusal took %s, want at once", waited)
	}
	if out := logs(t, ctx, ns, "refused", webhook.WaitContainerName, false); strings.Contains(out, " not ready: ") {
		t.Errorf("wait-for-service retried before failing:\n%s", out)
	}
	t.Logf("without the label: exit 1 after %s: %s", term.FinishedAt.Sub(term.StartedAt.Time), term.Message)

	patch := fmt.Sprintf(`{"metadata":{"labels":{%q:"true"}}}`, sharedLabel)
	if _, err := e.cs.CoreV1().Namespaces().Patch(ctx, shared, types.MergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.cs.CoreV1().Pods(ns).Create(ctx, objectPod("allowed", withAlwaysReady(ann)), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	p = waitPod(t, ctx, ns, "allowed", 3*time.Minute, "app runs", containerRunning("app"))
	wantObjectWait(t, p, target)
	out := logs(t, ctx, ns, "allowed", webhook.WaitContainerName, false)
	if !strings.Contains(out, target+" ready after") {
		t.Errorf("wait-for-service of the allowed Pod did not report %s ready:\n%s", target, out)
	}
	t.Logf("with %s=true on %s: the Pod in %s started; wait-for-service:\n%s", sharedLabel, shared, ns, out)
	// The webhook's satisfied check applies the same namespace rule: with
	// the label, an object-only Pod is skipped (the refused one was injected).
	wantSkipped(t, ctx, ns, "allowed-skipped", ann, target)
	assertNoWorkloadRBAC(t, ctx, ns)
}

// A rolling restart of the readiness service while 20 Pods wait on two Jobs:
// "during" is released once the first old replica is terminating (its
// completion falls into the restart), "after" once every old replica is gone,
// so each waiter's answer about it can only come from a new replica: every
// waiter reconnected. All 20 start; none is lost, restarted or replaced.
func testReadinessRestart(t *testing.T) {
	ctx := caseContext(t, 8*time.Minute)
	ns := objectNamespace(t, ctx, "obj-restart")
	const replicas = 20
	targets := map[string]string{"during": "job:" + ns + "/during", "after": "job:" + ns + "/after"}
	for name := range targets {
		j := job(name, "sleep 2")
		j.Spec.Suspend = ptr.To(true)
		if _, err := e.cs.BatchV1().Jobs(ns).Create(ctx, j, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	createWaiter(t, ctx, ns, waiterDeployment("waiters", replicas, map[string]string{webhook.AnnotationJobs: "during, after"}))
	pods := waitingPods(t, ctx, ns, "waiters", replicas, targets["after"]+" not ready: suspended, 0/1 succeeded")
	uids := map[types.UID]bool{}
	for _, p := range pods {
		uids[p.UID] = true
	}
	release := func(name string) (released, completed time.Time) {
		t.Helper()
		done := watchJob(t, ctx, ns, name)
		if _, err := e.cs.BatchV1().Jobs(ns).Patch(ctx, name, types.MergePatchType, []byte(`{"spec":{"suspend":false}}`), metav1.PatchOptions{}); err != nil {
			t.Fatal(err)
		}
		released = time.Now()
		completed = done.wait(t, ctx, 2*time.Minute)
		if done.failed() {
			t.Fatalf("Job %s failed", name)
		}
		return released, completed
	}

	old, err := e.cs.CoreV1().Pods(deploy.Namespace).List(ctx, metav1.ListOptions{LabelSelector: readinessLabelSelector})
	if err != nil || len(old.Items) == 0 {
		t.Fatalf("readiness Pods: %v (%d)", err, len(old.Items))
	}
	restart := time.Now()
	kubectl(t, ctx, "-n", deploy.Namespace, "rollout", "restart", "deployment/"+deploy.ReadinessName)
	if err := retry(ctx, 3*time.Minute, 200*time.Millisecond, func() error {
		for _, p := range old.Items {
			got, err := e.cs.CoreV1().Pods(deploy.Namespace).Get(ctx, p.Name, metav1.GetOptions{})
			if apierrors.IsNotFound(err) || err == nil && got.DeletionTimestamp != nil {
				return nil
			}
		}
		return fmt.Errorf("no old readiness Pod is terminating yet")
	}); err != nil {
		t.Fatal(err)
	}
	duringReleased, duringDone := release("during")
	var rolledOut time.Time
	if err := retry(ctx, 4*time.Minute, 500*time.Millisecond, func() error {
		if !deploymentRolledOut(ctx, deploy.ReadinessName, old.Items) {
			return fmt.Errorf("the readiness service's rollout is not complete")
		}
		rolledOut = time.Now()
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	_, afterDone := release("after")

	var last time.Time
	var answeredDuring, answeredAfter []time.Duration
	retried := 0
	for _, p := range pods {
		got := waitPod(t, ctx, ns, p.Name, 3*time.Minute, "app runs", containerRunning("app"))
		term := initTerminated(got, webhook.WaitContainerName)
		if term == nil || term.ExitCode != 0 {
			t.Errorf("%s: wait-for-service did not exit 0:\n%s", p.Name, podStatus(got))
			continue
		}
		for _, s := range got.Status.InitContainerStatuses {
			if s.RestartCount != 0 {
				t.Errorf("%s: init container %s restarted %d times", p.Name, s.Name, s.RestartCount)
			}
		}
		if s := runningSince(t, got, "app"); s.After(last) {
			last = s
		}
		answeredDuring = append(answeredDuring, readyLogged(t, ctx, got, targets["during"]).Sub(duringDone))
		answeredAfter = append(answeredAfter, readyLogged(t, ctx, got, targets["after"]).Sub(afterDone))
		if strings.Contains(logs(t, ctx, ns, p.Name, webhook.WaitContainerName, false), " not ready: readiness service: ") {
			retried++
		}
	}
	list, err := e.cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/name=waiters"})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range list.Items {
		if !uids[p.UID] {
			t.Errorf("Pod %s was not among the %d waiting Pods: a waiter was replaced", p.Name, replicas)
		}
	}
	// The answers about "after" came from the new replicas: their counters hold them.
	current, err := e.cs.CoreV1().Pods(deploy.Namespace).List(ctx, metav1.ListOptions{LabelSelector: readinessLabelSelector})
	if err != nil {
		t.Fatal(err)
	}
	var readyByNew float64
	for _, p := range current.Items {
		m, err := metrics(ctx, p.Name)
		if err != nil {
			t.Fatalf("metrics of %s: %v", p.Name, err)
		}
		readyByNew += sumMetric(m, "depends_on_readiness_answers_total", `result="ready"`)
	}
	if readyByNew < replicas {
		t.Errorf("the new readiness replicas answered %v ready, want >= %d (every waiter about job after)", readyByNew, replicas)
	}
	state := "during the restart"
	if duringDone.After(rolledOut) {
		state = "after the rollout" // the machine was slow: still a valid run, said as it is
	}
	note := fmt.Sprintf("rolling restart of the readiness service (rollout %s) with %d Pods waiting: job \"during\" released %s into it, completed %s, answered p50 %s max %s; "+
		"job \"after\" released once every old replica was gone, answered p50 %s max %s; all %d started (last app %s after the completion), none replaced or restarted; %d logged a retry; the new replicas answered %.0f ready",
		rolledOut.Sub(restart).Round(100*time.Millisecond), replicas, duringReleased.Sub(restart).Round(100*time.Millisecond), state,
		median(answeredDuring).Round(time.Millisecond), maxDur(answeredDuring).Round(time.Millisecond),
		median(answeredAfter).Round(time.Millisecond), maxDur(answeredAfter).Round(time.Millisecond),
		len(pods), last.Sub(afterDone.Truncate(time.Second)), retried, readyByNew)
	t.Log(note)
	results.Lock()
	results.notes = append(results.notes, note)
	results.Unlock()
	assertNoWorkloadRBAC(t, ctx, ns)
}

// --- helpers of the object cases ---

const readinessLabelSelector = "app.kubernetes.io/name=depends-on,app.kubernetes.io/component=readiness"

// objectNamespace is a case's namespace, once its default ServiceAccount
// exists: the ServiceAccount admission plugin refuses Pods until the
// controller has created it, and a loaded machine can take seconds.
func objectNamespace(t *testing.T, ctx context.Context, prefix string) string {
	t.Helper()
	ns := namespace(t, ctx, prefix, nil)
	if err := retry(ctx, 2*time.Minute, 250*time.Millisecond, func() error {
		_, err := e.cs.CoreV1().ServiceAccounts(ns).Get(ctx, "default", metav1.GetOptions{})
		return err
	}); err != nil {
		t.Fatalf("namespace %s: ServiceAccount default: %v", ns, err)
	}
	return ns
}

// objectPod is tinyPod on the namespace's default ServiceAccount, said
// explicitly: the case is that this account holds no rights at all.
// withAlwaysReady is annotations plus a network wait that is ready at once
// (the API server's Service): a Pod with it is always injected, so its wait
// container's answers about the objects can be checked.
func withAlwaysReady(annotations map[string]string) map[string]string {
	out := maps.Clone(annotations)
	out[webhook.AnnotationServices] = "kubernetes.default:443"
	return out
}

func objectPod(name string, annotations map[string]string) *corev1.Pod {
	p := tinyPod(name, annotations)
	p.Spec.ServiceAccountName = "default"
	return p
}

// waiterDeployment is a Deployment of objectPods with the annotations in its template.
func waiterDeployment(name string, replicas int32, annotations map[string]string) *appsv1.Deployment {
	labels := map[string]string{"app.kubernetes.io/name": name}
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To(replicas),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels, Annotations: annotations},
				Spec:       objectPod("", nil).Spec,
			},
		},
	}
}

func createWaiter(t *testing.T, ctx context.Context, ns string, d *appsv1.Deployment) {
	t.Helper()
	if _, err := e.cs.AppsV1().Deployments(ns).Create(ctx, d, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// job runs script in busybox once (no retries), so a failure fails the Job.
func job(name, script string) *batchv1.Job {
	return &batchv1.Job{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: batchv1.JobSpec{
			BackoffLimit: ptr.To[int32](0),
			Template: corev1.PodTemplateSpec{
				Spec: corev1.PodSpec{
					RestartPolicy:                 corev1.RestartPolicyNever,
					TerminationGracePeriodSeconds: ptr.To[int64](0),
					Containers: []corev1.Container{{
						Name:    "migrate",
						Image:   "busybox:1.28",
						Command: []string{"sh", "-c", script},
					}},
				},
			},
		},
	}
}

// waitingPods waits until n Pods of the app are in wait-for-service and each
// has logged want (what the readiness service answered them).
func waitingPods(t *testing.T, ctx context.Context, ns, app string, n int, want string) []corev1.Pod {
	t.Helper()
	var pods []corev1.Pod
	if err := retry(ctx, 4*time.Minute, 500*time.Millisecond, func() error {
		list, err := e.cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/name=" + app})
		if err != nil {
			return err
		}
		running := 0
		for i := range list.Items {
			if initRunning(&list.Items[i], webhook.WaitContainerName) {
				running++
			}
		}
		if running < n || len(list.Items) != n {
			return fmt.Errorf("%d of %d Pods (%d listed) in wait-for-service", running, n, len(list.Items))
		}
		pods = list.Items
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	for i := range pods {
		waitLogs(t, ctx, ns, pods[i].Name, webhook.WaitContainerName, 2*time.Minute, want)
		inInit(t, getPod(t, ctx, ns, pods[i].Name), webhook.WaitContainerName)
	}
	t.Logf("%d Pods waiting (%q):\n%s", n, want, kubectl(t, ctx, "-n", ns, "get", "pods", "-l", "app.kubernetes.io/name="+app))
	return pods
}

// wantObjectWait checks what the webhook gave a Pod for an object target: the
// target and the readiness flags in the wait container's args, the projected
// token mounted in the wait container only. The Pod's API token is mounted in
// the wait container exactly as in the app containers: depends-on adds none,
// but the API server's ServiceAccount plugin, which runs again after the
// webhooks, mounts it into every container, and a reinvocation keeps what
// others added (issue 11); automountServiceAccountToken: false removes it
// from all.
func wantObjectWait(t *testing.T, p *corev1.Pod, target string) {
	t.Helper()
	wantInit(t, p, webhook.WaitContainerName, e.waitImg, target,
		"--readiness-url=https://"+deploy.ReadinessName+"."+deploy.Namespace+".svc:443",
		"--readiness-token-file="+readinessTokenDir+"/token")
	if p.Spec.ServiceAccountName != "default" {
		t.Errorf("%s runs on ServiceAccount %q, want default", p.Name, p.Spec.ServiceAccountName)
	}
	var tokenVolume *corev1.Volume
	for i := range p.Spec.Volumes {
		if p.Spec.Volumes[i].Name == webhook.ReadinessTokenVolumeName {
			tokenVolume = &p.Spec.Volumes[i]
		}
	}
	if tokenVolume == nil || tokenVolume.Projected == nil || len(tokenVolume.Projected.Sources) != 1 ||
		tokenVolume.Projected.Sources[0].ServiceAccountToken == nil ||
		tokenVolume.Projected.Sources[0].ServiceAccountToken.Audience != webhook.ReadinessAudience {
		t.Errorf("%s: no projected token volume %s with audience %s: %+v", p.Name, webhook.ReadinessTokenVolumeName, webhook.ReadinessAudience, tokenVolume)
	}
	apiToken := func(c *corev1.Container) string {
		for _, m := range c.VolumeMounts {
			if m.MountPath == apiTokenDir {
				return m.Name
			}
		}
		return ""
	}
	all := append(append([]corev1.Container{}, p.Spec.InitContainers...), p.Spec.Containers...)
	var waitToken string
	for i := range p.Spec.InitContainers {
		if p.Spec.InitContainers[i].Name == webhook.WaitContainerName {
			waitToken = apiToken(&p.Spec.InitContainers[i])
		}
	}
	for _, c := range all {
		for _, m := range c.VolumeMounts {
			if c.Name != webhook.WaitContainerName && m.Name == webhook.ReadinessTokenVolumeName {
				t.Errorf("%s: container %s mounts the readiness token", p.Name, c.Name)
			}
		}
		if got := apiToken(&c); c.Name != webhook.WaitContainerName && got != waitToken {
			t.Errorf("%s: the API token mounted in the wait container is %q, in container %s %q; want the same (the ServiceAccount plugin's, or none)",
				p.Name, waitToken, c.Name, got)
		}
		if c.Name == webhook.WaitContainerName {
			if sc := c.SecurityContext; sc == nil || ptr.Deref(sc.RunAsUser, 0) != waitUID {
				t.Errorf("%s: the wait container does not run as uid %d", p.Name, waitUID)
			}
		}
	}
}

// assertNoWorkloadRBAC: the namespace has no Role or RoleBinding, every Pod
// in it (the injected ones at least one) runs on the default ServiceAccount,
// and that account may not read Jobs, Deployments or EndpointSlices
// (SubjectAccessReview: what the API server's authorizer decides).
func assertNoWorkloadRBAC(t *testing.T, ctx context.Context, ns string) {
	t.Helper()
	roles, err := e.cs.RbacV1().Roles(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	bindings, err := e.cs.RbacV1().RoleBindings(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(roles.Items) != 0 || len(bindings.Items) != 0 {
		t.Errorf("namespace %s has %d Roles and %d RoleBindings, want none", ns, len(roles.Items), len(bindings.Items))
	}
	pods, err := e.cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	injected := 0
	for _, p := range pods.Items {
		if p.Spec.ServiceAccountName != "default" {
			t.Errorf("Pod %s runs on ServiceAccount %q, want default", p.Name, p.Spec.ServiceAccountName)
		}
		if _, ok := p.Annotations[webhook.AnnotationInjected]; ok {
			injected++
		}
	}
	if injected == 0 {
		t.Errorf("namespace %s has no injected Pod", ns)
	}
	sa := "system:serviceaccount:" + ns + ":default"
	for _, ra := range []authorizationv1.ResourceAttributes{
		{Namespace: ns, Verb: "get", Group: "batch", Resource: "jobs"},
		{Namespace: ns, Verb: "watch", Group: "batch", Resource: "jobs"},
		{Namespace: ns, Verb: "list", Group: "apps", Resource: "deployments"},
		{Namespace: ns, Verb: "list", Group: "discovery.k8s.io", Resource: "endpointslices"},
	} {
		sar, err := e.cs.AuthorizationV1().SubjectAccessReviews().Create(ctx, &authorizationv1.SubjectAccessReview{
			Spec: authorizationv1.SubjectAccessReviewSpec{
				User:               sa,
				Groups:             []string{"system:serviceaccounts", "system:serviceaccounts:" + ns, "system:authenticated"},
				ResourceAttributes: &ra,
			},
		}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if sar.Status.Allowed {
			t.Errorf("%s may %s %s.%s in %s: %s", sa, ra.Verb, ra.Resource, ra.Group, ns, sar.Status.Reason)
		}
	}
}

// waitEvent waits for an Event on the Pod with the reason and a message
// starting with prefix, through the Events API (what kubectl describe reads).
func waitEvent(t *testing.T, ctx context.Context, ns, pod, reason, prefix string) corev1.Event {
	t.Helper()
	var found corev1.Event
	var seen []string
	if err := retry(ctx, time.Minute, 250*time.Millisecond, func() error {
		evs, err := events(ctx, ns, "Pod", pod)
		if err != nil {
			return err
		}
		seen = seen[:0]
		for _, ev := range evs {
			if ev.Reason == reason && strings.HasPrefix(ev.Message, prefix) {
				found = ev
				return nil
			}
			seen = append(seen, ev.Reason+": "+ev.Message)
		}
		return fmt.Errorf("no %s Event %q", reason, prefix)
	}); err != nil {
		t.Fatalf("Pod %s/%s: %v; its Events:\n%s", ns, pod, err, strings.Join(seen, "\n"))
	}
	return found
}

func initTerminated(p *corev1.Pod, name string) *corev1.ContainerStateTerminated {
	for _, s := range p.Status.InitContainerStatuses {
		if s.Name == name {
			return s.State.Terminated
		}
	}
	return nil
}

func runningSince(t *testing.T, p *corev1.Pod, name string) time.Time {
	t.Helper()
	for _, s := range p.Status.ContainerStatuses {
		if s.Name == name && s.State.Running != nil {
			return s.State.Running.StartedAt.Time
		}
	}
	t.Fatalf("%s: container %s is not running", p.Name, name)
	return time.Time{}
}

// deploymentRolledOut: the Deployment in depends-on-system has every replica
// updated and available, and none of the old Pods exists anymore.
func deploymentRolledOut(ctx context.Context, name string, old []corev1.Pod) bool {
	d, err := e.cs.AppsV1().Deployments(deploy.Namespace).Get(ctx, name, metav1.GetOptions{})
	if err != nil || d.Status.ObservedGeneration < d.Generation {
		return false
	}
	want := ptr.Deref(d.Spec.Replicas, 1)
	if d.Status.UpdatedReplicas != want || d.Status.AvailableReplicas != want || d.Status.Replicas != want {
		return false
	}
	for _, p := range old {
		if _, err := e.cs.CoreV1().Pods(deploy.Namespace).Get(ctx, p.Name, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			return false
		}
	}
	return true
}

// firstSeen records the instant a watch first delivered an object meeting a
// condition (the test's view of "the dependency became ready", with the
// readiness service's own rules), and whether it was a failure.
type firstSeen struct {
	what   string
	mu     sync.Mutex
	at     time.Time
	isFail bool
	err    error
	done   chan struct{}
}

// watchFirst starts the watch before the object changes (call it before
// creating or releasing the object). cond returns (met, failed).
func watchFirst[T any](t *testing.T, ctx context.Context, what string, start func() (watch.Interface, error), cond func(T) (bool, bool)) *firstSeen {
	t.Helper()
	w, err := start()
	if err != nil {
		t.Fatalf("watch for %s: %v", what, err)
	}
	t.Cleanup(w.Stop)
	f := &firstSeen{what: what, done: make(chan struct{})}
	go func() {
		for ev := range w.ResultChan() {
			now := time.Now()
			if ev.Type == watch.Error {
				f.mu.Lock()
				f.err = apierrors.FromObject(ev.Object)
				f.mu.Unlock()
				close(f.done)
				return
			}
			obj, ok := ev.Object.(T)
			if !ok || ev.Type == watch.Deleted {
				continue
			}
			if met, failed := cond(obj); met || failed {
				f.mu.Lock()
				f.at, f.isFail = now, failed
				f.mu.Unlock()
				close(f.done)
				return
			}
		}
	}()
	return f
}

// watchJob watches the Job for Complete=True or Failed=True.
func watchJob(t *testing.T, ctx context.Context, ns, name string) *firstSeen {
	return watchFirst(t, ctx, "job/"+name+" finished",
		func() (watch.Interface, error) {
			return e.cs.BatchV1().Jobs(ns).Watch(ctx, metav1.ListOptions{FieldSelector: "metadata.name=" + name})
		},
		func(j *batchv1.Job) (bool, bool) {
			s := readiness.EvaluateJob(j).State
			return s == readiness.StateReady, s == readiness.StateFailed
		})
}

func (f *firstSeen) seen() bool {
	select {
	case <-f.done:
		return true
	default:
		return false
	}
}

func (f *firstSeen) failed() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.isFail
}

func (f *firstSeen) wait(t *testing.T, ctx context.Context, timeout time.Duration) time.Time {
	t.Helper()
	select {
	case <-f.done:
	case <-time.After(timeout):
		t.Fatalf("%s: not seen within %s", f.what, timeout)
	case <-ctx.Done():
		t.Fatalf("%s: %v", f.what, ctx.Err())
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		t.Fatalf("watch for %s: %v", f.what, f.err)
	}
	return f.at
}

// objectWaitSample: "dependency ready -> wait container exits" for one Pod.
type objectWaitSample struct {
	name string
	// answered: the instant the test's watch saw the object ready -> the
	// runtime's timestamp of wait-for-service's "<target> ready after" line
	// (the readiness service's answer, ms resolution).
	answered time.Duration
	// exited: the ready time the API records (Job completionTime, the later
	// of Deployment Available and rollout complete, the backend Pod's Ready
	// transition) -> the wait container's terminated.finishedAt. Both are
	// whole seconds, so this reads to within 1 s either way.
	exited time.Duration
}

var objectWaits struct {
	sync.Mutex
	samples []objectWaitSample
}

func recordObjectWait(t *testing.T, ctx context.Context, name string, p *corev1.Pod, target string, seen, apiReady time.Time) {
	t.Helper()
	term := initTerminated(p, webhook.WaitContainerName)
	if term == nil || term.ExitCode != 0 {
		t.Fatalf("%s: wait-for-service has not exited 0:\n%s", p.Name, podStatus(p))
	}
	answeredAt := readyLogged(t, ctx, p, target)
	s := objectWaitSample{name: name, answered: answeredAt.Sub(seen), exited: term.FinishedAt.Sub(apiReady)}
	t.Logf("%s: ready seen at %s, answered %s later; API ready time %s -> wait container finishedAt %s: %s",
		name, seen.UTC().Format("15:04:05.000"), s.answered.Round(time.Millisecond),
		apiReady.UTC().Format("15:04:05"), term.FinishedAt.UTC().Format("15:04:05"), s.exited)
	objectWaits.Lock()
	objectWaits.samples = append(objectWaits.samples, s)
	objectWaits.Unlock()
}

// readyLogged is the container runtime's timestamp of wait-for-service's
// "<target> ready after" line.
func readyLogged(t *testing.T, ctx context.Context, p *corev1.Pod, target string) time.Time {
	t.Helper()
	for _, line := range strings.Split(logs(t, ctx, p.Namespace, p.Name, webhook.WaitContainerName, true), "\n") {
		ts, msg, _ := strings.Cut(line, " ")
		if _, rest, ok := strings.Cut(msg, " "); ok && strings.HasPrefix(rest, target+" ready after ") {
			if at, err := time.Parse(time.RFC3339Nano, ts); err == nil {
				return at
			}
		}
	}
	t.Fatalf("%s: wait-for-service logged no %q line", p.Name, target+" ready after")
	return time.Time{}
}

// printObjectWaits adds the object waits' figures to the summary.
func printObjectWaits(b *strings.Builder) {
	objectWaits.Lock()
	defer objectWaits.Unlock()
	n := len(objectWaits.samples)
	if n == 0 {
		return
	}
	fmt.Fprintf(b, "object dependency ready -> wait container exits (%d Pods):\n", n)
	fmt.Fprintf(b, "  %-30s %20s %22s\n", "case", "answered (seen->log)", "exited (API->finished)")
	var answered, exited []time.Duration
	for _, s := range objectWaits.samples {
		fmt.Fprintf(b, "  %-30s %20s %22s\n", s.name, s.answered.Round(time.Millisecond), s.exited)
		answered = append(answered, s.answered)
		exited = append(exited, s.exited)
	}
	fmt.Fprintf(b, "  %-30s %20s %22s\n", "p50", median(answered).Round(time.Millisecond), median(exited))
	fmt.Fprintf(b, "  %-30s %20s %22s\n", "max", maxDur(answered).Round(time.Millisecond), maxDur(exited))
	fmt.Fprintf(b, "  (answered: the test's watch saw the object ready -> wait-for-service logged it ready, i.e. the readiness service's answer;\n")
	fmt.Fprintf(b, "   both watches are served by the same API server, so it can read a few ms early;\n")
	fmt.Fprintf(b, "   exited: completionTime / Available / Ready transition -> terminated.finishedAt, both whole seconds)\n")
}
