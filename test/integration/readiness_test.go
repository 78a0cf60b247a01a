package integration

import (
	"encoding/base64"
	"os"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/depends-on/depends-on/deploy"
	"github.com/depends-on/depends-on/test/internal/readinessenv"
	"github.com/depends-on/depends-on/webhook/readiness"
)

// readinessServer starts the real readiness binary with the RBAC of
// deploy/readiness; it is stopped when t ends.
func readinessServer(t *testing.T) (*readinessenv.Process, *readinessenv.Client, kubernetes.Interface) {
	t.Helper()
	dir := t.TempDir()
	bin, err := readinessenv.Build(suite.repoRoot, dir, raceEnabled)
	if err != nil {
		t.Fatal(err)
	}
	kubeconfig, err := readinessenv.Install(testCtx(t), suite.cfg, suite.client, dir)
	if err != nil {
		t.Fatal(err)
	}
	p, err := readinessenv.NewProcess(bin, kubeconfig, dir, suite.ca)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := p.Stop(); err != nil {
			t.Errorf("readiness: %v", err)
		}
		log, _ := os.ReadFile(p.LogPath)
		if strings.Contains(string(log), "WARNING: DATA RACE") {
			t.Errorf("the readiness process reported a data race:\n%s", log)
		}
		if t.Failed() {
			t.Logf("readiness log tail:\n%s", p.LogTail(60))
		}
	})
	cs, err := kubernetes.NewForConfig(suite.cfg)
	if err != nil {
		t.Fatal(err)
	}
	return p, readinessenv.NewClient(p.URL(), suite.ca.CertPEM, 64), cs
}

func mustWait(t *testing.T, c *readinessenv.Client, token, target, seen string, wait time.Duration) readinessenv.Reply {
	t.Helper()
	r, err := c.Wait(testCtx(t), token, target, seen, wait)
	if err != nil {
		t.Fatalf("GET /v1/wait %s: %v", target, err)
	}
	return r
}

func expectAnswer(t *testing.T, r readinessenv.Reply, state readiness.State, reason string) {
	t.Helper()
	if r.Code != 200 || r.Answer.State != state || (reason != "" && r.Answer.Reason != reason) {
		t.Fatalf("got %d %+v %q, want 200 %s %q", r.Code, r.Answer, r.Error, state, reason)
	}
}

// awaitChange long-polls target from seen until the reason changes or the
// state is final, and returns the answer.
func awaitChange(t *testing.T, c *readinessenv.Client, token, target, seen string) readinessenv.Reply {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		r := mustWait(t, c, token, target, seen, 10*time.Second)
		if r.Code != 200 || r.Answer.State != readiness.StateWaiting || r.Answer.Reason != seen || time.Now().After(deadline) {
			return r
		}
	}
}

