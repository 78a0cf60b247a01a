//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/yaml"

	"github.com/depends-on/depends-on/deploy"
	"github.com/depends-on/depends-on/webhook"
)

// `depends-on inject` (cmd/depends-on, the binary shipped in the webhook
// image), run with the deployed webhook's own injection flags, gives for a
// Deployment exactly the Pod the API server stores after admission.
//
// The stored Pod went through every mutating admission plugin and the
// API server's defaulting: the ServiceAccount plugin's kube-api-access-<random>
// volume and its mounts in the user's containers, terminationMessagePath,
// imagePullPolicy, dnsPolicy, tolerations, ... The CLI applies none of that.
// So the comparison is in two parts:
//
//  1. Exactly, field by field, what depends-on owns, with no defaulting on
//     either side: every depends-on.dev/ annotation (the injected record
//     included), the injected init containers (named by the record) whole and
//     at the head of initContainers, the injected volumes (named by the
//     record) whole, and in every app container the mounts of those volumes.
//     The webhook writes these fully defaulted, so if the API server had to
//     add anything to them, this part fails.
//     One thing in them is not depends-on's and is set aside: a mount of the
//     ServiceAccount plugin's kube-api-access-<random> volume, which that
//     plugin adds to every container when the API server re-runs it after the
//     webhooks. Whether depends-on's containers may keep it is asserted by the
//     object cases (wantObjectWait: no API token in the wait container).
//  2. Everything else, after the same defaulting: the CLI's Pod template is
//     created as a Pod with dryRun=All in the same namespace, so the same API
//     server defaults it and runs the same admission chain (the webhook sees
//     its own record), and that Pod's spec must equal the stored Pod's spec.
//     Only what differs per Pod is set aside: the ServiceAccount volume's
//     random suffix, nodeName (the stored Pod is scheduled), the order of
//     volumes and of mounts (the ServiceAccount plugin appends its own before
//     the webhook's on the stored Pod and after the CLI's on the dry-run; no
//     mount path here is nested in another, so the order means nothing), and
//     metadata other than annotations and labels (pod-template-hash is the
//     ReplicaSet's).
func testInjectCLI(t *testing.T) {
	ctx := caseContext(t, 5*time.Minute)
	ns := objectNamespace(t, ctx, "inject-cli")
	// The files the CLI reads, in a directory its uid (65532) may enter.
	dir := filepath.Join(t.TempDir(), "in")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	d := injectCLIDeployment()
	raw, err := yaml.Marshal(d)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "deployment.yaml"), raw, 0o644); err != nil {
		t.Fatal(err)
	}
	args := append([]string{"inject", "-f", "/in/deployment.yaml", "--namespace", ns},
		webhookInjectionFlags(t, ctx, dir, "/in")...)
	out := runShippedCLI(t, ctx, dir, args...)
	t.Logf("depends-on %s (the binary in %s)", strings.Join(args, " "), e.img)
	var rendered appsv1.Deployment
	if err := yaml.UnmarshalStrict([]byte(out), &rendered); err != nil {
		t.Fatalf("depends-on inject output: %v\n%s", err, out)
	}
	want := rendered.Spec.Template

	// The real thing: the Deployment as the user wrote it; its Pod is what
	// the API server stores after admission.
	if _, err := e.cs.AppsV1().Deployments(ns).Create(ctx, d, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	var stored corev1.Pod
	if err := retry(ctx, 2*time.Minute, 500*time.Millisecond, func() error {
		list, err := e.cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/name=shop"})
		if err != nil {
			return err
		}
		if len(list.Items) != 1 {
			return fmt.Errorf("%d Pods of shop", len(list.Items))
		}
		stored = list.Items[0]
		return nil
	}); err != nil {
		t.Fatal(err)
	}

	// 1. depends-on's parts, exactly.
	record := stored.Annotations[webhook.AnnotationInjected]
	if record == "" {
		t.Fatalf("stored Pod %s carries no %s", stored.Name, webhook.AnnotationInjected)
	}
	var rec struct {
		InitContainers []string `json:"initContainers"`
		Volumes        []string `json:"volumes"`
	}
	if err := yaml.Unmarshal([]byte(record), &rec); err != nil {
		t.Fatalf("%s: %v", record, err)
	}
	if got, wantNames := rec.InitContainers, []string{webhook.WaitContainerName, webhook.FetchContainerName}; strings.Join(got, ",") != strings.Join(wantNames, ",") {
		t.Errorf("record names init containers %v, want %v (the Deployment waits and fetches)", got, wantNames)
	}
	if got, wantNames := rec.Volumes, []string{webhook.ReadinessTokenVolumeName, webhook.FetchVolumeName}; !sameSet(got, wantNames) {
		t.Errorf("record names volumes %v, want %v", got, wantNames)
	}
	if got, w := prefixed(stored.Annotations, webhook.Prefix), prefixed(want.Annotations, webhook.Prefix); !apiequality.Semantic.DeepEqual(got, w) {
		t.Errorf("depends-on.dev/ annotations differ:\nstored: %v\nCLI:    %v", got, w)
	}
	for i, name := range rec.InitContainers {
		if i >= len(stored.Spec.InitContainers) || i >= len(want.Spec.InitContainers) {
			t.Fatalf("init container %s missing: stored %d, CLI %d init containers", name, len(stored.Spec.InitContainers), len(want.Spec.InitContainers))
		}
		s, c := withoutAPIToken(stored.Spec.InitContainers[i]), want.Spec.InitContainers[i]
		if s.Name != name || c.Name != name {
			t.Errorf("init container %d: stored %s, CLI %s, want %s first", i, s.Name, c.Name, name)
		}
		if !apiequality.Semantic.DeepEqual(s, c) {
			t.Errorf("injected init container %s differs:\nstored: %s\nCLI:    %s", name, toYAML(s), toYAML(c))
		}
	}
	for _, name := range rec.Volumes {
		s, c := volume(stored.Spec.Volumes, name), volume(want.Spec.Volumes, name)
		if s == nil || c == nil || !apiequality.Semantic.DeepEqual(*s, *c) {
			t.Errorf("injected volume %s differs:\nstored: %s\nCLI:    %s", name, toYAML(s), toYAML(c))
		}
	}
	if len(stored.Spec.Containers) != len(want.Spec.Containers) {
		t.Fatalf("stored Pod has %d containers, the CLI %d", len(stored.Spec.Containers), len(want.Spec.Containers))
	}
	for i := range want.Spec.Containers {
		s := mountsOf(stored.Spec.Containers[i].VolumeMounts, rec.Volumes)
		c := mountsOf(want.Spec.Containers[i].VolumeMounts, rec.Volumes)
		if len(c) == 0 || !apiequality.Semantic.DeepEqual(s, c) {
			t.Errorf("container %s: mounts of injected volumes differ:\nstored: %s\nCLI:    %s", want.Spec.Containers[i].Name, toYAML(s), toYAML(c))
		}
	}

	// 2. The rest, after the same API server's defaulting and admission.
	dry := &corev1.Pod{ObjectMeta: *want.ObjectMeta.DeepCopy(), Spec: *want.Spec.DeepCopy()}
	dry.Name = "cli-rendered"
	created, err := e.cs.CoreV1().Pods(ns).Create(ctx, dry, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
	if err != nil {
		t.Fatalf("dry-run of the CLI's Pod template: %v", err)
	}
	if created.Annotations[webhook.AnnotationInjected] != record {
		t.Errorf("the webhook changed the CLI's record on the dry-run Pod: %q, want %q", created.Annotations[webhook.AnnotationInjected], record)
	}
	gotSpec, wantSpec := comparableSpec(stored.Spec), comparableSpec(created.Spec)
	if !apiequality.Semantic.DeepEqual(gotSpec, wantSpec) {
		t.Errorf("stored Pod spec and the CLI's (defaulted by a dry-run) differ:\nstored:\n%s\nCLI:\n%s", toYAML(gotSpec), toYAML(wantSpec))
	}
	labels := func(m map[string]string) map[string]string {
		out := map[string]string{}
		for k, v := range m {
			if k != appsv1.DefaultDeploymentUniqueLabelKey {
				out[k] = v
			}
		}
		return out
	}
	if !apiequality.Semantic.DeepEqual(stored.Annotations, created.Annotations) || !apiequality.Semantic.DeepEqual(labels(stored.Labels), labels(created.Labels)) {
		t.Errorf("metadata differs:\nstored: %v %v\nCLI:    %v %v", stored.Annotations, stored.Labels, created.Annotations, created.Labels)
	}
	if !t.Failed() {
		t.Logf("stored Pod %s = depends-on inject output: %d injected init containers, %d injected volumes, %d annotations; whole spec equal after the API server's defaulting",
			stored.Name, len(rec.InitContainers), len(rec.Volumes), len(stored.Annotations))
	}
}

// runShippedCLI runs /depends-on of the webhook image (what `make
// docker-build` ships next to the webhook, built from cmd/depends-on) with
// dir copied to /in. docker cp rather than a bind mount: the Docker daemon
// need not share this machine's file system.
func runShippedCLI(t *testing.T, ctx context.Context, dir string, args ...string) string {
	t.Helper()
	create := append([]string{"create", "--entrypoint", "/depends-on", e.img}, args...)
	id, err := e.run(ctx, "depends-on-inject", e.docker, create...)
	if err != nil {
		t.Fatal(err)
	}
	id = strings.TrimSpace(id)
	t.Cleanup(func() { _, _ = e.run(context.Background(), "depends-on-inject", e.docker, "rm", "-f", id) })
	if _, err := e.run(ctx, "depends-on-inject", e.docker, "cp", dir, id+":/in"); err != nil {
		t.Fatal(err)
	}
	// The container's standard output alone is the YAML; its exit code is docker's.
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, e.docker, "start", "-a", id)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("depends-on %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return stdout.String()
}

// webhookInjectionFlags reads the deployed webhook's args and returns those
// that set the injection (the flags webhook.BindConfigFlags defines, which
// the CLI shares), plus --readiness-ca-file with the CA the webhook reads
// from <cert-dir>/ca.crt (its Secret's ca.crt).
func webhookInjectionFlags(t *testing.T, ctx context.Context, dir, inContainer string) []string {
	t.Helper()
	d, err := e.cs.AppsV1().Deployments(deploy.Namespace).Get(ctx, deploy.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var args []string
	for _, c := range d.Spec.Template.Spec.Containers {
		if c.Name == deploy.ContainerName {
			args = c.Args
		}
	}
	known := flag.NewFlagSet("webhook", flag.ContinueOnError)
	webhook.BindConfigFlags(known, "", nil)
	var out []string
	hasURL, hasCA := false, false
	for _, a := range args {
		name, _, ok := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if known.Lookup(name) == nil {
			continue
		}
		if !ok {
			t.Fatalf("webhook arg %q: the injection flags are written --name=value", a)
		}
		hasURL = hasURL || name == "readiness-url"
		hasCA = hasCA || name == "readiness-ca-file"
		if name == "readiness-ca-file" {
			continue // a path inside the webhook's container: replaced below
		}
		out = append(out, a)
	}
	if !hasURL {
		t.Fatalf("the webhook runs without --readiness-url (args %v)", args)
	}
	secret := deploy.SecretName
	if hasCA {
		t.Fatalf("the webhook sets --readiness-ca-file; this case knows only the default <cert-dir>/ca.crt from Secret %s", secret)
	}
	s, err := e.cs.CoreV1().Secrets(deploy.Namespace).Get(ctx, secret, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ca := filepath.Join(dir, "ca.crt")
	if len(s.Data["ca.crt"]) == 0 {
		t.Fatalf("Secret %s has no ca.crt", secret)
	}
	if err := os.WriteFile(ca, s.Data["ca.crt"], 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("webhook args %v -> injection flags %v + --readiness-ca-file (ca.crt of Secret %s)", args, out, secret)
	return append(out, "--readiness-ca-file="+inContainer+"/ca.crt")
}

// injectCLIDeployment uses every part the webhook injects: the wait container
// with an object target (projected token volume, readiness flags and CA), a
// Service wait, and a fetch (fetch container, emptyDir, mounts in the app
// containers), plus the user's own init container and volume.
func injectCLIDeployment() *appsv1.Deployment {
	labels := map[string]string{"app.kubernetes.io/name": "shop"}
	return &appsv1.Deployment{
		TypeMeta:   metav1.TypeMeta{APIVersion: "apps/v1", Kind: "Deployment"},
		ObjectMeta: metav1.ObjectMeta{Name: "shop"},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To[int32](1),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels, Annotations: map[string]string{
					webhook.AnnotationJobs:     "migrate",
					webhook.AnnotationServices: "db:5432",
					webhook.AnnotationFetch:    "/etc/shop/config.json=http://config/",
					webhook.AnnotationTimeout:  "5m",
				}},
				Spec: corev1.PodSpec{
					TerminationGracePeriodSeconds: ptr.To[int64](0),
					InitContainers: []corev1.Container{{
						Name: "init-schema", Image: "busybox:1.28", Command: []string{"true"},
					}},
					Containers: []corev1.Container{
						{
							Name: "shop", Image: "busybox:1.28", Command: []string{"sh", "-c", "exec sleep 3600"},
							Ports:        []corev1.ContainerPort{{ContainerPort: 8080}},
							VolumeMounts: []corev1.VolumeMount{{Name: "cache", MountPath: "/cache"}},
						},
						{
							Name: "sidecar", Image: "busybox:1.28", Command: []string{"sh", "-c", "exec sleep 3600"},
							ReadinessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{Port: intstr.FromInt32(8080)}}},
						},
					},
					Volumes: []corev1.Volume{{Name: "cache", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}},
				},
			},
		},
	}
}

