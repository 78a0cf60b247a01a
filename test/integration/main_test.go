package integration

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/depends-on/depends-on/certs/certgen"
	"github.com/depends-on/depends-on/deploy"
	"github.com/depends-on/depends-on/webhook"
)

const (
	// modulePath identifies the repository root (its go.mod) from the test's working directory.
	modulePath = "github.com/depends-on/depends-on"
	// fieldManager applies the webhook configuration at start and the deploy/
	// manifests in the dry-run case: with the same manager, a dry-run apply of
	// deploy/'s configuration replaces the test's clientConfig instead of merging into it.
	fieldManager = "depends-on-integration"
	// controlPlaneTimeout bounds etcd's and kube-apiserver's start and stop:
	// envtest's 20s default is too short on a loaded 2-core CI machine.
	controlPlaneTimeout = 3 * time.Minute
	// activeTimeout bounds how long the API server may take to start calling a
	// webhook after its configuration was written (its informer must see it).
	activeTimeout = time.Minute
)

// envtestBinaries are what KUBEBUILDER_ASSETS must hold.
var envtestBinaries = []string{"kube-apiserver", "etcd", "kubectl"}

// suite is the state TestMain sets up for every case.
var suite *testSuite

type testSuite struct {
	repoRoot string
	cfg      *rest.Config
	client   client.Client
	// ca signs the webhook's serving certificates (and the reinvocation test
	// webhook's); its certificate is the caBundle of both configurations.
	ca      *certgen.CA
	webhook *webhookProcess
	// webhookConfig is deploy/base's MutatingWebhookConfiguration as rendered,
	// before the clientConfig is rewritten.
	webhookConfig *unstructured.Unstructured
}

func TestMain(m *testing.M) {
	os.Exit(runTests(m))
}

func runTests(m *testing.M) int {
	start := time.Now()
	assets, err := envtestAssets()
	if err != nil {
		fmt.Fprintf(os.Stderr, "FAIL: integration tests: %v\n", err)
		return 1
	}
	tmp, err := os.MkdirTemp("", "depends-on-integration-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "FAIL:", err)
		return 1
	}
	defer os.RemoveAll(tmp)

	s, stop, err := setUp(assets, tmp)
	if stop != nil {
		defer func() {
			if err := stop(); err != nil {
				fmt.Fprintln(os.Stderr, "integration: teardown:", err)
			}
		}()
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "FAIL: integration tests: set-up: %v\n", err)
		if s != nil && s.webhook != nil {
			fmt.Fprintf(os.Stderr, "webhook log tail:\n%s\n", s.webhook.logTail(60))
		}
		return 1
	}
	suite = s
	fmt.Fprintf(os.Stderr, "integration: set-up took %s (assets %s, webhook built with race detector: %v)\n",
		time.Since(start).Round(time.Millisecond), assets, raceEnabled)
	code := m.Run()
	if err := s.webhook.stop(); err != nil {
		fmt.Fprintf(os.Stderr, "FAIL: integration tests: %v\n", err)
		code = 1
	}
	if log, _ := os.ReadFile(s.webhook.logPath); bytes.Contains(log, []byte("WARNING: DATA RACE")) {
		fmt.Fprintf(os.Stderr, "FAIL: integration tests: the webhook process reported a data race:\n%s\n", log)
		code = 1
	}
	return code
}

// envtestAssets returns KUBEBUILDER_ASSETS after checking the binaries are there.
func envtestAssets() (string, error) {
	const hint = "run `make test-integration` (it sets KUBEBUILDER_ASSETS with setup-envtest when it is empty), " +
		"or export KUBEBUILDER_ASSETS=<directory holding kube-apiserver, etcd and kubectl>"
	dir := os.Getenv("KUBEBUILDER_ASSETS")
	if dir == "" {
		return "", fmt.Errorf("KUBEBUILDER_ASSETS is not set: the integration tier needs a real kube-apiserver and etcd; %s", hint)
	}
	var missing []string
	for _, b := range envtestBinaries {
		fi, err := os.Stat(filepath.Join(dir, b))
		if err != nil || fi.IsDir() || fi.Mode().Perm()&0o111 == 0 {
			missing = append(missing, b)
		}
	}
	if len(missing) > 0 {
		return "", fmt.Errorf("KUBEBUILDER_ASSETS=%s lacks executable %s; %s", dir, strings.Join(missing, ", "), hint)
	}
	return dir, nil
}

