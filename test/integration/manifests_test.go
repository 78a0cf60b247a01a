package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/yaml"

	"github.com/depends-on/depends-on/certs/certgen"
	"github.com/depends-on/depends-on/deploy"
)

const (
	// certManagerModule@certManagerVersion provides the cert-manager CRDs
	// (deploy/crds in its module zip), read from the module cache at test time:
	// they are neither copied into this repository nor required in go.mod.
	// v1.11.5 is the cert-manager the offline e2e kit builds and the oldest
	// deploy/cert-manager supports ("v1.11 or later"); its module zip does
	// contain deploy/crds (checked, 6 CRDs).
	certManagerModule  = "github.com/cert-manager/cert-manager"
	certManagerVersion = "v1.11.5"
)

// Case 8: every manifest of deploy/ (base and every overlay, rendered by the
// project's renderer) applies with server-side dry-run, with no warnings
// (Pod Security "restricted" warns on the Deployment's template in
// depends-on-system otherwise).
func TestDeployManifestsApplyDryRun(t *testing.T) {
	ctx := testCtx(t)
	crds := certManagerCRDs(t)
	if _, err := envtest.InstallCRDs(suite.cfg, envtest.CRDInstallOptions{CRDs: crds, MaxTime: 2 * time.Minute}); err != nil {
		t.Fatalf("install cert-manager %s CRDs: %v", certManagerVersion, err)
	}

	warnings := &warningRecorder{}
	cfg := rest.CopyConfig(suite.cfg)
	cfg.WarningHandler = warnings
	c, err := client.New(cfg, client.Options{Scheme: clientgoscheme.Scheme})
	if err != nil {
		t.Fatal(err)
	}

	rendered := renderOverlays(t)
	// Namespaced objects cannot even be dry-run into a namespace that does not
	// exist (NamespaceLifecycle), so the Namespace, identical in every overlay,
	// is applied for real first. Nothing else is stored.
	for _, o := range rendered["base"] {
		if o.GetKind() == "Namespace" {
			if err := c.Apply(ctx, client.ApplyConfigurationFromUnstructured(o.DeepCopy()), client.FieldOwner(fieldManager), client.ForceOwnership); err != nil {
				t.Fatalf("apply Namespace %s: %v", o.GetName(), err)
			}
		}
	}

	for _, overlay := range append([]string{"base"}, deploy.Overlays...) {
		t.Run(overlay, func(t *testing.T) {
			var kinds []string
			for _, o := range rendered[overlay] {
				what := fmt.Sprintf("%s %s/%s", o.GetKind(), o.GetNamespace(), o.GetName())
				warnings.reset()
				// Applied as the manager that registered the test's webhook
				// configuration, so the dry-run replaces its clientConfig with the
				// manifest's instead of merging the two.
				result := o.DeepCopy()
				err := c.Apply(ctx, client.ApplyConfigurationFromUnstructured(result),
					client.FieldOwner(fieldManager), client.ForceOwnership, client.DryRunAll)
				if err != nil {
					t.Errorf("%s: server-side dry-run apply: %v", what, err)
					continue
				}
				if o.GetKind() == "MutatingWebhookConfiguration" {
					// What was validated is the manifest's clientConfig, not a mix with the test's.
					want, _, _ := unstructured.NestedSlice(o.Object, "webhooks")
					got, _, _ := unstructured.NestedSlice(result.Object, "webhooks")
					for i := range want {
						// Compared as JSON: the manifest decodes numbers as float64, the response as int64.
						if i >= len(got) || jsonOf(t, got[i].(map[string]any)["clientConfig"]) != jsonOf(t, want[i].(map[string]any)["clientConfig"]) {
							t.Errorf("%s: dry-run result's clientConfig differs from the manifest's:\n%v", what, got)
						}
					}
				}
				if w := warnings.get(); len(w) > 0 {
					t.Errorf("%s: API server warnings: %q", what, w)
				}
				kinds = append(kinds, o.GetKind())
			}
			t.Logf("%s: %d objects applied (dry-run): %s", overlay, len(kinds), strings.Join(kinds, ", "))
		})
	}

	// Control: warnings do reach the recorder. The Deployment without its
	// container securityContext draws Pod Security "restricted" warnings.
	for _, o := range rendered["base"] {
		if o.GetKind() != "Deployment" {
			continue
		}
		bad := o.DeepCopy()
		containers, _, _ := unstructured.NestedSlice(bad.Object, "spec", "template", "spec", "containers")
		delete(containers[0].(map[string]any), "securityContext")
		if err := unstructured.SetNestedSlice(bad.Object, containers, "spec", "template", "spec", "containers"); err != nil {
			t.Fatal(err)
		}
		warnings.reset()
		if err := c.Apply(ctx, client.ApplyConfigurationFromUnstructured(bad), client.FieldOwner(fieldManager), client.ForceOwnership, client.DryRunAll); err != nil {
			t.Fatalf("dry-run apply of the non-compliant Deployment: %v", err)
		}
		if w := strings.Join(warnings.get(), "\n"); !strings.Contains(w, `violate PodSecurity "restricted:latest"`) {
			t.Errorf("non-compliant Deployment: want a Pod Security warning, got %q", w)
		}
	}

	// The dry-runs stored nothing: no Deployment, and our webhook configuration
	// still points at the test's webhook process.
	var d appsv1.Deployment
	if err := c.Get(ctx, client.ObjectKey{Namespace: deploy.Namespace, Name: deploy.Name}, &d); !apierrors.IsNotFound(err) {
		t.Errorf("Deployment %s/%s: want NotFound after dry-runs, got %v", deploy.Namespace, deploy.Name, err)
	}
	u := &unstructured.Unstructured{}
	u.SetAPIVersion("admissionregistration.k8s.io/v1")
	u.SetKind("MutatingWebhookConfiguration")
	if err := c.Get(ctx, client.ObjectKey{Name: deploy.WebhookConfiguration}, u); err != nil {
		t.Fatal(err)
	}
	hooks, _, _ := unstructured.NestedSlice(u.Object, "webhooks")
	for _, h := range hooks {
		if url, _, _ := unstructured.NestedString(h.(map[string]any), "clientConfig", "url"); url != suite.webhook.mutateURL() {
			t.Errorf("webhook configuration changed by a dry-run: clientConfig.url = %q", url)
		}
	}
}

