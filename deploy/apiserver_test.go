package deploy_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/yaml"

	"github.com/depends-on/depends-on/deploy"
	dowebhook "github.com/depends-on/depends-on/webhook"
)

// warnings collects API server warnings (Pod Security warn mode reports
// violations of workload templates this way).
type warnings struct {
	mu  sync.Mutex
	msg []string
}

func (w *warnings) HandleWarningHeader(_ int, _ string, text string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.msg = append(w.msg, text)
}

func (w *warnings) take() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	m := w.msg
	w.msg = nil
	return m
}

func certManagerCRDs(t *testing.T, path string) []*apiextensionsv1.CustomResourceDefinition {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var crds []*apiextensionsv1.CustomResourceDefinition
	reader := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	for {
		doc, err := reader.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		var meta metav1.TypeMeta
		if err := yaml.Unmarshal(doc, &meta); err != nil || meta.Kind != "CustomResourceDefinition" {
			continue
		}
		crd := &apiextensionsv1.CustomResourceDefinition{}
		if err := yaml.Unmarshal(doc, crd); err != nil {
			t.Fatal(err)
		}
		crds = append(crds, crd)
	}
	return crds
}

// TestManifestsOnAPIServer creates every rendered object on a real
// kube-apiserver (envtest) with strict field validation: the API server's own
// validation of the webhook configuration (matchConditions included), of the
// Deployment and, given CERT_MANAGER_MANIFEST, of the cert-manager CRDs'
// schemas. Pod Security warnings for the Deployment must be empty, and a Pod
// with injected containers must be admitted by the enforced restricted level.
// Skipped without KUBEBUILDER_ASSETS (kube-apiserver and etcd binaries).
func TestManifestsOnAPIServer(t *testing.T) {
	if os.Getenv("KUBEBUILDER_ASSETS") == "" {
		t.Skip("KUBEBUILDER_ASSETS not set: no kube-apiserver to validate against")
	}
	if testing.Short() {
		t.Skip("-short")
	}
	// The API server must never reach out for the (absent) webhook Service
	// through a proxy: name resolution of *.svc simply fails here.
	for _, k := range []string{"HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy"} {
		t.Setenv(k, "")
	}
	t.Setenv("NO_PROXY", "*")
	t.Setenv("no_proxy", "*")
	env := &envtest.Environment{}
	cmManifest := os.Getenv("CERT_MANAGER_MANIFEST")
	if cmManifest != "" {
		env.CRDInstallOptions.CRDs = certManagerCRDs(t, cmManifest)
	}
	cfg, err := env.Start()
	if err != nil {
		t.Fatalf("envtest: %v", err)
	}
	t.Cleanup(func() {
		if err := env.Stop(); err != nil {
			t.Logf("envtest stop: %v", err)
		}
	})
	warn := &warnings{}
	cfg = rest.CopyConfig(cfg)
	cfg.WarningHandler = warn
	c, err := client.New(cfg, client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	f := renderAll(t)
	for _, name := range deploy.Overlays {
		for _, o := range f.overlays[name].objects {
			if strings.HasPrefix(o.APIVersion, "cert-manager.io/") && cmManifest == "" {
				t.Logf("%s: %s %s not checked (set CERT_MANAGER_MANIFEST for the CRDs)", name, o.Kind, o.Name)
				continue
			}
			u := o.Unstructured.DeepCopy()
			err := c.Create(ctx, u, client.FieldValidation("Strict"))
			if apierrors.IsAlreadyExists(err) {
				// The second overlay: same object, possibly different content.
				existing := &unstructured.Unstructured{}
				existing.SetGroupVersionKind(u.GroupVersionKind())
				if err = c.Get(ctx, client.ObjectKeyFromObject(u), existing); err == nil {
					u.SetResourceVersion(existing.GetResourceVersion())
					err = c.Update(ctx, u, client.FieldValidation("Strict"))
				}
			}
			if err != nil {
				t.Errorf("%s: %s %s rejected by the API server: %v", name, o.Kind, o.Name, err)
			}
			for _, w := range warn.take() {
				t.Errorf("%s: %s %s: API server warning: %s", name, o.Kind, o.Name, w)
			}
		}
	}

	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "app", Labels: map[string]string{
		"pod-security.kubernetes.io/enforce": "restricted", "pod-security.kubernetes.io/enforce-version": "latest",
	}}}
	if err := c.Create(ctx, ns); err != nil {
		t.Fatal(err)
	}
	restrictedPod := func(name, namespace string, annotations map[string]string) *corev1.Pod {
		return &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: namespace, Annotations: annotations},
			Spec: corev1.PodSpec{
				SecurityContext: &corev1.PodSecurityContext{
					RunAsNonRoot:   ptr.To(true),
					SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
				},
				Containers: []corev1.Container{{Name: "app", Image: "nginx:1.27", SecurityContext: &corev1.SecurityContext{
					AllowPrivilegeEscalation: ptr.To(false),
					Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
				}}},
			},
		}
	}

	// The webhook is registered but nothing serves it: Pods it must not see
	// are still admitted (failurePolicy Fail would reject them otherwise).
	for _, p := range []*corev1.Pod{
		restrictedPod("plain", "app", nil),
		restrictedPod("unrelated", "app", map[string]string{"example.com/x": "y"}),
		restrictedPod("system", "kube-system", map[string]string{"depends-on.dev/services": "db"}),
	} {
		if err := c.Create(ctx, p); err != nil {
			t.Errorf("pod %s/%s not admitted while the webhook is down: %v", p.Namespace, p.Name, err)
		}
	}

	// An annotated Pod after injection, in a namespace that enforces
	// restricted (the API server's PodSecurity admission, not a copy of it).
	// The webhook configuration goes first: it would send this Pod.
	cfg0 := &unstructured.Unstructured{}
	cfg0.SetAPIVersion("admissionregistration.k8s.io/v1")
	cfg0.SetKind("MutatingWebhookConfiguration")
	cfg0.SetName(deploy.WebhookConfiguration)
	if err := c.Delete(ctx, cfg0); err != nil {
		t.Fatal(err)
	}
	inj, err := dowebhook.NewInjector(dowebhook.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	out, err := inj.Inject(restrictedPod("injected", "app", map[string]string{"depends-on.dev/services": "mydb:5432, myservice"}), "app")
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Create(ctx, out, client.FieldValidation("Strict")); err != nil {
		t.Errorf("injected Pod rejected: %v", err)
	}
	for _, w := range warn.take() {
		t.Errorf("API server warning: %s", w)
	}
}
