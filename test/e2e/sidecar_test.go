//go:build e2e

package e2e

import (
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/depends-on/depends-on/webhook"
)

// Issue 11: the dependency is served on the Pod's loopback by a native
// sidecar (an init container with restartPolicy: Always, as a database proxy
// is), declared before the Pod's own init containers. depends-on's wait goes
// after the sidecar, so the sidecar is running when the wait checks
// 127.0.0.1; before issue 11 the wait went first and waited forever (nothing
// listens on a Pod's loopback before its init containers start).
func testNativeSidecar(t *testing.T) {
	ctx := caseContext(t, 5*time.Minute)
	ns := namespace(t, ctx, "native-sidecar", nil)
	const url = "http://127.0.0.1:8080/"
	pod := tinyPod("sidecar-served", map[string]string{webhook.AnnotationHTTP: url})
	pod.Spec.InitContainers = []corev1.Container{
		{
			// Listens on loopback only, a few seconds after it starts: the wait
			// sees it not ready, then ready.
			Name:          "local-proxy",
			Image:         "busybox:1.28",
			RestartPolicy: ptr.To(corev1.ContainerRestartPolicyAlways),
			Command:       []string{"sh", "-c", "mkdir -p /tmp/www && echo ok > /tmp/www/index.html && sleep 3 && exec httpd -f -p 127.0.0.1:8080 -h /tmp/www"},
		},
		{Name: "migrate", Image: "busybox:1.28", Command: []string{"sh", "-c", "wget -q -O- " + url}},
	}
	created, err := e.cs.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got := sidecarInitNames(created.Spec.InitContainers); len(got) != 3 || got[0] != "local-proxy" || got[1] != webhook.WaitContainerName || got[2] != "migrate" {
		t.Fatalf("init containers %v, want local-proxy, %s, migrate", got, webhook.WaitContainerName)
	}

	p := waitPod(t, ctx, ns, "sidecar-served", 3*time.Minute, "app runs", containerRunning("app"))
	var proxyStart, waitStart time.Time
	for _, s := range p.Status.InitContainerStatuses {
		switch s.Name {
		case "local-proxy":
			if s.State.Running != nil {
				proxyStart = s.State.Running.StartedAt.Time
			}
		case webhook.WaitContainerName:
			if term := s.State.Terminated; term != nil {
				if term.ExitCode != 0 {
					t.Fatalf("%s exited %d: %s", s.Name, term.ExitCode, term.Message)
				}
				waitStart = term.StartedAt.Time
			}
		}
	}
	if proxyStart.IsZero() || waitStart.IsZero() || waitStart.Before(proxyStart) {
		t.Fatalf("local-proxy started %s, %s started %s: want the sidecar running first\n%s",
			proxyStart, webhook.WaitContainerName, waitStart, podStatus(p))
	}
	t.Logf("local-proxy started %s, %s %s after it", proxyStart.Format(time.RFC3339), webhook.WaitContainerName, waitStart.Sub(proxyStart))
	t.Logf("kubectl get pod:\n%s", kubectl(t, ctx, "-n", ns, "get", "pod", "sidecar-served"))
	t.Logf("kubectl logs -c %s:\n%s", webhook.WaitContainerName, logs(t, ctx, ns, "sidecar-served", webhook.WaitContainerName, false))
}

func sidecarInitNames(cs []corev1.Container) []string {
	out := make([]string, len(cs))
	for i, c := range cs {
		out[i] = c.Name
	}
	return out
}
