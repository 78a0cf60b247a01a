package integration

import (
	"context"
	"encoding/base64"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/depends-on/depends-on/deploy"
	"github.com/depends-on/depends-on/test/internal/readinessenv"
	"github.com/depends-on/depends-on/test/testutil"
	"github.com/depends-on/depends-on/webhook"
)

// labelSatisfiedIT selects the namespaces the webhook of TestSatisfied
// serves (the suite's webhook is excluded from them with labelDisabled).
const labelSatisfiedIT = "depends-on.dev/it-satisfied"

// TestSatisfied runs the real readiness service (allowing the webhook's
// ServiceAccount on /v1/status, as deploy/readiness does) and a second real
// webhook that asks it with a projected token of that ServiceAccount, bound
// to a Pod, registered through the API server for one namespace.
func TestSatisfied(t *testing.T) {
	ctx := testCtx(t)
	dir := t.TempDir()
	webhookUser := "system:serviceaccount:" + deploy.Namespace + ":" + deploy.Name

	bin, err := readinessenv.Build(suite.repoRoot, dir, raceEnabled)
	if err != nil {
		t.Fatal(err)
	}
	kubeconfig, err := readinessenv.Install(ctx, suite.cfg, suite.client, dir)
	if err != nil {
		t.Fatal(err)
	}
	rp, err := readinessenv.NewProcess(bin, kubeconfig, dir, suite.ca)
	if err != nil {
		t.Fatal(err)
	}
	rp.ExtraArgs = []string{"--status-clients=" + webhookUser}
	if err := rp.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = rp.Stop()
		if t.Failed() {
			t.Logf("readiness log tail:\n%s", rp.LogTail(40))
		}
	})
	cs, err := kubernetes.NewForConfig(suite.cfg)
	if err != nil {
		t.Fatal(err)
	}

	// The webhook's token, as the Deployment's projected volume holds it:
	// bound to a Pod of its ServiceAccount (restricted, as depends-on-system
	// enforces once another case applied the manifests).
	const tokenPod = "depends-on-webhook-satisfied-it"
	if _, err := cs.CoreV1().ServiceAccounts(deploy.Namespace).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: deploy.Name}}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	wp := testutil.Restricted(simplePod(deploy.Namespace, tokenPod, nil))
	wp.Spec.ServiceAccountName = deploy.Name
	if err := suite.client.Create(ctx, wp); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	_, token, err := readinessenv.PodToken(ctx, cs, deploy.Namespace, deploy.Name, tokenPod)
	if err != nil {
		t.Fatal(err)
	}
	tokenFile := filepath.Join(dir, "token")
	caFile := filepath.Join(dir, "ca.crt")
	if err := os.WriteFile(tokenFile, []byte(token), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(caFile, suite.ca.CertPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	wh := &webhookProcess{bin: suite.webhook.bin, certDir: suite.webhook.certDir, logPath: filepath.Join(dir, "webhook.log"),
		extraArgs: []string{"--readiness-url=" + rp.URL(), "--readiness-ca-file=" + caFile, "--satisfied-token-file=" + tokenFile,
			"--satisfied-ttl=2s"}}
	if err := wh.startFresh(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("satisfied webhook log tail:\n%s", wh.logTail(40))
		}
		_ = wh.stop()
	})
	ns := newNamespace(t, map[string]string{labelDisabled: "true", labelSatisfiedIT: "true"})
	registerNamespaceWebhook(t, wh, ns)

	migrate := createJob(t, cs, ns, "migrate")
	completeJob(t, cs, migrate)
	createJob(t, cs, ns, "pending")
	other := createJob(t, cs, ns, "other")
	completeJob(t, cs, other)

	jobs := func(v string) map[string]string { return map[string]string{webhook.AnnotationJobs: v} }
	// pod is simplePod with the ServiceAccount set, as the API server's
	// ServiceAccount plugin (not run by envtest) would: the injected token
	// volume needs one.
	pod := func(name string, annotations map[string]string) *corev1.Pod {
		p := simplePod(ns, name, annotations)
		p.Spec.ServiceAccountName = "default"
		return p
	}
	record := func(targets ...string) string {
		return testutil.WithoutHashes(`{"version":2,"initContainers":[],"satisfied":{"checked":["` + strings.Join(targets, `","`) + `"]}}`)
	}

	t.Run("completed Job: admitted without the wait container, the record says why", func(t *testing.T) {
		// The first ask opens the readiness service's watch; it may miss the
		// admission deadline (then the Pod is injected, as it must be). A
		// dry run warms it, then the Pod is created.
		waitUntil(t, 15*time.Second, func() bool {
			p := pod("warm", jobs("migrate"))
			return suite.client.Create(ctx, p, client.DryRunAll) == nil && len(p.Spec.InitContainers) == 0
		})
		p := pod("web", jobs("migrate"))
		createPod(t, p)
		got := getPod(t, ns, "web")
		if len(got.Spec.InitContainers) != 0 || len(got.Spec.Volumes) > 1 { // the API server's token volume only
			t.Errorf("init containers %v, volumes %v", names(got.Spec.InitContainers), got.Spec.Volumes)
		}
		want := record("job:" + ns + "/migrate")
		if r := got.Annotations[webhook.AnnotationInjected]; testutil.WithoutHashes(r) != want {
			t.Errorf("record %s, want %s", r, want)
		}

		// Re-created from what was stored: the same answer.
		again := got.DeepCopy()
		again.ObjectMeta = metav1.ObjectMeta{Name: "web-again", Namespace: ns, Annotations: got.Annotations}
		createPod(t, again)
		if g := getPod(t, ns, "web-again"); len(g.Spec.InitContainers) != 0 || testutil.WithoutHashes(g.Annotations[webhook.AnnotationInjected]) != want {
			t.Errorf("re-created: init containers %v, record %s", names(g.Spec.InitContainers), g.Annotations[webhook.AnnotationInjected])
		}
	})

	t.Run("incomplete Job: injected", func(t *testing.T) {
		p := pod("waits", jobs("migrate, pending"))
		createPod(t, p)
		expectWaitContainer(t, getPod(t, ns, "waits"))
	})

	t.Run("object and network dependencies: injected", func(t *testing.T) {
		p := pod("mixed", map[string]string{webhook.AnnotationJobs: "migrate", webhook.AnnotationServices: "db:5432"})
		createPod(t, p)
		expectWaitContainer(t, getPod(t, ns, "mixed"))
	})

	t.Run("readiness service stopped: injected", func(t *testing.T) {
		if err := rp.Stop(); err != nil {
			t.Fatal(err)
		}
		// A target never asked, and (after the 2s TTL) one that was.
		p := pod("unasked", jobs("other"))
		createPod(t, p)
		expectWaitContainer(t, getPod(t, ns, "unasked"))
		time.Sleep(2100 * time.Millisecond)
		start := time.Now()
		p = pod("expired", jobs("migrate"))
		createPod(t, p)
		t.Logf("create with the readiness service down took %s", time.Since(start).Round(time.Millisecond))
		expectWaitContainer(t, getPod(t, ns, "expired"))
	})

	t.Run("watch not synced (unknown): injected, then skipped once it is", func(t *testing.T) {
		// The readiness service back, answering unknown for a target whose
		// watch has not listed it within 1ms: a watch it opens on that ask.
		rp.ExtraArgs = append(rp.ExtraArgs, "--status-sync-wait=1ms")
		if err := rp.Start(); err != nil {
			t.Fatal(err)
		}
		third := createJob(t, cs, ns, "third")
		completeJob(t, cs, third)
		time.Sleep(1100 * time.Millisecond) // the webhook forgets the outage after 1s
		before, err := wh.scrape(ctx)
		if err != nil {
			t.Fatal(err)
		}
		createPod(t, pod("unsynced", jobs("third")))
		expectWaitContainer(t, getPod(t, ns, "unsynced"))
		after, err := wh.scrape(ctx)
		if err != nil {
			t.Fatal(err)
		}
		unknown := map[string]string{"result": "unknown"}
		if d := after.sum("depends_on_satisfied_checks_total", unknown) - before.sum("depends_on_satisfied_checks_total", unknown); d != 1 {
			t.Errorf("unknown checks +%v, want +1", d)
		}
		// Unknown is not kept: the next Pods ask again and, the watch synced, skip.
		waitUntil(t, 15*time.Second, func() bool {
			p := pod("later", jobs("third"))
			return suite.client.Create(ctx, p, client.DryRunAll) == nil && len(p.Spec.InitContainers) == 0
		})
	})

	m, err := wh.scrape(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name  string
		match map[string]string
	}{
		{"depends_on_satisfied_checks_total", map[string]string{"result": "satisfied"}},
		{"depends_on_satisfied_checks_total", map[string]string{"result": "not-satisfied"}},
		{"depends_on_satisfied_checks_total", map[string]string{"result": "error"}},
		{"depends_on_admission_decisions_total", map[string]string{"decision": "patched", "reason": "satisfied"}},
	} {
		if m.sum(c.name, c.match) < 1 {
			t.Errorf("%s%v not counted", c.name, c.match)
		}
	}
	t.Logf("checks: satisfied hit %v miss %v, not-satisfied %v, unknown %v, error %v",
		m.sum("depends_on_satisfied_checks_total", map[string]string{"result": "satisfied", "cache": "hit"}),
		m.sum("depends_on_satisfied_checks_total", map[string]string{"result": "satisfied", "cache": "miss"}),
		m.sum("depends_on_satisfied_checks_total", map[string]string{"result": "not-satisfied"}),
		m.sum("depends_on_satisfied_checks_total", map[string]string{"result": "unknown"}),
		m.sum("depends_on_satisfied_checks_total", map[string]string{"result": "error"}))
}

