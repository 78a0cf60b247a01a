//go:build e2e

package e2e

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/kustomize/api/types"
	"sigs.k8s.io/yaml"

	"github.com/depends-on/depends-on/certs/certgen"
	"github.com/depends-on/depends-on/deploy"
	"github.com/depends-on/depends-on/webhook"
)

// TestInstallVariants replaces the suite's kustomize install, one after the
// other, by the other ways to install depends-on, in the same cluster:
//
//  1. chart: helm install of deploy/chart/depends-on (cert-manager path), then
//     the docs' first example (testMyAppDNS);
//  2. self-signed-fresh-clone: kubectl apply -k deploy/self-signed of the
//     committed tree (git archive HEAD: what a fresh clone holds, no make certs),
//     the certs Job creates CA, Secret and caBundle, a Pod is injected;
//  3. rotation-under-load: annotated Pods keep being created while the Job runs
//     again twice (serving certificate, then a forced CA rotation) and every
//     webhook replica reloads: zero failed admissions.
//
// It runs after TestE2E (go test runs the files' tests in file-name order:
// cases_test.go, e2e_test.go, install_variants_test.go), sequentially, because
// the webhook configuration's name is cluster-wide. The webhook namespace is
// deleted between variants; on a cluster that is kept, the kustomize install
// is restored at the end.
func TestInstallVariants(t *testing.T) {
	requireSetup(t)
	t0 := time.Now()
	defer recordPhase("install variants: chart, self-signed, rotation", t0)
	helmBin := helmBinary(t)
	if !e.created || e.keep {
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
			defer cancel()
			err := uninstall(ctx, helmBin)
			if err == nil {
				err = e.installDependsOn(ctx)
			}
			if err != nil {
				t.Errorf("restoring the kustomize install: %v", err)
			}
		})
	}

	if !t.Run("chart", func(t *testing.T) { testChartInstall(t, helmBin) }) {
		t.Log("chart install failed; the self-signed variants start from a clean namespace anyway")
	}
	// The tree lives as long as this test: the rotation case re-applies it.
	clone := t.TempDir()
	if !t.Run("self-signed-fresh-clone", func(t *testing.T) { testSelfSignedFreshClone(t, helmBin, clone) }) {
		t.Fatal("the rotation case needs the self-signed install")
	}
	t.Run("rotation-under-load", func(t *testing.T) { testRotation(t, clone) })
}

// helmBinary: $HELM, else ./bin/helm (make helm), else helm in PATH; none fails.
func helmBinary(t *testing.T) string {
	t.Helper()
	for _, c := range []string{os.Getenv("HELM"), filepath.Join(e.root, "bin", "helm"), "helm"} {
		if c == "" {
			continue
		}
		if p, err := exec.LookPath(c); err == nil {
			return p
		}
	}
	t.Fatal("helm not found: set HELM or run make helm (make e2e does)")
	return ""
}

// uninstall removes whatever install is there: the webhook configuration
// first (so nothing is sent to a webhook going away), the Helm release, the
// certs Job's cluster-wide RBAC, then the namespace, waiting until it is gone.
func uninstall(ctx context.Context, helmBin string) error {
	t0 := time.Now()
	mwc := e.cs.AdmissionregistrationV1().MutatingWebhookConfigurations()
	if err := mwc.Delete(ctx, deploy.WebhookConfiguration, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
		return err
	}
	if out, err := e.run(ctx, "helm-status", helmBin, "--kubeconfig", e.kubeconfig, "-n", deploy.Namespace, "status", "depends-on"); err == nil {
		if _, err := e.run(ctx, "helm-uninstall", helmBin, "--kubeconfig", e.kubeconfig, "-n", deploy.Namespace, "uninstall", "depends-on", "--wait"); err != nil {
			return err
		}
	} else if !strings.Contains(out, "not found") {
		return err
	}
	// Cluster-scoped objects outlive the namespace: the certs Job's and the
	// readiness service's (helm refuses to adopt what kubectl apply created).
	rbac := e.cs.RbacV1()
	for _, name := range []string{"depends-on-certs", deploy.ReadinessName} {
		if err := rbac.ClusterRoleBindings().Delete(ctx, name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
			return err
		}
		if err := rbac.ClusterRoles().Delete(ctx, name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
			return err
		}
	}
	if err := e.cs.CoreV1().Namespaces().Delete(ctx, deploy.Namespace, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
		return err
	}
	err := retry(ctx, 3*time.Minute, time.Second, func() error {
		_, err := e.cs.CoreV1().Namespaces().Get(ctx, deploy.Namespace, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return nil
		}
		if err == nil {
			err = errors.New("namespace still terminating")
		}
		return err
	})
	e.logf("uninstalled depends-on in %s", since(t0))
	return err
}