func TestReadinessAuthentication(t *testing.T) {
	_, c, cs := readinessServer(t)
	ctx := testCtx(t)
	app := newNamespace(t, nil)
	shared := newNamespace(t, map[string]string{readiness.LabelShared: "true"})
	private := newNamespace(t, nil)
	_, token, err := readinessenv.PodToken(ctx, cs, app, "default", "web")
	if err != nil {
		t.Fatal(err)
	}
	_, otherAud, err := readinessenv.PodToken(ctx, cs, app, "default", "web", "https://kubernetes.default.svc")
	if err != nil {
		t.Fatal(err)
	}
	_, doomed, err := readinessenv.PodToken(ctx, cs, app, "default", "doomed")
	if err != nil {
		t.Fatal(err)
	}
	// A token of the same shape whose signature the API server never made.
	parts := strings.Split(token, ".")
	forged := parts[0] + "." + parts[1] + "." + base64.RawURLEncoding.EncodeToString([]byte(strings.Repeat("x", 256)))
	// A token bound to a Pod that is gone is no longer valid (never used before, so not cached).
	if err := cs.CoreV1().Pods(app).Delete(ctx, "doomed", metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](0)}); err != nil {
		t.Fatal(err)
	}
	waitGone(t, cs, app, "doomed")

	job := "job:" + app + "/migrate"
	for _, tc := range []struct {
		name, token, target string
		code                int
		err                 string
	}{
		{"valid token, own namespace", token, job, 200, ""},
		{"no token", "", job, 401, "no bearer token"},
		{"forged token", forged, job, 401, "not authenticated"},
		{"wrong audience", otherAud, job, 401, "not authenticated"},
		{"token of a deleted Pod", doomed, job, 401, "not authenticated"},
		{"garbage token", "not-a-jwt", job, 401, "not authenticated"},
		{"other namespace, not shared", token, "job:" + private + "/migrate", 403,
			`namespace "` + private + `" does not share its objects with namespace "` + app + `": label it depends-on.dev/shared=true`},
		{"other namespace, shared", token, "deployment:" + shared + "/api", 200, ""},
		{"bad target", token, "job:" + app, 400, "want job:NAMESPACE/NAME"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := mustWait(t, c, tc.token, tc.target, "", 0)
			if r.Code != tc.code || !strings.Contains(r.Error, tc.err) {
				t.Errorf("got %d %q %+v, want %d containing %q", r.Code, r.Error, r.Answer, tc.code, tc.err)
			}
			if tc.code == 200 && r.Answer != (readiness.Answer{Target: tc.target, State: readiness.StateWaiting, Reason: readiness.ReasonNotFound}) {
				t.Errorf("answer %+v, want waiting, not found", r.Answer)
			}
		})
	}
	// Labelling the namespace later opens it (namespaces are watched).
	ns := &corev1.Namespace{}
	if err := suite.client.Get(ctx, client.ObjectKey{Name: private}, ns); err != nil {
		t.Fatal(err)
	}
	ns.Labels[readiness.LabelShared] = "true"
	if err := suite.client.Update(ctx, ns); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		r := mustWait(t, c, token, "job:"+private+"/migrate", "", 0)
		if r.Code == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("namespace labelled shared, still %d %q", r.Code, r.Error)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func TestReadinessJobs(t *testing.T) {
	p, c, cs := readinessServer(t)
	ctx := testCtx(t)
	ns := newNamespace(t, nil)
	_, token, err := readinessenv.PodToken(ctx, cs, ns, "default", "web")
	if err != nil {
		t.Fatal(err)
	}
	jobs := cs.BatchV1().Jobs(ns)

	t.Run("completes", func(t *testing.T) {
		target := "job:" + ns + "/migrate"
		expectAnswer(t, mustWait(t, c, token, target, "", 0), readiness.StateWaiting, "not found")
		j := createJob(t, cs, ns, "migrate")
		r := awaitChange(t, c, token, target, "not found")
		expectAnswer(t, r, readiness.StateWaiting, "0/1 succeeded")
		// A held waiter is woken by the status update.
		done := make(chan readinessenv.Reply, 1)
		go func() { r, _ := c.Wait(ctx, token, target, "0/1 succeeded", 30*time.Second); done <- r }()
		time.Sleep(300 * time.Millisecond)
		completeJob(t, cs, j)
		select {
		case r := <-done:
			expectAnswer(t, r, readiness.StateReady, "1/1 succeeded")
		case <-time.After(20 * time.Second):
			t.Fatal("held waiter not answered after the Job completed")
		}
		// An Event on the waiting Pod names the Job and why it waited.
		expectEvent(t, cs, ns, "web", "Waiting for job/migrate: 0/1 succeeded")

		// TTL: the Job is deleted after completing; a new waiter is still ready.
		if err := jobs.Delete(ctx, "migrate", metav1.DeleteOptions{PropagationPolicy: ptr.To(metav1.DeletePropagationBackground)}); err != nil {
			t.Fatal(err)
		}
		waitJobGone(t, cs, ns, "migrate")
		_, token2, err := readinessenv.PodToken(ctx, cs, ns, "default", "scaled-up")
		if err != nil {
			t.Fatal(err)
		}
		expectAnswer(t, mustWait(t, c, token2, target, "", 0), readiness.StateReady, readiness.ReasonDeletedSince)
		// Persisted in the ConfigMap ...
		waitUntil(t, 10*time.Second, func() bool {
			cm, err := cs.CoreV1().ConfigMaps(deploy.Namespace).Get(ctx, deploy.ReadinessStateConfig, metav1.GetOptions{})
			return err == nil && strings.Contains(cm.Data[ns+".migrate"], string(j.UID))
		})
		// ... so a restarted service remembers it.
		if err := p.Stop(); err != nil {
			t.Fatal(err)
		}
		if err := p.Start(); err != nil {
			t.Fatal(err)
		}
		expectAnswer(t, mustWait(t, c, token2, target, "", 0), readiness.StateReady, readiness.ReasonDeletedSince)
		// A Job it never saw complete and that is absent waits.
		expectAnswer(t, mustWait(t, c, token2, "job:"+ns+"/never-seen", "", 0), readiness.StateWaiting, "not found")
	})

	t.Run("fails", func(t *testing.T) {
		target := "job:" + ns + "/broken"
		j := createJob(t, cs, ns, "broken")
		expectAnswer(t, mustWait(t, c, token, target, "", 0), readiness.StateWaiting, "0/1 succeeded")
		done := make(chan readinessenv.Reply, 1)
		go func() { r, _ := c.Wait(ctx, token, target, "0/1 succeeded", 30*time.Second); done <- r }()
		time.Sleep(300 * time.Millisecond)
		failJob(t, cs, j)
		select {
		case r := <-done:
			expectAnswer(t, r, readiness.StateFailed, "BackoffLimitExceeded: Job has reached the specified backoff limit")
		case <-time.After(20 * time.Second):
			t.Fatal("held waiter not answered after the Job failed")
		}
		expectEvent(t, cs, ns, "web", "Dependency job/broken failed: BackoffLimitExceeded")
	})
}

