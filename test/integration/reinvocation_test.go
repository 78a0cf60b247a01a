package integration

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/depends-on/depends-on/certs/certgen"
	"github.com/depends-on/depends-on/webhook"
)

const (
	// reinvokeConfig sorts after deploy.WebhookConfiguration ("depends-on"):
	// the API server calls mutating webhooks in configuration-name order.
	reinvokeConfig = "zz-reinvoke-test"
	// reinvokeNamespaceLabel scopes the test webhook to this case's namespaces.
	reinvokeNamespaceLabel = "integration.depends-on.dev/reinvoke"
	// zzAddsAnnotation tells the test webhook what to change (outside our prefix).
	zzAddsAnnotation = "example.com/zz-adds"
	zzTouched        = "example.com/zz-touched"
	zzContainer      = "added-by-zz"
)

// zzWebhook is a test-only mutating webhook served in-process over TLS. It
// changes every Pod after ours, so the API server reinvokes ours
// (reinvocationPolicy: IfNeeded in deploy/base).
type zzWebhook struct {
	srv   *httptest.Server
	calls atomic.Int64
	// name is its configuration's (it must sort after "depends-on"), label
	// the namespace label it matches; mutate changes a Pod, or says it did not.
	name, label string
	mutate      func(*corev1.Pod) bool
}

func startZZWebhook(t *testing.T) *zzWebhook {
	t.Helper()
	return startTestWebhook(t, reinvokeConfig, reinvokeNamespaceLabel, zzMutate)
}

// startTestWebhook serves a zzWebhook that changes Pods with mutate.
func startTestWebhook(t *testing.T, name, label string, mutate func(*corev1.Pod) bool) *zzWebhook {
	t.Helper()
	b, err := certgen.Generate(certgen.Options{CA: suite.ca, NoService: true, Hosts: []string{"127.0.0.1"}})
	if err != nil {
		t.Fatal(err)
	}
	cert, err := b.TLSCertificate()
	if err != nil {
		t.Fatal(err)
	}
	z := &zzWebhook{name: name, label: label, mutate: mutate}
	mux := http.NewServeMux()
	mux.Handle("/mutate", &admission.Webhook{Handler: admission.HandlerFunc(z.handle)})
	z.srv = httptest.NewUnstartedServer(mux)
	z.srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	z.srv.StartTLS()
	t.Cleanup(z.srv.Close)
	return z
}

// zzAdded is the app container the test webhook adds.
func zzAdded() corev1.Container {
	return corev1.Container{Name: zzContainer, Image: "busybox:1.28", Command: []string{"sleep", "3600"}}
}

func (z *zzWebhook) handle(_ context.Context, req admission.Request) admission.Response {
	z.calls.Add(1)
	var pod corev1.Pod
	if err := json.Unmarshal(req.Object.Raw, &pod); err != nil {
		return admission.Errored(http.StatusBadRequest, err)
	}
	if !z.mutate(&pod) {
		return admission.Allowed("")
	}
	raw, err := json.Marshal(&pod)
	if err != nil {
		return admission.Errored(http.StatusInternalServerError, err)
	}
	return admission.PatchResponseFromRaw(req.Object.Raw, raw)
}

func zzMutate(pod *corev1.Pod) bool {
	switch pod.Annotations[zzAddsAnnotation] {
	case "container":
		if !slices.Contains(names(pod.Spec.Containers), zzContainer) {
			pod.Spec.Containers = append(pod.Spec.Containers, zzAdded())
		}
	case "annotation":
		pod.Annotations[zzTouched] = "true"
	default:
		return false
	}
	return true
}