// waitServing waits until the webhook Deployment is rolled out and a dry-run
// Pod comes back injected.
func waitServing(t *testing.T, ctx context.Context) {
	t.Helper()
	kubectl(t, ctx, "-n", deploy.Namespace, "rollout", "status", "deployment/"+deploy.Name, "--timeout=5m")
	if err := retry(ctx, 3*time.Minute, time.Second, func() error { return e.probeInjection(ctx) }); err != nil {
		t.Fatalf("the webhook does not inject: %v", err)
	}
}

func splitImage(img string) (repo, tag string) {
	if i := strings.LastIndex(img, ":"); i > strings.LastIndex(img, "/") {
		return img[:i], img[i+1:]
	}
	return img, "latest"
}

func testChartInstall(t *testing.T, helmBin string) {
	ctx := caseContext(t, 10*time.Minute)
	if err := uninstall(ctx, helmBin); err != nil {
		t.Fatal(err)
	}
	t0 := time.Now()
	// As the README's "Installing with Helm": the namespace first, labelled.
	kubectl(t, ctx, "create", "namespace", deploy.Namespace)
	kubectl(t, ctx, "label", "namespace", deploy.Namespace, "pod-security.kubernetes.io/enforce=restricted", "depends-on.dev/disabled=true")
	repo, tag := splitImage(e.img)
	waitRepo, waitTag := splitImage(e.waitImg)
	readinessRepo, readinessTag := splitImage(e.readinessImg)
	out, err := e.run(ctx, "helm-install", helmBin, "--kubeconfig", e.kubeconfig, "install", "depends-on",
		filepath.Join(e.root, "deploy", deploy.ChartDir), "--namespace", deploy.Namespace,
		"--set", "image.repository="+repo, "--set", "image.tag="+tag,
		"--set", "waitImage.repository="+waitRepo, "--set", "waitImage.tag="+waitTag,
		"--set", "readiness.image.repository="+readinessRepo, "--set", "readiness.image.tag="+readinessTag,
		"--wait", "--timeout", "5m")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("helm install:\n%s", out)
	if err := retry(ctx, 2*time.Minute, time.Second, func() error {
		mwc, err := e.cs.AdmissionregistrationV1().MutatingWebhookConfigurations().Get(ctx, deploy.WebhookConfiguration, metav1.GetOptions{})
		if err == nil && (len(mwc.Webhooks) == 0 || len(mwc.Webhooks[0].ClientConfig.CABundle) == 0) {
			err = errors.New("no caBundle yet")
		}
		if err == nil && len(mwc.Webhooks[0].MatchConditions) == 0 {
			return errors.New("matchConditions lost")
		}
		return err
	}); err != nil {
		t.Fatalf("webhook configuration: %v", err)
	}
	waitServing(t, ctx)
	e.logf("helm install: webhook serving in %s", since(t0))
	t.Run("myapp-pod-dns", testMyAppDNS)
}

