package integration

import (
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"

	"github.com/depends-on/depends-on/deploy"
	"github.com/depends-on/depends-on/webhook"
)

// An annotated Pod with spec.os.name=windows is
// patched with Linux-only securityContext fields, and the API server then rejects
// the patched Pod with errors about spec.initContainers[0] (a container the user
// never wrote). The webhook should deny it itself, saying why.
func TestWindowsPodDeniedByWebhook(t *testing.T) {
	useWebhook(t)
	ns := newNamespace(t, nil)
	pod := simplePod(ns, "windows", map[string]string{webhook.AnnotationServices: "mydb"})
	pod.Spec.OS = &corev1.PodOS{Name: corev1.Windows}
	err := suite.client.Create(testCtx(t), pod)
	if err == nil {
		t.Fatalf("admitted with init containers %v", names(pod.Spec.InitContainers))
	}
	if want := `admission webhook "` + deploy.WebhookName + `" denied the request: depends-on: `; !strings.Contains(err.Error(), want) {
		t.Errorf("want the webhook's own denial (%q), got the API server's validation of the injected containers:\n%v", want, err)
	}
}