// comparableSpec sets aside what differs between two Pods of the same
// template: the ServiceAccount plugin's volume name (kube-api-access-<random>)
// and the node the scheduler picked.
func comparableSpec(s corev1.PodSpec) corev1.PodSpec {
	s = *s.DeepCopy()
	s.NodeName = ""
	const fixed = "kube-api-access"
	rename := map[string]bool{}
	for i := range s.Volumes {
		if strings.HasPrefix(s.Volumes[i].Name, fixed+"-") {
			rename[s.Volumes[i].Name] = true
			s.Volumes[i].Name = fixed
		}
	}
	for _, cs := range [][]corev1.Container{s.InitContainers, s.Containers} {
		for i := range cs {
			for j := range cs[i].VolumeMounts {
				if rename[cs[i].VolumeMounts[j].Name] {
					cs[i].VolumeMounts[j].Name = fixed
				}
			}
			slices.SortFunc(cs[i].VolumeMounts, func(a, b corev1.VolumeMount) int { return strings.Compare(a.MountPath, b.MountPath) })
		}
	}
	slices.SortFunc(s.Volumes, func(a, b corev1.Volume) int { return strings.Compare(a.Name, b.Name) })
	return s
}

// withoutAPIToken is c without mounts of the ServiceAccount plugin's
// kube-api-access-<random> volume.
func withoutAPIToken(c corev1.Container) corev1.Container {
	c = *c.DeepCopy()
	c.VolumeMounts = slices.DeleteFunc(c.VolumeMounts, func(m corev1.VolumeMount) bool {
		return strings.HasPrefix(m.Name, "kube-api-access-")
	})
	if len(c.VolumeMounts) == 0 {
		c.VolumeMounts = nil
	}
	return c
}

func prefixed(m map[string]string, prefix string) map[string]string {
	out := map[string]string{}
	for k, v := range m {
		if strings.HasPrefix(k, prefix) {
			out[k] = v
		}
	}
	return out
}

func volume(vs []corev1.Volume, name string) *corev1.Volume {
	for i := range vs {
		if vs[i].Name == name {
			return &vs[i]
		}
	}
	return nil
}

func mountsOf(ms []corev1.VolumeMount, volumes []string) []corev1.VolumeMount {
	var out []corev1.VolumeMount
	for _, m := range ms {
		for _, v := range volumes {
			if m.Name == v {
				out = append(out, m)
			}
		}
	}
	return out
}

func sameSet(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	seen := map[string]int{}
	for _, s := range a {
		seen[s]++
	}
	for _, s := range b {
		seen[s]--
	}
	for _, n := range seen {
		if n != 0 {
			return false
		}
	}
	return true
}

func toYAML(v any) string {
	b, err := yaml.Marshal(v)
	if err != nil {
		return fmt.Sprintf("%+v", v)
	}
	return string(b)
}