// testSelfSignedFreshClone installs with the documented one command on the
// committed tree, exported into clone.
func testSelfSignedFreshClone(t *testing.T, helmBin, clone string) {
	ctx := caseContext(t, 10*time.Minute)
	if err := uninstall(ctx, helmBin); err != nil {
		t.Fatal(err)
	}
	// git archive HEAD: exactly the committed files, as a fresh clone has them
	// (no deploy/own-certs/generated, no build outputs).
	if _, err := e.run(ctx, "git-archive", "sh", "-c", fmt.Sprintf("git -C %q archive HEAD | tar -x -C %q", e.root, clone)); err != nil {
		t.Fatal(err)
	}
	// deploy/self-signed names depends-on/webhook:dev: give the e2e build that
	// name inside the node, so the command runs as a user types it.
	if err := e.tagInNode(ctx, e.img, deploy.WebhookImage+":dev"); err != nil {
		t.Fatal(err)
	}
	if err := e.tagInNode(ctx, e.readinessImg, deploy.ReadinessImage+":dev"); err != nil {
		t.Fatal(err)
	}
	t0 := time.Now()
	out := kubectl(t, ctx, "apply", "-k", filepath.Join(clone, "deploy", "self-signed"))
	t.Logf("kubectl apply -k deploy/self-signed:\n%s", out)
	kubectl(t, ctx, "-n", deploy.Namespace, "wait", "--for=condition=Complete", "job/depends-on-certs", "--timeout=3m")
	t.Logf("certs Job log:\n%s", kubectl(t, ctx, "-n", deploy.Namespace, "logs", "job/depends-on-certs"))
	waitServing(t, ctx)
	e.logf("kubectl apply -k deploy/self-signed: webhook serving in %s", since(t0))

	// The Secret the Job wrote chains to the caBundle it wrote, for the name the API server dials.
	bundle := caBundle(t, ctx)
	leaf := servingLeaf(t, ctx)
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(bundle)
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool, DNSName: deploy.Name + "." + deploy.Namespace + ".svc"}); err != nil {
		t.Errorf("serving certificate does not verify against the caBundle: %v", err)
	}

	// Least privilege, asked of the API server's authorizer.
	certsSA := "system:serviceaccount:" + deploy.Namespace + ":depends-on-certs"
	webhookSA := "system:serviceaccount:" + deploy.Namespace + ":" + deploy.Name
	for _, c := range []struct {
		as   string
		args []string
		want string
	}{
		{certsSA, []string{"update", "secret/" + deploy.SecretName}, "yes"},
		{certsSA, []string{"get", "secret/some-other-secret"}, "no"},
		{certsSA, []string{"list", "secrets"}, "no"},
		{certsSA, []string{"create", "secrets", "-n", "default"}, "no"},
		{certsSA, []string{"patch", "mutatingwebhookconfiguration/" + deploy.WebhookConfiguration}, "yes"},
		{certsSA, []string{"patch", "mutatingwebhookconfiguration/another"}, "no"},
		{certsSA, []string{"create", "pods"}, "no"},
		{webhookSA, []string{"get", "secret/" + deploy.SecretName}, "no"},
		{webhookSA, []string{"get", "pods"}, "no"},
	} {
		args := append([]string{"auth", "can-i", "-n", deploy.Namespace, "--as", c.as}, c.args...)
		out, _ := e.kubectlRun(ctx, "can-i", args...) // exits 1 for "no"
		// The answer is the last line: kubectl may print a warning before it
		// (a cluster-scoped resource asked with -n).
		lines := strings.Split(strings.TrimSpace(out), "\n")
		got := strings.TrimSpace(lines[len(lines)-1])
		if got != c.want {
			t.Errorf("kubectl auth can-i %s as %s: %q, want %s", strings.Join(c.args, " "), c.as, strings.TrimSpace(out), c.want)
		}
	}

}

// tagInNode gives an image loaded into the kind node a second name.
func (x *env) tagInNode(ctx context.Context, from, to string) error {
	if from == to {
		return nil
	}
	nodes, err := x.run(ctx, "kind-get-nodes", x.kind, "get", "nodes", "--name", x.cluster)
	if err != nil {
		return err
	}
	for _, node := range strings.Fields(nodes) {
		if _, err := x.run(ctx, "ctr-tag", x.docker, "exec", node, "ctr", "-n", "k8s.io", "images", "tag", "--force",
			containerdName(from), containerdName(to)); err != nil {
			return err
		}
	}
	return nil
}

// containerdName is the fully qualified reference containerd stores.
func containerdName(ref string) string {
	first, _, found := strings.Cut(ref, "/")
	switch {
	case !found:
		return "docker.io/library/" + ref
	case strings.ContainsAny(first, ".:") || first == "localhost":
		return ref
	default:
		return "docker.io/" + ref
	}
}