// certManagerCRDs downloads (or finds in the module cache) the cert-manager
// module and decodes its deploy/crds.
func certManagerCRDs(t *testing.T) []*apiextensionsv1.CustomResourceDefinition {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "mod", "download", "-json", certManagerModule+"@"+certManagerVersion)
	// Outside this module, so its go.mod and go.sum are left alone.
	cmd.Dir = t.TempDir()
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, runErr := cmd.Output()
	var mod struct{ Dir, Error string }
	if err := json.Unmarshal(out, &mod); err != nil || runErr != nil || mod.Error != "" || mod.Dir == "" {
		t.Fatalf("go mod download %s@%s: %v %s %s (the Go module proxy must be reachable, or the module cached)",
			certManagerModule, certManagerVersion, runErr, mod.Error, stderr.String())
	}
	files, err := filepath.Glob(filepath.Join(mod.Dir, "deploy", "crds", "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("%s@%s has no deploy/crds/*.yaml in %s (%v)", certManagerModule, certManagerVersion, mod.Dir, err)
	}
	var crds []*apiextensionsv1.CustomResourceDefinition
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var crd apiextensionsv1.CustomResourceDefinition
		if err := yaml.UnmarshalStrict(data, &crd); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		// deploy/crds are the sources of cert-manager's Helm chart: only their
		// metadata.labels are templated ('{{ template "cert-manager.name" . }}',
		// '{{ .Release.Name }}'), which the API server rejects as label values.
		// Replace them with what `helm template cert-manager` renders; the
		// schemas, which are what this case needs, are used as shipped.
		crd.Labels = map[string]string{
			"app":                        "cert-manager",
			"app.kubernetes.io/name":     "cert-manager",
			"app.kubernetes.io/instance": "cert-manager",
		}
		if check, _ := json.Marshal(&crd); bytes.Contains(check, []byte("{{")) {
			t.Fatalf("%s: Helm templating outside metadata.labels; the CRD cannot be used as is", f)
		}
		crds = append(crds, &crd)
	}
	return crds
}

// renderOverlays renders base and every overlay from a copy of deploy/ in
// which the self-signed component was generated by certgen, as `make certs`
// does (the checkout's deploy/self-signed/generated is git-ignored and may be
// absent or stale).
func renderOverlays(t *testing.T) map[string][]*unstructured.Unstructured {
	t.Helper()
	tmp := t.TempDir()
	if err := deploy.CopySources(tmp); err != nil {
		t.Fatal(err)
	}
	b, err := certgen.Generate(certgen.Options{Service: deploy.Name, Namespace: deploy.Namespace})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.WriteComponent(filepath.Join(tmp, deploy.OwnCertsOverlay, "generated"), certgen.ComponentOptions{
		Namespace: deploy.Namespace, SecretName: deploy.SecretName, WebhookConfiguration: deploy.WebhookConfiguration,
	}); err != nil {
		t.Fatal(err)
	}
	out := map[string][]*unstructured.Unstructured{}
	for _, name := range append([]string{"base"}, deploy.Overlays...) {
		data, err := deploy.Render(filepath.Join(tmp, name), deploy.Options{})
		if err != nil {
			t.Fatalf("render %s: %v", name, err)
		}
		objs, err := decodeManifests(data)
		if err != nil {
			t.Fatalf("decode %s: %v", name, err)
		}
		if len(objs) == 0 {
			t.Fatalf("%s renders nothing", name)
		}
		out[name] = objs
	}
	return out
}

// warningRecorder collects the API server's Warning headers.
type warningRecorder struct {
	mu   sync.Mutex
	msgs []string
}

func (w *warningRecorder) HandleWarningHeader(_ int, _ string, text string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.msgs = append(w.msgs, text)
}

func (w *warningRecorder) reset() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.msgs = nil
}

func (w *warningRecorder) get() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]string(nil), w.msgs...)
}

func jsonOf(t *testing.T, v any) string {
	t.Helper()
	data, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}