// setUp builds the webhook, starts the control plane and the webhook, and
// registers the webhook. stop undoes whatever was started, even on error.
func setUp(assets, tmp string) (s *testSuite, stop func() error, err error) {
	s = &testSuite{}
	var stops []func() error
	stop = func() error {
		var errs []error
		for i := len(stops) - 1; i >= 0; i-- {
			errs = append(errs, stops[i]())
		}
		return errors.Join(errs...)
	}

	if s.repoRoot, err = repoRoot(); err != nil {
		return s, stop, err
	}
	bin := filepath.Join(tmp, "webhook")
	args := []string{"build", "-o", bin}
	if raceEnabled {
		// Under go test -race the webhook runs with the race detector too; a
		// report fails the run (see runTests).
		args = append(args, "-race")
	}
	build := exec.Command("go", append(args, "./cmd/webhook")...)
	build.Dir = s.repoRoot
	if out, err := build.CombinedOutput(); err != nil {
		return s, stop, fmt.Errorf("go build ./cmd/webhook: %v\n%s", err, out)
	}

	env := &envtest.Environment{
		BinaryAssetsDirectory:    assets,
		ControlPlaneStartTimeout: controlPlaneTimeout,
		ControlPlaneStopTimeout:  controlPlaneTimeout,
		ErrorIfCRDPathMissing:    true,
	}
	s.cfg, err = env.Start()
	if err != nil {
		return s, stop, fmt.Errorf("start envtest (kube-apiserver and etcd from %s): %w", assets, err)
	}
	stops = append(stops, env.Stop)
	s.cfg.WarningHandler = rest.NoWarnings{}
	if s.client, err = client.New(s.cfg, client.Options{Scheme: clientgoscheme.Scheme}); err != nil {
		return s, stop, err
	}

	if s.ca, err = certgen.NewCA("depends-on-integration-ca", 0); err != nil {
		return s, stop, err
	}
	s.webhook = &webhookProcess{
		bin:     bin,
		certDir: filepath.Join(tmp, "certs"),
		logPath: filepath.Join(tmp, "webhook.log"),
	}
	if err := s.issueServingCert(); err != nil {
		return s, stop, err
	}
	if err := s.webhook.startFresh(); err != nil {
		return s, stop, err
	}
	stops = append(stops, s.webhook.stop)

	if s.webhookConfig, err = renderedWebhookConfiguration(); err != nil {
		return s, stop, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*activeTimeout)
	defer cancel()
	if err := s.registerWebhook(ctx); err != nil {
		return s, stop, err
	}
	if err := s.waitWebhookActive(ctx); err != nil {
		return s, stop, err
	}
	return s, stop, nil
}

// repoRoot walks up from the working directory (test/integration when run by
// go test) to the go.mod of this module.
func repoRoot() (string, error) {
	wd, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for d := wd; ; d = filepath.Dir(d) {
		if data, err := os.ReadFile(filepath.Join(d, "go.mod")); err == nil && bytes.Contains(data, []byte("module "+modulePath+"\n")) {
			return d, nil
		}
		if filepath.Dir(d) == d {
			return "", fmt.Errorf("go.mod of %s not found above %s", modulePath, wd)
		}
	}
}

// issueServingCert writes a fresh certificate for 127.0.0.1, signed by the
// suite's CA, into the webhook's --cert-dir (atomically, file by file).
func (s *testSuite) issueServingCert() error {
	b, err := certgen.Generate(certgen.Options{CA: s.ca, NoService: true, Hosts: []string{"127.0.0.1"}})
	if err != nil {
		return err
	}
	return b.WriteFiles(s.webhook.certDir)
}

