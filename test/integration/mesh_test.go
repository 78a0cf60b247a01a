package integration

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/depends-on/depends-on/test/testutil"
	"github.com/depends-on/depends-on/webhook"
)

const (
	// mirrorConfig sorts after deploy.WebhookConfiguration ("depends-on").
	mirrorConfig         = "zz-mirror-proxy-env"
	mirrorNamespaceLabel = "integration.depends-on.dev/mirror"
	mirrorPrefix         = "mirror.test/"
	testHTTPProxy        = "http://proxy.test:3128"
)

// goldenInjector is an Injector with the integration webhook's settings (the
// goldens'), so that what it computes matches what the webhook stores.
func goldenInjector(t *testing.T) *webhook.Injector {
	t.Helper()
	cfg := webhook.DefaultConfig()
	cfg.ReadinessURL, cfg.ReadinessCA = testutil.GoldenReadinessURL, testutil.GoldenReadinessCA
	in, err := webhook.NewInjector(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return in
}

// mirrorProxyEnv is what a registry-mirror webhook and a proxy-env webhook do
// to every container, depends-on's included: the image pulled through the
// mirror, HTTP_PROXY and NO_PROXY set. Idempotent, as such webhooks are.
func mirrorProxyEnv(pod *corev1.Pod) bool {
	changed := false
	for _, cs := range [][]corev1.Container{pod.Spec.InitContainers, pod.Spec.Containers} {
		for i := range cs {
			c := &cs[i]
			if !strings.HasPrefix(c.Image, mirrorPrefix) {
				c.Image, changed = mirrorPrefix+c.Image, true
			}
			if !slices.ContainsFunc(c.Env, func(e corev1.EnvVar) bool { return e.Name == "HTTP_PROXY" }) {
				c.Env = append(c.Env, corev1.EnvVar{Name: "HTTP_PROXY", Value: testHTTPProxy}, corev1.EnvVar{Name: "NO_PROXY", Value: ".svc,.cluster.local"})
				changed = true
			}
		}
	}
	return changed
}

// Issue 11: another real mutating webhook, registered to run after ours,
// rewrites images to a mirror and adds proxy env to every container. The API
// server reinvokes ours (IfNeeded); ours answers without a patch, so the
// stored Pod keeps both edits on depends-on's containers too, has them once,
// after the Pod's native sidecar and before its own init container. The same
// Pod created again from what was stored comes out the same.
func TestOtherWebhookEditsKept(t *testing.T) {
	useWebhook(t)
	ns := newNamespace(t, map[string]string{mirrorNamespaceLabel: "true"})
	z := startTestWebhook(t, mirrorConfig, mirrorNamespaceLabel, mirrorProxyEnv)
	z.register(t, ns)

	always := corev1.ContainerRestartPolicyAlways
	in := simplePod(ns, "mirrored", map[string]string{
		webhook.AnnotationTCP:   "127.0.0.1:5432",
		webhook.AnnotationFetch: "/etc/app/config.json=http://config.example.com/app.json",
	})
	in.Spec.InitContainers = []corev1.Container{
		{Name: "db-proxy", Image: "busybox:1.28", Command: []string{"nc", "-lk", "-p", "5432"}, RestartPolicy: &always},
		{Name: "migrate", Image: "busybox:1.28", Command: []string{"true"}},
	}

	zzBefore, before := z.calls.Load(), snapshot(t)
	createPod(t, in.DeepCopy())
	stored := getPod(t, ns, in.Name)
	if got := z.calls.Load() - zzBefore; got != 1 {
		t.Errorf("%s called %d times, want 1", mirrorConfig, got)
	}
	// Ours twice: the injection, then the reinvocation after the mirror's
	// edits, which needs no patch (the record's hashes did not change).
	expectDelta(t, before, counts{requests: 2, decisions: map[webhook.Decision]float64{webhook.DecisionPatched: 1, webhook.DecisionAllowed: 1}})
	expectMirroredInjection(t, stored)

	// What the API server stored is what the injector makes of the Pod, then
	// the mirror's edits: nothing of depends-on's output was reverted.
	out, err := goldenInjector(t).Inject(webhook.PodFrom(in), ns)
	if err != nil {
		t.Fatal(err)
	}
	want := withInjected(in, out)
	mirrorProxyEnv(want)
	expectSameParts(t, "stored vs injector+mirror", ourParts(t, stored), ourParts(t, want))

	// Changing nothing gives the same result: the stored Pod created again
	// (kubectl get -o yaml | kubectl create -f -) gets no patch from either.
	again := stored.DeepCopy()
	again.Name, again.ResourceVersion, again.UID, again.CreationTimestamp, again.ManagedFields = "mirrored-again", "", "", metav1.Time{}, nil
	zzBefore, before = z.calls.Load(), snapshot(t)
	createPod(t, again)
	storedAgain := getPod(t, ns, again.Name)
	if got := z.calls.Load() - zzBefore; got != 1 {
		t.Errorf("%s called %d times, want 1", mirrorConfig, got)
	}
	expectDelta(t, before, counts{requests: 1, decisions: map[webhook.Decision]float64{webhook.DecisionAllowed: 1}})
	expectSameParts(t, "re-created vs first", partsOf(storedAgain), partsOf(stored))
}

// expectMirroredInjection checks a stored Pod of TestOtherWebhookEditsKept.
func expectMirroredInjection(t *testing.T, stored *corev1.Pod) {
	t.Helper()
	if got, want := names(stored.Spec.InitContainers), []string{"db-proxy", webhook.WaitContainerName, webhook.FetchContainerName, "migrate"}; !slices.Equal(got, want) {
		t.Errorf("init containers %v, want %v", got, want)
	}
	for _, c := range append(slices.Clone(stored.Spec.InitContainers), stored.Spec.Containers...) {
		if !strings.HasPrefix(c.Image, mirrorPrefix) || strings.Count(c.Image, mirrorPrefix) != 1 {
			t.Errorf("container %s: image %s, want it through %s once", c.Name, c.Image, mirrorPrefix)
		}
		n := 0
		for _, e := range c.Env {
			if e.Name == "HTTP_PROXY" && e.Value == testHTTPProxy {
				n++
			}
		}
		if n != 1 {
			t.Errorf("container %s: HTTP_PROXY %d times in %v, want once", c.Name, n, c.Env)
		}
	}
	var st webhook.Status
	if err := json.Unmarshal([]byte(stored.Annotations[webhook.AnnotationInjected]), &st); err != nil || st.Hash == "" || st.Config == "" {
		t.Errorf("record %q: want version 2 with hashes (%v)", stored.Annotations[webhook.AnnotationInjected], err)
	}
}

// Issue 11, point 4: the admission warnings reach the client, as kubectl
// shows them: a Pod in Istio's CNI mode with a classic proxy, whose waits
// cannot pass the proxy, created through the API server. In the mirror's
// namespace ours is called twice (the injection, and the no-patch
// reinvocation): the warnings are the same, the API server shows them.
func TestWarningsReachTheClient(t *testing.T) {
	useWebhook(t)
	want := strings.Split(strings.TrimSuffix(readGolden(t, "istio-cni-classic.warnings"), "\n"), "\n")
	plain := newNamespace(t, nil)
	mirrored := newNamespace(t, map[string]string{mirrorNamespaceLabel: "true"})
	z := startTestWebhook(t, mirrorConfig, mirrorNamespaceLabel, mirrorProxyEnv)
	z.register(t, mirrored)

	for _, ns := range []string{plain, mirrored} {
		warnings := &warningRecorder{}
		cfg := rest.CopyConfig(suite.cfg)
		cfg.WarningHandler = warnings
		c, err := client.New(cfg, client.Options{Scheme: clientgoscheme.Scheme})
		if err != nil {
			t.Fatal(err)
		}
		pod := loadPod(t, "istio-cni-classic.yaml")
		pod.Namespace = ns
		if err := c.Create(testCtx(t), pod); err != nil {
			t.Fatalf("create: %v", err)
		}
		got := warnings.get()
		t.Logf("namespace %s: as kubectl prints them:\nWarning: %s", ns, strings.Join(got, "\nWarning: "))
		// The API server passes each distinct warning once, in order.
		if !slices.Equal(got, want) {
			t.Errorf("namespace %s: warnings\n%s\nwant\n%s", ns, strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
		if idx := slices.Index(names(pod.Spec.InitContainers), webhook.WaitContainerName); idx != 0 {
			t.Errorf("namespace %s: wait-for-service at %d in %v, want 0", ns, idx, names(pod.Spec.InitContainers))
		}
	}
}

func readGolden(t *testing.T, name string) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(suite.repoRoot, "webhook", "testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}
