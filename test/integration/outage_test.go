package integration

import (
	"context"
	"maps"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/depends-on/depends-on/deploy"
	"github.com/depends-on/depends-on/webhook"
)

// Case 4: with the webhook process stopped, annotated Pods are rejected
// (failurePolicy: Fail), while unannotated Pods (matchConditions) and Pods in
// namespaces the namespaceSelector excludes are admitted as usual. The
// webhook is restarted afterwards.
func TestWebhookDown(t *testing.T) {
	useWebhook(t)
	ns := newNamespace(t, nil)
	disabled := newNamespace(t, map[string]string{labelDisabled: "true"})

	if err := suite.webhook.stop(); err != nil {
		t.Fatalf("stop webhook: %v", err)
	}
	t.Cleanup(func() {
		// t.Context() is already canceled when cleanups run.
		if err := suite.restartWebhook(context.Background()); err != nil {
			t.Errorf("restart webhook: %v", err)
		}
	})
	annotations := map[string]string{webhook.AnnotationServices: "mydb"}

	t.Run("annotated-pod-rejected", func(t *testing.T) {
		pod := simplePod(ns, "annotated", annotations)
		err := suite.client.Create(testCtx(t), pod)
		if err == nil {
			t.Fatalf("created while the webhook is down; init containers %v", names(pod.Spec.InitContainers))
		}
		if want := `failed calling webhook "` + deploy.WebhookName + `"`; !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q: %v", want, err)
		}
		if !apierrors.IsInternalError(err) {
			t.Errorf("want 500 InternalError, got reason %q: %v", apierrors.ReasonForError(err), err)
		}
		expectNoPod(t, ns, pod.Name)
	})

	t.Run("dry-run-rejected-too", func(t *testing.T) {
		pod := simplePod(ns, "annotated-dry-run", annotations)
		if err := suite.client.Create(testCtx(t), pod, client.DryRunAll); err == nil {
			t.Fatal("dry-run create succeeded while the webhook is down")
		}
	})

	admitted := []struct {
		name string
		pod  *corev1.Pod
	}{
		{"unannotated-pod", simplePod(ns, "unannotated", nil)},
		{"namespace-labelled-disabled", simplePod(disabled, "annotated", annotations)},
		// kube-system is excluded by name (kubernetes.io/metadata.name, set by the API server).
		{"kube-system", simplePod(metav1.NamespaceSystem, "depends-on-integration-annotated", annotations)},
	}
	for _, tc := range admitted {
		t.Run(tc.name+"-admitted", func(t *testing.T) {
			want := defaulted(t, tc.pod)
			createPod(t, tc.pod)
			if tc.pod.Namespace == metav1.NamespaceSystem {
				t.Cleanup(func() { _ = suite.client.Delete(context.Background(), tc.pod) })
			}
			stored := getPod(t, tc.pod.Namespace, tc.pod.Name)
			if !apiequality.Semantic.DeepEqual(stored.Spec, want.Spec) || !maps.Equal(stored.Annotations, want.Annotations) {
				t.Errorf("Pod was changed on admission\n--- stored:\n%s\n--- without the webhook:\n%s", toYAML(t, stored), toYAML(t, want))
			}
		})
	}
}