func caBundle(t *testing.T, ctx context.Context) []byte {
	t.Helper()
	mwc, err := e.cs.AdmissionregistrationV1().MutatingWebhookConfigurations().Get(ctx, deploy.WebhookConfiguration, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(mwc.Webhooks) == 0 || len(mwc.Webhooks[0].ClientConfig.CABundle) == 0 {
		t.Fatal("no caBundle")
	}
	if len(mwc.Webhooks[0].MatchConditions) == 0 {
		t.Error("the certs Job's patch lost the matchConditions")
	}
	return mwc.Webhooks[0].ClientConfig.CABundle
}

func servingLeaf(t *testing.T, ctx context.Context) *x509.Certificate {
	t.Helper()
	s, err := e.cs.CoreV1().Secrets(deploy.Namespace).Get(ctx, deploy.SecretName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	certs, err := certgen.ParseCertificates(s.Data["tls.crt"])
	if err != nil {
		t.Fatal(err)
	}
	return certs[0]
}

func countCAs(bundle []byte) int {
	n := 0
	for {
		var b *pem.Block
		b, bundle = pem.Decode(bundle)
		if b == nil {
			return n
		}
		n++
	}
}

// reloadLine is what controller-runtime's certwatcher logs when it serves a
// new certificate.
const reloadLine = "Updated current TLS certificate"

func reloads(t *testing.T, ctx context.Context, pod string) int {
	t.Helper()
	return strings.Count(logs(t, ctx, deploy.Namespace, pod, deploy.ContainerName, false), reloadLine)
}

func testRotation(t *testing.T, clone string) {
	ctx := caseContext(t, 12*time.Minute)
	ns := namespace(t, ctx, "rotation", nil)
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "dep"}, Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Port: 80}}}}
	if _, err := e.cs.CoreV1().Services(ns).Create(ctx, svc, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	// Load: an annotated Pod every 250 ms (held by a scheduling gate: admission
	// is what counts), until stop.
	var (
		created, failed atomic.Int64
		mu              sync.Mutex
		errs            []string
		wg              sync.WaitGroup
	)
	stop := make(chan struct{})
	loadDone := make(chan struct{})
	go func() {
		defer close(loadDone)
		ticker := time.NewTicker(250 * time.Millisecond)
		defer ticker.Stop()
		sem := make(chan struct{}, 16)
		for i := 0; ; i++ {
			select {
			case <-stop:
				wg.Wait()
				return
			case <-ticker.C:
			}
			sem <- struct{}{}
			wg.Add(1)
			go func(i int) {
				defer wg.Done()
				defer func() { <-sem }()
				p := tinyPod(fmt.Sprintf("load-%04d", i), map[string]string{webhook.AnnotationServices: "dep"})
				p.Labels = map[string]string{"e2e.depends-on.dev/role": "load"}
				p.Spec.SchedulingGates = []corev1.PodSchedulingGate{{Name: "e2e.depends-on.dev/hold"}}
				_, err := e.cs.CoreV1().Pods(ns).Create(ctx, p, metav1.CreateOptions{})
				if err != nil {
					failed.Add(1)
					mu.Lock()
					errs = append(errs, fmt.Sprintf("%s %s: %v", time.Now().UTC().Format("15:04:05.000"), p.Name, err))
					mu.Unlock()
					return
				}
				created.Add(1)
			}(i)
		}
	}()
	stopLoad := func() {
		select {
		case <-stop:
		default:
			close(stop)
		}
		<-loadDone
	}
	defer stopLoad()
	time.Sleep(3 * time.Second)

	var summary []string
	for _, run := range []struct {
		name     string
		rotateCA bool
	}{
		{"re-run of the Job (serving certificate)", false},
		{"Job with --ca-renew-before beyond the CA's life (CA rotation)", true},
	} {
		pods, err := webhookPods(ctx)
		if err != nil || len(pods) == 0 {
			t.Fatalf("webhook Pods: %v (%d)", err, len(pods))
		}
		before := map[string]int{}
		for _, p := range pods {
			before[p.Name] = reloads(t, ctx, p.Name)
		}
		oldBundle, oldLeaf := caBundle(t, ctx), servingLeaf(t, ctx)
		t0 := time.Now()
		if !run.rotateCA {
			// The documented rotation: delete the finished Job, apply again.
			kubectl(t, ctx, "-n", deploy.Namespace, "delete", "job", "depends-on-certs", "--ignore-not-found", "--wait")
			kubectl(t, ctx, "apply", "-k", filepath.Join(clone, "deploy", "self-signed"))
			kubectl(t, ctx, "-n", deploy.Namespace, "wait", "--for=condition=Complete", "job/depends-on-certs", "--timeout=3m")
		} else {
			name := createRotateCAJob(t, ctx)
			kubectl(t, ctx, "-n", deploy.Namespace, "wait", "--for=condition=Complete", "job/"+name, "--timeout=3m")
			t.Logf("%s log:\n%s", name, kubectl(t, ctx, "-n", deploy.Namespace, "logs", "job/"+name))
		}
		jobTook := time.Since(t0)
		newBundle, newLeaf := caBundle(t, ctx), servingLeaf(t, ctx)
		if newLeaf.SerialNumber.Cmp(oldLeaf.SerialNumber) == 0 {
			t.Fatalf("%s: the serving certificate did not change", run.name)
		}
		switch {
		case !run.rotateCA && string(newBundle) != string(oldBundle):
			t.Errorf("%s: the caBundle changed although the CA was kept", run.name)
		case run.rotateCA && countCAs(newBundle) != countCAs(oldBundle)+1:
			t.Errorf("%s: caBundle holds %d CAs, want %d (old and new)", run.name, countCAs(newBundle), countCAs(oldBundle)+1)
		}
		// Every replica serves the new certificate (certwatcher logged it).
		var reloadTook time.Duration
		for _, p := range pods {
			if err := retry(ctx, 4*time.Minute, 2*time.Second, func() error {
				if n := reloads(t, ctx, p.Name); n <= before[p.Name] {
					return fmt.Errorf("webhook Pod %s has not reloaded (%d %q lines)", p.Name, n, reloadLine)
				}
				return nil
			}); err != nil {
				t.Fatal(err)
			}
			reloadTook = max(reloadTook, time.Since(t0))
		}
		line := fmt.Sprintf("%s: Job %s, every replica reloaded %s after it started; caBundle %d CA(s)",
			run.name, jobTook.Round(100*time.Millisecond), reloadTook.Round(time.Second), countCAs(newBundle))
		t.Log(line)
		summary = append(summary, line)
		time.Sleep(3 * time.Second) // and the load keeps going on the new certificate
	}
	stopLoad()

	note := fmt.Sprintf("certificate rotation under load: %d annotated Pods created, %d failed admissions; %s",
		created.Load(), failed.Load(), strings.Join(summary, "; "))
	results.Lock()
	results.notes = append(results.notes, note)
	results.Unlock()
	t.Log(note)
	if n := failed.Load(); n > 0 {
		mu.Lock()
		k := min(len(errs), 10)
		t.Fatalf("%d Pod creations failed during the rotations; first %d:\n%s", n, k, strings.Join(errs[:k], "\n"))
	}
	list, err := e.cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "e2e.depends-on.dev/role=load"})
	if err != nil {
		t.Fatal(err)
	}
	notInjected := 0
	for i := range list.Items {
		if _, ok := list.Items[i].Annotations[webhook.AnnotationInjected]; !ok {
			notInjected++
		}
	}
	if int64(len(list.Items)) != created.Load() || notInjected > 0 || created.Load() < 100 {
		t.Fatalf("%d Pods listed (created %d), %d without injection", len(list.Items), created.Load(), notInjected)
	}
	_ = e.cs.CoreV1().Pods(ns).DeleteCollection(ctx, metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](0)},
		metav1.ListOptions{LabelSelector: "e2e.depends-on.dev/role=load"})
}

