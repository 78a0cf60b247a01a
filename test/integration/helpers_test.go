package integration

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/depends-on/depends-on/webhook"
)

// labelDisabled is the namespace label the webhook's namespaceSelector excludes.
const labelDisabled = "depends-on.dev/disabled"

// testCtx bounds one case's API calls.
func testCtx(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// useWebhook makes sure the shared webhook process runs (a previous case may
// have stopped it and failed to restart it) and logs its tail if t fails.
func useWebhook(t *testing.T) {
	t.Helper()
	if !suite.webhook.running() {
		if err := suite.restartWebhook(testCtx(t)); err != nil {
			t.Fatalf("restart webhook: %v", err)
		}
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("webhook log tail:\n%s", suite.webhook.logTail(40))
		}
	})
}

var unsafeName = regexp.MustCompile(`[^a-z0-9-]+`)

// newNamespace creates a namespace named after the test, with labels.
func newNamespace(t *testing.T, labels map[string]string) string {
	t.Helper()
	prefix := unsafeName.ReplaceAllString(strings.ToLower(t.Name()), "-")
	if len(prefix) > 40 {
		prefix = prefix[len(prefix)-40:]
	}
	prefix = strings.Trim(prefix, "-")
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "it-" + prefix + "-", Labels: labels}}
	if err := suite.client.Create(testCtx(t), ns); err != nil {
		t.Fatalf("create namespace: %v", err)
	}
	return ns.Name
}

// ensureNamespace creates the namespace name unless it exists.
func ensureNamespace(t *testing.T, name string) {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}
	if err := suite.client.Create(testCtx(t), ns); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatalf("create namespace %s: %v", name, err)
	}
}

// loadPod reads a Pod from webhook/testdata, strictly.
func loadPod(t *testing.T, name string) *corev1.Pod {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(suite.repoRoot, "webhook", "testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	var pod corev1.Pod
	if err := yaml.UnmarshalStrict(data, &pod); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return &pod
}

// simplePod is a Pod with one busybox container.
func simplePod(ns, name string, annotations map[string]string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Annotations: annotations},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{
			Name: "app", Image: "busybox:1.28", Command: []string{"sleep", "3600"},
		}}},
	}
}

// createPod creates pod (updated in place with what the API server stored).
func createPod(t *testing.T, pod *corev1.Pod) {
	t.Helper()
	if err := suite.client.Create(testCtx(t), pod); err != nil {
		t.Fatalf("create Pod %s/%s: %v", pod.Namespace, pod.Name, err)
	}
}

// getPod reads the stored Pod back.
func getPod(t *testing.T, ns, name string) *corev1.Pod {
	t.Helper()
	var pod corev1.Pod
	if err := suite.client.Get(testCtx(t), client.ObjectKey{Namespace: ns, Name: name}, &pod); err != nil {
		t.Fatalf("get Pod %s/%s: %v", ns, name, err)
	}
	return &pod
}

// expectNoPod asserts nothing was stored under ns/name.
func expectNoPod(t *testing.T, ns, name string) {
	t.Helper()
	var pod corev1.Pod
	err := suite.client.Get(testCtx(t), client.ObjectKey{Namespace: ns, Name: name}, &pod)
	if !apierrors.IsNotFound(err) {
		t.Errorf("Pod %s/%s: want NotFound, got err=%v (stored: %v)", ns, name, err, pod.UID != "")
	}
}

// defaulted returns pod as the API server would store it without our webhook:
// a server-side dry-run create in a namespace the namespaceSelector excludes,
// so every other admission plugin and all defaulting apply, and nothing is
// stored. Cases compare whole Pods against it instead of listing defaults.
func defaulted(t *testing.T, pod *corev1.Pod) *corev1.Pod {
	t.Helper()
	ns := newNamespace(t, map[string]string{labelDisabled: "true"})
	out := pod.DeepCopy()
	out.Namespace = ns
	out.ResourceVersion = ""
	if err := suite.client.Create(testCtx(t), out, client.DryRunAll); err != nil {
		t.Fatalf("dry-run create in a namespace without the webhook: %v", err)
	}
	return out
}

// injectedParts is what the webhook adds to a Pod.
type injectedParts struct {
	InitContainers []corev1.Container     `json:"initContainers"`
	Volumes        []corev1.Volume        `json:"volumes"`
	VolumeMounts   [][]corev1.VolumeMount `json:"volumeMounts"` // per app container, in order
	Injected       string                 `json:"injected"`     // the depends-on.dev/injected annotation
}

// partsOf returns the Pod's init containers, volumes, app container mounts
// and record, whoever added them.
func partsOf(pod *corev1.Pod) injectedParts {
	p := injectedParts{
		InitContainers: pod.Spec.InitContainers,
		Volumes:        pod.Spec.Volumes,
		Injected:       pod.Annotations[webhook.AnnotationInjected],
	}
	for _, c := range pod.Spec.Containers {
		p.VolumeMounts = append(p.VolumeMounts, c.VolumeMounts)
	}
	return p
}

// ourParts narrows partsOf to what the Pod's depends-on.dev/injected record
// names: the injected init containers and volumes, and the mounts of those
// volumes in the app containers. The user's own init containers and volumes
// are left out (the API server defaults them; whole-Pod comparisons cover them).
func ourParts(t *testing.T, pod *corev1.Pod) injectedParts {
	t.Helper()
	p := injectedParts{Injected: pod.Annotations[webhook.AnnotationInjected]}
	var st webhook.Status
	if p.Injected != "" {
		if err := json.Unmarshal([]byte(p.Injected), &st); err != nil {
			t.Fatalf("%s: %v", webhook.AnnotationInjected, err)
		}
	}
	for _, c := range pod.Spec.InitContainers {
		if slices.Contains(st.InitContainers, c.Name) {
			p.InitContainers = append(p.InitContainers, c)
		}
	}
	for _, v := range pod.Spec.Volumes {
		if slices.Contains(st.Volumes, v.Name) {
			p.Volumes = append(p.Volumes, v)
		}
	}
	for _, c := range pod.Spec.Containers {
		var mounts []corev1.VolumeMount
		for _, m := range c.VolumeMounts {
			if slices.Contains(st.Volumes, m.Name) {
				mounts = append(mounts, m)
			}
		}
		p.VolumeMounts = append(p.VolumeMounts, mounts)
	}
	return p
}

// expectSameParts compares the injected parts exactly (semantic equality:
// resource quantities by value; no field may be missing or extra).
func expectSameParts(t *testing.T, what string, got, want injectedParts) {
	t.Helper()
	if !apiequality.Semantic.DeepEqual(got.InitContainers, want.InitContainers) ||
		!apiequality.Semantic.DeepEqual(got.Volumes, want.Volumes) ||
		!apiequality.Semantic.DeepEqual(got.VolumeMounts, want.VolumeMounts) ||
		got.Injected != want.Injected {
		t.Errorf("%s: injected parts differ\n--- got:\n%s\n--- want:\n%s", what, toYAML(t, got), toYAML(t, want))
	}
}

func toYAML(t *testing.T, v any) string {
	t.Helper()
	out, err := yaml.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(out)
}

// names lists container names.
func names(cs []corev1.Container) []string {
	var out []string
	for _, c := range cs {
		out = append(out, c.Name)
	}
	return out
}