// register creates the zz-reinvoke-test configuration and waits until the
// API server calls it.
func (z *zzWebhook) register(t *testing.T, ns string) {
	t.Helper()
	ctx := testCtx(t)
	cfg := &admissionregistrationv1.MutatingWebhookConfiguration{
		ObjectMeta: metav1.ObjectMeta{Name: z.name},
		Webhooks: []admissionregistrationv1.MutatingWebhook{{
			Name:                    z.name + ".integration.depends-on.dev",
			AdmissionReviewVersions: []string{"v1"},
			SideEffects:             ptr.To(admissionregistrationv1.SideEffectClassNone),
			FailurePolicy:           ptr.To(admissionregistrationv1.Fail),
			ReinvocationPolicy:      ptr.To(admissionregistrationv1.NeverReinvocationPolicy),
			TimeoutSeconds:          ptr.To[int32](5),
			ClientConfig: admissionregistrationv1.WebhookClientConfig{
				URL:      ptr.To(z.srv.URL + "/mutate"),
				CABundle: suite.ca.CertPEM,
			},
			Rules: []admissionregistrationv1.RuleWithOperations{{
				Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create},
				Rule: admissionregistrationv1.Rule{
					APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"pods"},
					Scope: ptr.To(admissionregistrationv1.NamespacedScope),
				},
			}},
			NamespaceSelector: &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{
				Key: z.label, Operator: metav1.LabelSelectorOpExists,
			}}},
		}},
	}
	if err := suite.client.Create(ctx, cfg); err != nil {
		t.Fatalf("create %s: %v", z.name, err)
	}
	t.Cleanup(func() { _ = suite.client.Delete(context.WithoutCancel(ctx), cfg) })

	// Active once a dry-run Pod (unannotated for us: our webhook is not called)
	// reaches it.
	deadline := time.Now().Add(activeTimeout)
	for {
		before := z.calls.Load()
		pod := simplePod(ns, "zz-probe", map[string]string{zzAddsAnnotation: "annotation"})
		err := suite.client.Create(ctx, pod, client.DryRunAll)
		if err == nil && z.calls.Load() > before {
			return
		}
		if err == nil {
			err = errors.New("not called yet")
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not called within %s: %v", z.name, activeTimeout, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// Case 6: another mutating webhook changes the Pod after ours; ours is
// reinvoked (IfNeeded) and the stored Pod has each injected container once.
func TestReinvocation(t *testing.T) {
	useWebhook(t)
	ns := newNamespace(t, map[string]string{reinvokeNamespaceLabel: "true"})
	z := startZZWebhook(t)
	z.register(t, ns)
	injector := goldenInjector(t) // the webhook's settings: the record's config hash matches

	for _, tc := range []struct {
		zzAdds string
		// secondCall is our decision when reinvoked.
		secondCall webhook.Decision
	}{
		// A new app container: the reinvocation must give it the fetch mount.
		{zzAdds: "container", secondCall: webhook.DecisionPatched},
		// Only an annotation: our first output, after API-server defaulting, is
		// already what we would inject, so the second call changes nothing.
		{zzAdds: "annotation", secondCall: webhook.DecisionAllowed},
	} {
		t.Run("zz-adds-"+tc.zzAdds, func(t *testing.T) {
			in := simplePod(ns, "reinvoked-"+tc.zzAdds, map[string]string{
				webhook.AnnotationServices: "mydb, cache:6379",
				webhook.AnnotationFetch:    "/etc/app/config.json=http://config.example.com/app.json",
				zzAddsAnnotation:           tc.zzAdds,
			})
			zzBefore, before := z.calls.Load(), snapshot(t)
			createPod(t, in.DeepCopy())
			stored := getPod(t, ns, in.Name)

			if got := z.calls.Load() - zzBefore; got != 1 {
				t.Errorf("%s called %d times, want 1", reinvokeConfig, got)
			}
			want := counts{requests: 2, decisions: map[webhook.Decision]float64{webhook.DecisionPatched: 1}}
			want.decisions[tc.secondCall]++
			expectDelta(t, before, want)

			// Each injected container, volume and mount exactly once: the stored
			// Pod's injected parts are what the injector makes of the Pod as the
			// zz webhook left it.
			final := in.DeepCopy()
			switch tc.zzAdds {
			case "container":
				final.Spec.Containers = append(final.Spec.Containers, zzAdded())
			case "annotation":
				final.Annotations[zzTouched] = "true"
			}
			out, err := injector.Inject(webhook.PodFrom(final), ns)
			if err != nil {
				t.Fatal(err)
			}
			expected := withInjected(final, out)
			expectSameParts(t, "stored vs injector", partsOf(stored), partsOf(expected))
			if got, want := names(stored.Spec.InitContainers), []string{webhook.WaitContainerName, webhook.FetchContainerName}; !slices.Equal(got, want) {
				t.Errorf("init containers %v, want %v", got, want)
			}
			for _, c := range stored.Spec.Containers {
				n := 0
				for _, m := range c.VolumeMounts {
					if m.Name == webhook.FetchVolumeName {
						n++
					}
				}
				if n != 1 {
					t.Errorf("container %s mounts %s %d times, want once", c.Name, webhook.FetchVolumeName, n)
				}
			}
			if tc.zzAdds == "container" && !slices.Equal(names(stored.Spec.Containers), []string{"app", zzContainer}) {
				t.Errorf("containers %v, want app and %s", names(stored.Spec.Containers), zzContainer)
			}
			if tc.zzAdds == "annotation" && stored.Annotations[zzTouched] != "true" {
				t.Errorf("annotation %s missing: %v", zzTouched, stored.Annotations)
			}
		})
	}
}

// withInjected is pod with the parts injection changes taken from out, what
// Injector.Inject made of it: it only appends volumes and mounts, so the
// user's keep their indexes.
func withInjected(pod *corev1.Pod, out *webhook.Pod) *corev1.Pod {
	p := pod.DeepCopy()
	p.Annotations = out.Annotations
	p.Spec.InitContainers = out.Spec.InitContainers
	for i, v := range out.Spec.Volumes {
		if i >= len(p.Spec.Volumes) {
			p.Spec.Volumes = append(p.Spec.Volumes, *v.Whole)
		}
	}
	for i := range p.Spec.Containers {
		p.Spec.Containers[i].VolumeMounts = out.Spec.Containers[i].VolumeMounts
	}
	return p
}
