//go:build e2e

package e2e

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/utils/ptr"

	"github.com/depends-on/depends-on/test/testutil"
	"github.com/depends-on/depends-on/webhook"
)

// testSatisfied (issue 14): a Deployment whose Pods depend on a completed
// Job scales from 1 to 10 replicas; the new Pods carry no depends-on init
// container and their record says why. Next to it, a Deployment without
// annotations scales at the same time; the case prints the Pod creation ->
// app's first log line p50 of both.
func testSatisfied(t *testing.T) {
	ctx := caseContext(t, 6*time.Minute)
	ns := namespace(t, ctx, "satisfied", nil)
	const replicas = 10

	job := &batchv1.Job{
		ObjectMeta: metav1.ObjectMeta{Name: "migrate"},
		Spec: batchv1.JobSpec{BackoffLimit: ptr.To[int32](0), Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{
			RestartPolicy:                 corev1.RestartPolicyNever,
			TerminationGracePeriodSeconds: ptr.To[int64](0),
			Containers:                    []corev1.Container{{Name: "migrate", Image: "busybox:1.28", Command: []string{"sh", "-c", "echo migrated"}}},
		}}},
	}
	if _, err := e.cs.BatchV1().Jobs(ns).Create(ctx, job, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := retry(ctx, 3*time.Minute, 500*time.Millisecond, func() error {
		j, err := e.cs.BatchV1().Jobs(ns).Get(ctx, "migrate", metav1.GetOptions{})
		if err != nil {
			return err
		}
		for _, c := range j.Status.Conditions {
			if c.Type == batchv1.JobComplete && c.Status == corev1.ConditionTrue {
				return nil
			}
		}
		return fmt.Errorf("job migrate not complete: %+v", j.Status)
	}); err != nil {
		t.Fatal(err)
	}

	deployment := func(name string, annotations map[string]string) *appsv1.Deployment {
		labels := map[string]string{"app.kubernetes.io/name": name}
		return &appsv1.Deployment{
			ObjectMeta: metav1.ObjectMeta{Name: name},
			Spec: appsv1.DeploymentSpec{
				Replicas: ptr.To[int32](1),
				Selector: &metav1.LabelSelector{MatchLabels: labels},
				Template: corev1.PodTemplateSpec{
					ObjectMeta: metav1.ObjectMeta{Labels: labels, Annotations: annotations},
					Spec:       tinyPod("", nil).Spec,
				},
			},
		}
	}
	for _, d := range []*appsv1.Deployment{deployment("app", map[string]string{webhook.AnnotationJobs: "migrate"}), deployment("plain", nil)} {
		if _, err := e.cs.AppsV1().Deployments(ns).Create(ctx, d, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	waitAvailable(t, ctx, ns, "app", 1)
	waitAvailable(t, ctx, ns, "plain", 1)
	first := podsOf(t, ctx, ns, "app")
	if len(first) != 1 {
		t.Fatalf("%d Pods of app before the scale-up", len(first))
	}
	t.Logf("first replica of app (created before the readiness service watched the Job): init containers %v, record %s",
		names(first[0].Spec.InitContainers), first[0].Annotations[webhook.AnnotationInjected])

	// Watch creations: the local instant each Pod is first seen (the API's
	// creationTimestamp has 1 s resolution).
	seen := map[string]time.Time{}
	var mu sync.Mutex
	w, err := e.cs.CoreV1().Pods(ns).Watch(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	go func() {
		for ev := range w.ResultChan() {
			if p, ok := ev.Object.(*corev1.Pod); ok && ev.Type == watch.Added {
				mu.Lock()
				if _, ok := seen[p.Name]; !ok {
					seen[p.Name] = time.Now()
				}
				mu.Unlock()
			}
		}
	}()
	time.Sleep(time.Second) // the watch's initial ADDED events are the old Pods
	mu.Lock()
	old := map[string]bool{}
	for n := range seen {
		old[n] = true
	}
	mu.Unlock()

	warmSkip(t, ctx, ns, map[string]string{webhook.AnnotationJobs: "migrate"})

	// One after the other, so that each scale-up has the node to itself.
	scale := []byte(fmt.Sprintf(`{"spec":{"replicas":%d}}`, replicas))
	for _, name := range []string{"plain", "app"} {
		if _, err := e.cs.AppsV1().Deployments(ns).Patch(ctx, name, types.MergePatchType, scale, metav1.PatchOptions{}); err != nil {
			t.Fatal(err)
		}
		waitAvailable(t, ctx, ns, name, replicas)
	}

	wantRecord := testutil.WithoutHashes(`{"version":2,"initContainers":[],"satisfied":{"checked":["job:` + ns + `/migrate"]}}`)
	delays := map[string][]time.Duration{}
	var example string
	for _, name := range []string{"app", "plain"} {
		for _, p := range podsOf(t, ctx, ns, name) {
			if old[p.Name] {
				continue
			}
			if name == "app" {
				if len(p.Spec.InitContainers) != 0 || testutil.WithoutHashes(p.Annotations[webhook.AnnotationInjected]) != wantRecord {
					t.Errorf("%s: init containers %v, record %q; want none and %s", p.Name, names(p.Spec.InitContainers), p.Annotations[webhook.AnnotationInjected], wantRecord)
				}
				example = p.Name
			}
			mu.Lock()
			created, ok := seen[p.Name]
			mu.Unlock()
			if !ok {
				t.Fatalf("%s: creation not seen by the watch", p.Name)
			}
			delays[name] = append(delays[name], firstLogAt(t, ctx, ns, p.Name, "app").Sub(created))
		}
		if len(delays[name]) != replicas-1 {
			t.Fatalf("%s: %d new Pods, want %d", name, len(delays[name]), replicas-1)
		}
	}
	if example != "" {
		out := kubectl(t, ctx, "-n", ns, "get", "pod", example, "-o", "yaml")
		t.Logf("kubectl get pod %s -o yaml (head):\n%s", example, head(out, 40))
	}
	app, plain := median(delays["app"]), median(delays["plain"])
	t.Logf("create -> app's first log line, %d new Pods each: app (depends-on.dev/jobs, satisfied) p50 %s max %s; plain (no annotations) p50 %s max %s; difference %s",
		replicas-1, app.Round(time.Millisecond), maxDur(delays["app"]).Round(time.Millisecond),
		plain.Round(time.Millisecond), maxDur(delays["plain"]).Round(time.Millisecond), (app - plain).Round(time.Millisecond))
	now := time.Now()
	recordPhase("satisfied: create -> app log p50, jobs: migrate (skipped)", now.Add(-app))
	recordPhase("satisfied: create -> app log p50, no annotations", now.Add(-plain))
}

// waitAvailable waits until Deployment name has n available replicas.
func waitAvailable(t *testing.T, ctx context.Context, ns, name string, n int32) {
	t.Helper()
	if err := retry(ctx, 4*time.Minute, 250*time.Millisecond, func() error {
		d, err := e.cs.AppsV1().Deployments(ns).Get(ctx, name, metav1.GetOptions{})
		if err == nil && (d.Status.AvailableReplicas != n || d.Status.Replicas != n) {
			err = fmt.Errorf("deployment %s: %d of %d replicas available", name, d.Status.AvailableReplicas, n)
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
}

func podsOf(t *testing.T, ctx context.Context, ns, name string) []corev1.Pod {
	t.Helper()
	list, err := e.cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/name=" + name})
	if err != nil {
		t.Fatal(err)
	}
	var out []corev1.Pod
	for _, p := range list.Items {
		if p.DeletionTimestamp == nil {
			out = append(out, p)
		}
	}
	return out
}

// firstLogAt is the runtime's timestamp of container c's first log line.
func firstLogAt(t *testing.T, ctx context.Context, ns, pod, c string) time.Time {
	t.Helper()
	var at time.Time
	if err := retry(ctx, 30*time.Second, 250*time.Millisecond, func() error {
		ts, _, ok := strings.Cut(logs(t, ctx, ns, pod, c, true), " ")
		if !ok {
			return errors.New("no log line yet")
		}
		var err error
		at, err = time.Parse(time.RFC3339Nano, ts)
		return err
	}); err != nil {
		t.Fatalf("%s: first log line of %s: %v", pod, c, err)
	}
	return at
}

func names(cs []corev1.Container) []string {
	out := make([]string, len(cs))
	for i, c := range cs {
		out[i] = c.Name
	}
	return out
}

func head(s string, n int) string {
	lines := strings.Split(s, "\n")
	return strings.Join(lines[:min(n, len(lines))], "\n")
}

// warmSkip returns once server-side dry runs of a Pod with annotations in ns
// are skipped (no init container) six times in a row. Each webhook replica
// (and readiness replica) learns about a target on its first ask, which may
// miss the admission deadline on a loaded node: the Pod is then injected, as
// it must be; the dry runs make the cases' answers deterministic.
func warmSkip(t *testing.T, ctx context.Context, ns string, annotations map[string]string) {
	t.Helper()
	skipped := 0
	if err := retry(ctx, 2*time.Minute, 200*time.Millisecond, func() error {
		p := objectPod("warm", annotations)
		got, err := e.cs.CoreV1().Pods(ns).Create(ctx, p, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		switch {
		case err != nil:
			return err
		case len(got.Spec.InitContainers) == 0:
			skipped++
		default:
			skipped = 0
		}
		if skipped < 6 {
			return fmt.Errorf("%d dry runs skipped in a row", skipped)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}

// wantSkipped creates a Pod with annotations in ns, once warmSkip says the
// webhook skips it, and checks that it has no init container, that its
// record names targets as checked and satisfied, and that its app runs.
func wantSkipped(t *testing.T, ctx context.Context, ns, name string, annotations map[string]string, targets ...string) {
	t.Helper()
	warmSkip(t, ctx, ns, annotations)
	if _, err := e.cs.CoreV1().Pods(ns).Create(ctx, objectPod(name, annotations), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	p := waitPod(t, ctx, ns, name, 3*time.Minute, "app runs", containerRunning("app"))
	want := testutil.WithoutHashes(`{"version":2,"initContainers":[],"satisfied":{"checked":["` + strings.Join(targets, `","`) + `"]}}`)
	if got := p.Annotations[webhook.AnnotationInjected]; len(p.Spec.InitContainers) != 0 || testutil.WithoutHashes(got) != want {
		t.Errorf("%s: init containers %v, record %s; want none and %s", name, names(p.Spec.InitContainers), got, want)
	}
}