// renderedWebhookConfiguration renders deploy/base with the project's
// renderer and returns its MutatingWebhookConfiguration.
func renderedWebhookConfiguration() (*unstructured.Unstructured, error) {
	dir, err := deploy.Dir()
	if err != nil {
		return nil, err
	}
	out, err := deploy.Render(filepath.Join(dir, "base"), deploy.Options{})
	if err != nil {
		return nil, err
	}
	objs, err := decodeManifests(out)
	if err != nil {
		return nil, err
	}
	for _, o := range objs {
		if o.GetKind() == "MutatingWebhookConfiguration" && o.GetName() == deploy.WebhookConfiguration {
			return o, nil
		}
	}
	return nil, fmt.Errorf("deploy/base renders no MutatingWebhookConfiguration %q", deploy.WebhookConfiguration)
}

// decodeManifests splits multi-document YAML into objects.
func decodeManifests(data []byte) ([]*unstructured.Unstructured, error) {
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
	var objs []*unstructured.Unstructured
	for {
		u := &unstructured.Unstructured{}
		if err := dec.Decode(&u.Object); err != nil {
			if errors.Is(err, io.EOF) {
				return objs, nil
			}
			return nil, err
		}
		if len(u.Object) > 0 {
			objs = append(objs, u)
		}
	}
}

// registerWebhook applies deploy/base's MutatingWebhookConfiguration with
// every webhook's clientConfig replaced by the local URL and the suite's CA.
// Nothing else is changed: rules, namespaceSelector, matchConditions,
// failurePolicy, reinvocationPolicy and timeouts are the project's.
func (s *testSuite) registerWebhook(ctx context.Context) error {
	u := s.webhookConfig.DeepCopy()
	hooks, _, err := unstructured.NestedSlice(u.Object, "webhooks")
	if err != nil || len(hooks) == 0 {
		return fmt.Errorf("webhook configuration has no webhooks (%v)", err)
	}
	for i := range hooks {
		h := hooks[i].(map[string]any)
		h["clientConfig"] = map[string]any{
			"url":      s.webhook.mutateURL(),
			"caBundle": base64.StdEncoding.EncodeToString(s.ca.CertPEM),
		}
	}
	if err := unstructured.SetNestedSlice(u.Object, hooks, "webhooks"); err != nil {
		return err
	}
	return s.client.Apply(ctx, client.ApplyConfigurationFromUnstructured(u), client.FieldOwner(fieldManager), client.ForceOwnership)
}

// restartWebhook starts the stopped webhook again on its ports or, if one was
// taken meanwhile, on new ones, re-registering the configuration.
func (s *testSuite) restartWebhook(ctx context.Context) error {
	if err := s.webhook.start(); err != nil {
		fmt.Fprintf(os.Stderr, "integration: restart on the same ports failed (%v); trying new ports\n", err)
		if err := s.webhook.startFresh(); err != nil {
			return err
		}
		if err := s.registerWebhook(ctx); err != nil {
			return err
		}
	}
	return s.waitWebhookActive(ctx)
}

// waitWebhookActive returns once the API server calls the webhook: a
// server-side dry-run create of an annotated Pod comes back injected.
func (s *testSuite) waitWebhookActive(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, activeTimeout)
	defer cancel()
	var last error
	for {
		pod := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{
				Name: "probe", Namespace: metav1.NamespaceDefault,
				Annotations: map[string]string{webhook.AnnotationServices: "probe"},
			},
			Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "busybox:1.28"}}},
		}
		err := s.client.Create(ctx, pod, client.DryRunAll)
		if err == nil {
			if _, ok := pod.Annotations[webhook.AnnotationInjected]; ok {
				return nil
			}
			err = errors.New("dry-run Pod came back without injection")
		}
		last = err
		select {
		case <-ctx.Done():
			return fmt.Errorf("the API server did not start calling the webhook within %s: %v", activeTimeout, last)
		case <-time.After(200 * time.Millisecond):
		}
	}
}