func TestReadinessWorkloadsAndEndpoints(t *testing.T) {
	_, c, cs := readinessServer(t)
	ctx := testCtx(t)
	ns := newNamespace(t, nil)
	_, token, err := readinessenv.PodToken(ctx, cs, ns, "default", "web")
	if err != nil {
		t.Fatal(err)
	}
	labels := map[string]string{"app": "x"}
	tmpl := corev1.PodTemplateSpec{
		ObjectMeta: metav1.ObjectMeta{Labels: labels},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "busybox:1.36"}}},
	}
	sel := &metav1.LabelSelector{MatchLabels: labels}

	t.Run("deployment", func(t *testing.T) {
		d, err := cs.AppsV1().Deployments(ns).Create(ctx, &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "api"},
			Spec: appsv1.DeploymentSpec{Replicas: ptr.To[int32](2), Selector: sel, Template: tmpl}}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		target := "deployment:" + ns + "/api"
		r := mustWait(t, c, token, target, "", 0)
		expectAnswer(t, r, readiness.StateWaiting, "")
		d.Status = appsv1.DeploymentStatus{ObservedGeneration: d.Generation, Replicas: 2, UpdatedReplicas: 2, ReadyReplicas: 1, AvailableReplicas: 1}
		if d, err = cs.AppsV1().Deployments(ns).UpdateStatus(ctx, d, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		expectAnswer(t, awaitChange(t, c, token, target, r.Answer.Reason), readiness.StateWaiting, "1/2 available")
		d.Status.ReadyReplicas, d.Status.AvailableReplicas = 2, 2
		d.Status.Conditions = []appsv1.DeploymentCondition{{Type: appsv1.DeploymentAvailable, Status: corev1.ConditionTrue, Reason: "MinimumReplicasAvailable",
			LastUpdateTime: metav1.Now(), LastTransitionTime: metav1.Now()}}
		if _, err = cs.AppsV1().Deployments(ns).UpdateStatus(ctx, d, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		expectAnswer(t, awaitChange(t, c, token, target, "1/2 available"), readiness.StateReady, "2/2 available")
	})

	t.Run("statefulset", func(t *testing.T) {
		s, err := cs.AppsV1().StatefulSets(ns).Create(ctx, &appsv1.StatefulSet{ObjectMeta: metav1.ObjectMeta{Name: "db"},
			Spec: appsv1.StatefulSetSpec{Replicas: ptr.To[int32](2), Selector: sel, Template: tmpl, ServiceName: "db"}}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		target := "statefulset:" + ns + "/db"
		r := mustWait(t, c, token, target, "", 0)
		expectAnswer(t, r, readiness.StateWaiting, "")
		s.Status = appsv1.StatefulSetStatus{ObservedGeneration: s.Generation, Replicas: 2, ReadyReplicas: 2, AvailableReplicas: 2,
			CurrentReplicas: 2, UpdatedReplicas: 2, CurrentRevision: "db-1", UpdateRevision: "db-1"}
		if _, err = cs.AppsV1().StatefulSets(ns).UpdateStatus(ctx, s, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		expectAnswer(t, awaitChange(t, c, token, target, r.Answer.Reason), readiness.StateReady, "2/2 ready")
	})

	t.Run("daemonset", func(t *testing.T) {
		d, err := cs.AppsV1().DaemonSets(ns).Create(ctx, &appsv1.DaemonSet{ObjectMeta: metav1.ObjectMeta{Name: "agent"},
			Spec: appsv1.DaemonSetSpec{Selector: sel, Template: tmpl}}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		target := "daemonset:" + ns + "/agent"
		r := mustWait(t, c, token, target, "", 0)
		expectAnswer(t, r, readiness.StateWaiting, "0/0 ready, generation not observed yet")
		d.Status = appsv1.DaemonSetStatus{ObservedGeneration: d.Generation, DesiredNumberScheduled: 3, CurrentNumberScheduled: 3,
			NumberReady: 3, UpdatedNumberScheduled: 3, NumberAvailable: 3}
		if _, err = cs.AppsV1().DaemonSets(ns).UpdateStatus(ctx, d, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		expectAnswer(t, awaitChange(t, c, token, target, r.Answer.Reason), readiness.StateReady, "3/3 ready")
	})

	t.Run("endpoints of a headless UDP service", func(t *testing.T) {
		target := "endpoints:" + ns + "/dns:53"
		expectAnswer(t, mustWait(t, c, token, target, "", 0), readiness.StateWaiting, "not found")
		if _, err := cs.CoreV1().Services(ns).Create(ctx, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "dns"},
			Spec: corev1.ServiceSpec{ClusterIP: corev1.ClusterIPNone, Selector: labels,
				Ports: []corev1.ServicePort{{Name: "dns", Port: 53, Protocol: corev1.ProtocolUDP}}}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		expectAnswer(t, awaitChange(t, c, token, target, "not found"), readiness.StateWaiting, "no ready endpoint for port 53")
		// No endpoints controller in envtest: write the EndpointSlice as it would.
		slice := &discoveryv1.EndpointSlice{
			ObjectMeta:  metav1.ObjectMeta{Name: "dns-1", Labels: map[string]string{discoveryv1.LabelServiceName: "dns"}},
			AddressType: discoveryv1.AddressTypeIPv4,
			Ports:       []discoveryv1.EndpointPort{{Name: ptr.To("dns"), Port: ptr.To[int32](53), Protocol: ptr.To(corev1.ProtocolUDP)}},
			Endpoints:   []discoveryv1.Endpoint{{Addresses: []string{"10.0.0.7"}, Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(false)}}},
		}
		sl, err := cs.DiscoveryV1().EndpointSlices(ns).Create(ctx, slice, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		expectAnswer(t, mustWait(t, c, token, target, "", 0), readiness.StateWaiting, "no ready endpoint for port 53")
		sl.Endpoints[0].Conditions.Ready = ptr.To(true)
		if _, err := cs.DiscoveryV1().EndpointSlices(ns).Update(ctx, sl, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		expectAnswer(t, awaitChange(t, c, token, target, "no ready endpoint for port 53"), readiness.StateReady, "1 ready endpoint for port 53")
		// Another port of the same Service shares the watch and is not ready.
		expectAnswer(t, mustWait(t, c, token, "endpoints:"+ns+"/dns:5353", "", 0), readiness.StateWaiting, "no ready endpoint for port 5353")
	})
}

func createJob(t *testing.T, cs kubernetes.Interface, ns, name string) *batchv1.Job {
	t.Helper()
	j, err := cs.BatchV1().Jobs(ns).Create(testCtx(t), &batchv1.Job{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: batchv1.JobSpec{BackoffLimit: ptr.To[int32](0), Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{
			RestartPolicy: corev1.RestartPolicyNever,
			Containers:    []corev1.Container{{Name: "migrate", Image: "busybox:1.36"}},
		}}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return j
}

// completeJob writes the status the Job controller would (none runs in envtest).
func completeJob(t *testing.T, cs kubernetes.Interface, j *batchv1.Job) {
	t.Helper()
	now := metav1.Now()
	start := metav1.NewTime(now.Add(-time.Second))
	cond := func(typ batchv1.JobConditionType) batchv1.JobCondition {
		return batchv1.JobCondition{Type: typ, Status: corev1.ConditionTrue, Reason: "CompletionsReached",
			Message: "Reached expected number of succeeded pods", LastProbeTime: now, LastTransitionTime: now}
	}
	updateJobStatus(t, cs, j, batchv1.JobStatus{StartTime: &start, CompletionTime: &now, Succeeded: 1},
		[]batchv1.JobCondition{cond(batchv1.JobSuccessCriteriaMet), cond(batchv1.JobComplete)},
		[]batchv1.JobCondition{cond(batchv1.JobComplete)})
}

func failJob(t *testing.T, cs kubernetes.Interface, j *batchv1.Job) {
	t.Helper()
	now := metav1.Now()
	start := metav1.NewTime(now.Add(-time.Second))
	cond := func(typ batchv1.JobConditionType) batchv1.JobCondition {
		return batchv1.JobCondition{Type: typ, Status: corev1.ConditionTrue, Reason: "BackoffLimitExceeded",
			Message: "Job has reached the specified backoff limit", LastProbeTime: now, LastTransitionTime: now}
	}
	updateJobStatus(t, cs, j, batchv1.JobStatus{StartTime: &start, Failed: 1},
		[]batchv1.JobCondition{cond(batchv1.JobFailureTarget), cond(batchv1.JobFailed)},
		[]batchv1.JobCondition{cond(batchv1.JobFailed)})
}

// updateJobStatus writes status with the first condition list the API
// server's Job status validation accepts (it tightened across releases: the
// controller now sets SuccessCriteriaMet/FailureTarget first).
func updateJobStatus(t *testing.T, cs kubernetes.Interface, j *batchv1.Job, status batchv1.JobStatus, variants ...[]batchv1.JobCondition) {
	t.Helper()
	var errs []string
	for _, conds := range variants {
		j.Status = status
		j.Status.Conditions = conds
		if _, err := cs.BatchV1().Jobs(j.Namespace).UpdateStatus(testCtx(t), j, metav1.UpdateOptions{}); err == nil {
			return
		} else {
			errs = append(errs, err.Error())
		}
	}
	t.Fatalf("update status of Job %s: %s", j.Name, strings.Join(errs, "; "))
}

func expectEvent(t *testing.T, cs kubernetes.Interface, ns, pod, message string) {
	t.Helper()
	var seen []string
	waitUntil(t, 15*time.Second, func() bool {
		list, err := cs.CoreV1().Events(ns).List(testCtx(t), metav1.ListOptions{FieldSelector: "involvedObject.name=" + pod})
		if err != nil {
			return false
		}
		seen = seen[:0]
		for _, e := range list.Items {
			seen = append(seen, e.Reason+": "+e.Message)
			if strings.HasPrefix(e.Message, message) && e.Source.Component == "depends-on-readiness" {
				return true
			}
		}
		return false
	}, func() string { return "events on the Pod: " + strings.Join(seen, " | ") })
}

func waitGone(t *testing.T, cs kubernetes.Interface, ns, pod string) {
	t.Helper()
	waitUntil(t, 30*time.Second, func() bool {
		_, err := cs.CoreV1().Pods(ns).Get(testCtx(t), pod, metav1.GetOptions{})
		return err != nil
	})
}

func waitJobGone(t *testing.T, cs kubernetes.Interface, ns, job string) {
	t.Helper()
	waitUntil(t, 30*time.Second, func() bool {
		_, err := cs.BatchV1().Jobs(ns).Get(testCtx(t), job, metav1.GetOptions{})
		return err != nil
	})
}

func waitUntil(t *testing.T, timeout time.Duration, cond func() bool, detail ...func() string) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			msg := ""
			if len(detail) > 0 {
				msg = ": " + detail[0]()
			}
			t.Fatalf("condition not met within %s%s", timeout, msg)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