// createRotateCAJob runs the certs Job of deploy/self-signed (rendered with
// the e2e image) under another name, with a renewal window longer than the
// CA's life, which forces a CA rotation.
func createRotateCAJob(t *testing.T, ctx context.Context) string {
	t.Helper()
	img, err := deploy.ParseImage(e.img, deploy.WebhookImage)
	if err != nil {
		t.Fatal(err)
	}
	out, err := deploy.RenderEmbedded("self-signed", deploy.Options{Images: []types.Image{img}})
	if err != nil {
		t.Fatal(err)
	}
	var job *batchv1.Job
	for _, doc := range strings.Split(string(out), "\n---\n") {
		if !strings.Contains(doc, "kind: Job\n") {
			continue
		}
		job = &batchv1.Job{}
		if err := yaml.UnmarshalStrict([]byte(doc), job); err != nil {
			t.Fatal(err)
		}
	}
	if job == nil {
		t.Fatal("deploy/self-signed renders no Job")
	}
	job.Name = "depends-on-certs-rotate-ca"
	c := &job.Spec.Template.Spec.Containers[0]
	c.Args = append(c.Args, "--ca-renew-before=876000h")
	if _, err := e.cs.BatchV1().Jobs(deploy.Namespace).Create(ctx, job, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	return job.Name
}