func expectWaitContainer(t *testing.T, p *corev1.Pod) {
	t.Helper()
	if len(p.Spec.InitContainers) != 1 || p.Spec.InitContainers[0].Name != webhook.WaitContainerName ||
		strings.Contains(p.Annotations[webhook.AnnotationInjected], "satisfied") {
		t.Errorf("%s: init containers %v, record %s: want the wait container", p.Name, names(p.Spec.InitContainers), p.Annotations[webhook.AnnotationInjected])
	}
}

// registerNamespaceWebhook registers w, with deploy/base's configuration
// renamed and its namespaceSelector narrowed to ns, and waits until the API
// server calls it.
func registerNamespaceWebhook(t *testing.T, w *webhookProcess, ns string) {
	t.Helper()
	ctx := testCtx(t)
	u := suite.webhookConfig.DeepCopy()
	u.SetName("depends-on-satisfied-it")
	hooks, _, _ := unstructured.NestedSlice(u.Object, "webhooks")
	for i := range hooks {
		h := hooks[i].(map[string]any)
		h["clientConfig"] = map[string]any{"url": w.mutateURL(), "caBundle": base64.StdEncoding.EncodeToString(suite.ca.CertPEM)}
		h["namespaceSelector"] = map[string]any{"matchLabels": map[string]any{labelSatisfiedIT: "true", "kubernetes.io/metadata.name": ns}}
	}
	if err := unstructured.SetNestedSlice(u.Object, hooks, "webhooks"); err != nil {
		t.Fatal(err)
	}
	if err := suite.client.Apply(ctx, client.ApplyConfigurationFromUnstructured(u), client.FieldOwner(fieldManager), client.ForceOwnership); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = suite.client.Delete(context.Background(), u) })
	waitUntil(t, activeTimeout, func() bool {
		p := simplePod(ns, "probe", map[string]string{webhook.AnnotationServices: "probe"})
		err := suite.client.Create(ctx, p, client.DryRunAll)
		return err == nil && len(p.Spec.InitContainers) == 1
	}, func() string { return fmt.Sprintf("webhook at %s not called for namespace %s", w.mutateURL(), ns) })
}
