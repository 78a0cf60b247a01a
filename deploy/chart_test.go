package deploy_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	kusttypes "sigs.k8s.io/kustomize/api/types"
	"sigs.k8s.io/yaml"

	"github.com/depends-on/depends-on/deploy"
)

// chartInstalls are the chart renders every safety check of deploy_test.go
// and admission_test.go also runs on, next to the kustomize overlays.
var chartInstalls = []struct {
	name   string
	values []string // helm --set
}{
	{"chart", nil},
	{"chart-self-signed", []string{"certManager.enabled=false"}},
}

// chartDefaultWaitImage is --wait-image as the chart's default values set it
// (appVersion dev); the kustomize overlays leave it to the binary's default.
const chartDefaultWaitImage = deploy.WaitImage + ":dev"

// chartKubeVersion is the Kubernetes version helm template renders for (the
// e2e tier's).
const chartKubeVersion = "1.34.0"

// helmBinary is $HELM, else ./bin/helm of the checkout (make helm), else helm
// in PATH. No helm is a failure, not a skip: make test installs it.
func helmBinary(t *testing.T) string {
	t.Helper()
	if h := os.Getenv("HELM"); h != "" {
		p, err := exec.LookPath(h)
		if err != nil {
			t.Fatalf("HELM=%s: %v", h, err)
		}
		return p
	}
	if dir, err := deploy.Dir(); err == nil {
		if p := filepath.Join(filepath.Dir(dir), "bin", "helm"); isExecutable(p) {
			return p
		}
	}
	p, err := exec.LookPath("helm")
	if err != nil {
		t.Fatal("helm not found: set HELM, or run make helm (installs helm.sh/helm/v3/cmd/helm into ./bin)")
	}
	return p
}

func isExecutable(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0
}

// renderChart runs helm template on the chart of a CopySources tree (so the
// embedded copy is what is rendered) in the webhook's namespace.
func renderChart(t *testing.T, tree string, set ...string) []byte {
	t.Helper()
	return helm(t, "template", append([]string{"depends-on", filepath.Join(tree, deploy.ChartDir), "--namespace", deploy.Namespace}, setFlags(set)...)...)
}

func setFlags(set []string) []string {
	var args []string
	for _, s := range set {
		args = append(args, "--set", s)
	}
	return args
}

func helm(t *testing.T, cmd string, args ...string) []byte {
	t.Helper()
	var stdout, stderr bytes.Buffer
	if cmd == "template" {
		// A go-installed helm assumes Kubernetes v1.20 without a cluster; the
		// chart requires >= 1.30 (matchConditions).
		args = append(args, "--kube-version", chartKubeVersion)
	}
	c := exec.Command(helmBinary(t), append([]string{cmd}, args...)...)
	c.Stdout, c.Stderr = &stdout, &stderr
	if err := c.Run(); err != nil {
		t.Fatalf("helm %s %s: %v\n%s%s", cmd, strings.Join(args, " "), err, stderr.String(), stdout.String())
	}
	return stdout.Bytes()
}

func copyTree(t *testing.T) string {
	t.Helper()
	tmp := t.TempDir()
	if err := deploy.CopySources(tmp); err != nil {
		t.Fatal(err)
	}
	return tmp
}

// helmOnlyLabels are the labels the chart adds to every object's metadata
// (Helm's recommended labels): the one documented difference to kustomize,
// whose managed-by label says kustomize. Selectors and pod templates carry
// none of them.
var helmOnlyLabels = []string{"helm.sh/chart", "app.kubernetes.io/instance", "app.kubernetes.io/version", "app.kubernetes.io/managed-by"}

// normalized returns each object as indented JSON keyed by kind/namespace/name,
// without helmOnlyLabels; jobName, if set, renames the chart's Job (its name
// carries the Helm revision, so every upgrade runs a new one).
func normalized(t *testing.T, r rendered, jobName string) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, o := range r.objects {
		u := o.Unstructured.DeepCopy()
		l := u.GetLabels()
		for _, k := range helmOnlyLabels {
			delete(l, k)
		}
		u.SetLabels(l)
		if o.Kind == "Job" && jobName != "" {
			u.SetName(jobName)
		}
		data, err := json.MarshalIndent(u.Object, "", "  ")
		if err != nil {
			t.Fatal(err)
		}
		out[o.Kind+" "+u.GetNamespace()+"/"+u.GetName()] = string(data)
	}
	return out
}

// TestChartMatchesKustomize is the one-source-of-truth check: the chart with
// default values renders exactly the objects of deploy/cert-manager, and with
// certManager.enabled=false those of deploy/self-signed. Differences allowed,
// and only these: Helm's labels (helmOnlyLabels); --wait-image, which the
// chart always passes (kustomize is rendered with the same value through
// deploy.Options, as make deploy does); the Job's name (depends-on-certs-<revision>);
// the Namespace, which the chart renders only with namespace.create=true
// (compared in that mode).
func TestChartMatchesKustomize(t *testing.T) {
	tree := copyTree(t)
	for _, tc := range []struct {
		overlay string
		values  []string
	}{
		{"cert-manager", nil},
		{"self-signed", []string{"certManager.enabled=false"}},
	} {
		t.Run(tc.overlay, func(t *testing.T) {
			kout, err := deploy.RenderEmbedded(tc.overlay, deploy.Options{WaitImage: chartDefaultWaitImage})
			if err != nil {
				t.Fatal(err)
			}
			want := normalized(t, decode(t, tc.overlay, kout), "")
			got := normalized(t, decode(t, "chart", renderChart(t, tree, append(tc.values, "namespace.create=true")...)), "depends-on-certs")
			if strings.Contains(string(kout), "kind: Job") {
				if _, ok := got["Job "+deploy.Namespace+"/depends-on-certs"]; !ok {
					t.Errorf("chart renders no certs Job")
				}
			}
			var keys []string
			for k := range want {
				keys = append(keys, k)
			}
			for k := range got {
				if _, ok := want[k]; !ok {
					keys = append(keys, k)
				}
			}
			sort.Strings(keys)
			for _, k := range keys {
				w, inK := want[k]
				g, inC := got[k]
				switch {
				case !inC:
					t.Errorf("%s: in deploy/%s, not in the chart", k, tc.overlay)
				case !inK:
					t.Errorf("%s: in the chart, not in deploy/%s", k, tc.overlay)
				case w != g:
					t.Errorf("%s differs (chart vs deploy/%s):\n%s", k, tc.overlay, lineDiff(w, g))
				}
			}
			// Without namespace.create the chart renders everything but the Namespace.
			plain := decode(t, "chart", renderChart(t, tree, tc.values...))
			if _, ok := plain.find("Namespace", deploy.Namespace); ok || len(plain.objects) != len(got)-1 {
				t.Errorf("default chart: %d objects (Namespace rendered: %v), want %d without the Namespace", len(plain.objects), ok, len(got)-1)
			}
		})
	}
}

// lineDiff shows the lines of a (kustomize) and b (chart) that differ.
func lineDiff(a, b string) string {
	al, bl := strings.Split(a, "\n"), strings.Split(b, "\n")
	var out strings.Builder
	for _, l := range al {
		if !slices.Contains(bl, l) {
			fmt.Fprintf(&out, "- %s\n", l)
		}
	}
	for _, l := range bl {
		if !slices.Contains(al, l) {
			fmt.Fprintf(&out, "+ %s\n", l)
		}
	}
	return out.String()
}

// TestChartLint runs helm lint --strict with both certificate paths (make
// test also runs it on its own, with its output).
func TestChartLint(t *testing.T) {
	tree := copyTree(t)
	for _, set := range [][]string{nil, {"certManager.enabled=false"}, {"serviceMonitor.enabled=true", "namespace.create=true"}} {
		helm(t, "lint", append([]string{"--strict", filepath.Join(tree, deploy.ChartDir)}, setFlags(set)...)...)
	}
	// values.schema.json rejects a mistyped or mistyped-type value.
	for _, bad := range []string{"replica=3", "replicas=two", "certManager.enable=false", "image.pullPolicy=Sometimes", "readiness.enable=false", "readiness.maxWaiters=many"} {
		c := exec.Command(helmBinary(t), "template", "x", filepath.Join(tree, deploy.ChartDir), "--kube-version", chartKubeVersion, "--set", bad)
		if out, err := c.CombinedOutput(); err == nil || !strings.Contains(string(out), "schema") {
			t.Errorf("helm template --set %s: err %v, output %q: want a schema error", bad, err, tail(out))
		}
	}
}

func tail(b []byte) string {
	if len(b) > 300 {
		b = b[len(b)-300:]
	}
	return string(b)
}

// TestChartValues: every value the chart offers changes what it should, and
// the safety properties hold whatever the values.
func TestChartValues(t *testing.T) {
	tree := copyTree(t)
	out := helm(t, "template", "do", filepath.Join(tree, deploy.ChartDir), "--namespace", "platform",
		"--set", "image.repository=reg.example/webhook,image.tag=v1.2.3,image.pullPolicy=Always",
		"--set", "waitImage.repository=reg.example/wait,waitImage.tag=v1.2.4",
		"--set", "replicas=3,resources.limits.memory=256Mi",
		"--set", "webhook.clusterDomain=corp.local,webhook.defaultTimeout=5m,webhook.fetchSizeLimit=8Mi",
		"--set", "webhook.injectedResources.cpuRequest=20m,webhook.injectedResources.memoryRequest=32Mi",
		"--set", "webhook.injectedResources.cpuLimit=none,webhook.injectedResources.memoryLimit=96Mi",
		"--set", "excludeNamespaces={cert-manager,monitoring}",
		"--set", "namespaceSelector.matchExpressions[0].key=team,namespaceSelector.matchExpressions[0].operator=In,namespaceSelector.matchExpressions[0].values={a,b}",
		"--set", "podDisruptionBudget.minAvailable=2",
		"--set", "priorityClassName=platform-critical",
		"--set", "serviceMonitor.enabled=true,serviceMonitor.labels.release=prom",
		"--set", "certManager.enabled=false",
	)
	r := decodeChart(t, out)
	d := deployment(t, r)
	c := d.Spec.Template.Spec.Containers[0]
	if c.Image != "reg.example/webhook:v1.2.3" || c.ImagePullPolicy != corev1.PullAlways {
		t.Errorf("image %s pull %s", c.Image, c.ImagePullPolicy)
	}
	for _, want := range []string{"--wait-image=reg.example/wait:v1.2.4", "--cluster-domain=corp.local", "--default-timeout=5m",
		"--fetch-size-limit=8Mi", "--wait-cpu-request=20m", "--wait-memory-request=32Mi", "--wait-cpu-limit=", "--wait-memory-limit=96Mi"} {
		if !slices.Contains(c.Args, want) {
			t.Errorf("args %v lack %s", c.Args, want)
		}
	}
	if *d.Spec.Replicas != 3 || c.Resources.Limits.Memory().String() != "256Mi" || d.Spec.Template.Spec.PriorityClassName != "platform-critical" {
		t.Errorf("replicas %d, memory limit %s, priorityClassName %q", *d.Spec.Replicas, c.Resources.Limits.Memory(), d.Spec.Template.Spec.PriorityClassName)
	}
	if pdb := r.mustFind(t, "PodDisruptionBudget", deploy.Name); pdb.Unstructured.Object["spec"].(map[string]any)["minAvailable"] != int64(2) && pdb.Unstructured.Object["spec"].(map[string]any)["minAvailable"] != float64(2) {
		t.Errorf("PDB %v", pdb.Unstructured.Object["spec"])
	}

	w := webhookConfig(t, r).Webhooks[0]
	if w.ClientConfig.Service.Namespace != "platform" {
		t.Errorf("clientConfig namespace %s", w.ClientConfig.Service.Namespace)
	}
	sel, err := metav1.LabelSelectorAsSelector(w.NamespaceSelector)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		l    map[string]string
		want bool
	}{
		{"team-a", map[string]string{"team": "a"}, true},
		{"team-c", map[string]string{"team": "c"}, false},
		{"monitoring", map[string]string{"team": "a"}, false},
		{"platform", map[string]string{"team": "a"}, false}, // the release namespace
		{"kube-system", map[string]string{"team": "a"}, false},
		{"kube-node-lease", map[string]string{"team": "a"}, false},
		{"cert-manager", map[string]string{"team": "a"}, false},
		{"opted-out", map[string]string{"team": "a", "depends-on.dev/disabled": "true"}, false},
	} {
		l := labels.Set{"kubernetes.io/metadata.name": tc.name}
		for k, v := range tc.l {
			l[k] = v
		}
		if got := sel.Matches(l); got != tc.want {
			t.Errorf("namespace %s %v: selected=%v, want %v", tc.name, tc.l, got, tc.want)
		}
	}

	// Excluding namespaces never drops the system ones, even with an empty list.
	w = webhookConfig(t, decodeChart(t, helm(t, "template", "do", filepath.Join(tree, deploy.ChartDir), "--namespace", "x", "--set", "excludeNamespaces=null"))).Webhooks[0]
	sel, _ = metav1.LabelSelectorAsSelector(w.NamespaceSelector)
	for _, ns := range []string{"kube-system", "kube-public", "kube-node-lease", "x"} {
		if sel.Matches(labels.Set{"kubernetes.io/metadata.name": ns}) {
			t.Errorf("excludeNamespaces=null: namespace %s selected", ns)
		}
	}

	job := certsJob(t, r)
	if job.Spec.Template.Spec.Containers[0].Image != "reg.example/webhook:v1.2.3" ||
		!slices.Contains(job.Spec.Template.Spec.Containers[0].Args, "--cluster-domain=corp.local") {
		t.Errorf("certs Job: image %s args %v", job.Spec.Template.Spec.Containers[0].Image, job.Spec.Template.Spec.Containers[0].Args)
	}
	sm := r.mustFind(t, "ServiceMonitor", deploy.Name).Unstructured
	if sm.GetLabels()["release"] != "prom" {
		t.Errorf("ServiceMonitor labels %v", sm.GetLabels())
	}
	metricsSvc := r.mustFind(t, "Service", deploy.Name+"-metrics").Typed.(*corev1.Service)
	if !labels.SelectorFromSet(metricsSvc.Spec.Selector).Matches(labels.Set(d.Spec.Template.Labels)) || metricsSvc.Spec.Ports[0].Port != 8080 {
		t.Errorf("metrics Service %+v", metricsSvc.Spec)
	}
	smSel, _ := metav1.LabelSelectorAsSelector(&metav1.LabelSelector{MatchLabels: toStringMap(t, sm.Object, "spec", "selector", "matchLabels")})
	if !smSel.Matches(labels.Set(metricsSvc.Labels)) || smSel.Matches(labels.Set(r.mustFind(t, "Service", deploy.Name).Unstructured.GetLabels())) {
		t.Error("ServiceMonitor must select the metrics Service and only it")
	}

	// podDisruptionBudget.enabled=false and an empty spread render neither.
	r = decodeChart(t, helm(t, "template", "do", filepath.Join(tree, deploy.ChartDir), "--namespace", deploy.Namespace,
		"--set", "podDisruptionBudget.enabled=false,topologySpreadConstraints=null"))
	if _, ok := r.find("PodDisruptionBudget", deploy.Name); ok {
		t.Error("PDB rendered with podDisruptionBudget.enabled=false")
	}
	if n := len(deployment(t, r).Spec.Template.Spec.TopologySpreadConstraints); n != 0 {
		t.Errorf("%d topology spread constraints with topologySpreadConstraints=null", n)
	}
}

// TestChartReadinessValues: the readiness values change what they should,
// in any release namespace, and readiness.enabled=false leaves no trace of
// the service (no object, no serving certificate, no Secret name in the certs
// Job or its Role).
func TestChartReadinessValues(t *testing.T) {
	tree := copyTree(t)
	chart := filepath.Join(tree, deploy.ChartDir)
	r := decodeChart(t, helm(t, "template", "do", chart, "--namespace", "platform",
		"--set", "readiness.image.repository=reg.example/readiness,readiness.image.tag=v2.0.1,readiness.image.pullPolicy=Always",
		"--set", "readiness.replicas=3,readiness.resources.limits.memory=512Mi,readiness.maxWaiters=4000",
		"--set", "readiness.drainPeriod=5s,readiness.terminationGracePeriodSeconds=25,readiness.extraArgs={--max-wait=30s}",
		"--set", "readiness.podDisruptionBudget.minAvailable=2,priorityClassName=platform-critical",
		"--set", "webhook.clusterDomain=corp.local,certManager.enabled=false"))
	d := readinessDeployment(t, r)
	spec := d.Spec.Template.Spec
	c := spec.Containers[0]
	if c.Image != "reg.example/readiness:v2.0.1" || c.ImagePullPolicy != corev1.PullAlways {
		t.Errorf("image %s pull %s", c.Image, c.ImagePullPolicy)
	}
	for _, want := range []string{"--max-waiters=4000", "--drain-period=5s", "--max-wait=30s"} {
		if !slices.Contains(c.Args, want) {
			t.Errorf("args %v lack %s", c.Args, want)
		}
	}
	if *d.Spec.Replicas != 3 || c.Resources.Limits.Memory().String() != "512Mi" || *spec.TerminationGracePeriodSeconds != 25 || spec.PriorityClassName != "platform-critical" {
		t.Errorf("replicas %d, memory limit %s, grace %d, priorityClassName %q", *d.Spec.Replicas, c.Resources.Limits.Memory(), *spec.TerminationGracePeriodSeconds, spec.PriorityClassName)
	}
	if web := deployment(t, r).Spec.Template.Spec.Containers[0]; web.Image == c.Image || slices.Contains(web.Args, "--max-waiters=4000") {
		t.Errorf("readiness values reached the webhook: %s %v", web.Image, web.Args)
	}
	pdb := r.mustFind(t, "PodDisruptionBudget", deploy.ReadinessName).Typed.(*policyv1.PodDisruptionBudget)
	if pdb.Spec.MinAvailable == nil || pdb.Spec.MinAvailable.IntValue() != 2 {
		t.Errorf("readiness PDB %+v", pdb.Spec)
	}
	crb := r.mustFind(t, "ClusterRoleBinding", deploy.ReadinessName).Typed.(*rbacv1.ClusterRoleBinding)
	if len(crb.Subjects) != 1 || crb.Subjects[0].Namespace != "platform" {
		t.Errorf("readiness ClusterRoleBinding subjects %+v, want the release namespace's ServiceAccount", crb.Subjects)
	}
	job := certsJob(t, r)
	if want := "--serving=secret=" + deploy.ReadinessSecretName + ",service=" + deploy.ReadinessName; !slices.Contains(job.Spec.Template.Spec.Containers[0].Args, want) {
		t.Errorf("certs Job args %v lack %s", job.Spec.Template.Spec.Containers[0].Args, want)
	}

	// cert-manager: the readiness Certificate follows the namespace and cluster domain.
	r = decodeChart(t, helm(t, "template", "do", chart, "--namespace", "platform", "--set", "webhook.clusterDomain=corp.local"))
	cert := r.mustFind(t, "Certificate", "depends-on-readiness-serving").Unstructured
	dns, _, _ := unstructured.NestedStringSlice(cert.Object, "spec", "dnsNames")
	if !slices.Equal(dns, []string{"depends-on-readiness.platform.svc", "depends-on-readiness.platform.svc.corp.local"}) {
		t.Errorf("readiness Certificate dnsNames %v", dns)
	}

	for _, set := range [][]string{{"readiness.enabled=false"}, {"readiness.enabled=false", "certManager.enabled=false"}} {
		r := decodeChart(t, helm(t, "template", "do", chart, "--namespace", deploy.Namespace, "--set", strings.Join(set, ",")))
		for _, o := range r.objects {
			if strings.Contains(o.Name, "readiness") || o.Unstructured.GetLabels()["app.kubernetes.io/component"] == "readiness" {
				t.Errorf("%v: %s %s rendered", set, o.Kind, o.Name)
			}
			if o.Kind == "Job" || o.Kind == "Role" {
				data, err := json.Marshal(o.Unstructured.Object)
				if err != nil {
					t.Fatal(err)
				}
				if strings.Contains(string(data), deploy.ReadinessSecretName) {
					t.Errorf("%v: %s %s names %s", set, o.Kind, o.Name, deploy.ReadinessSecretName)
				}
			}
		}
		// The webhook's own serving certificate is still issued.
		if _, cm := r.find("Certificate", "depends-on-webhook-serving"); !cm {
			if !slices.Contains(certsJob(t, r).Spec.Template.Spec.Containers[0].Args, "--serving=secret="+deploy.SecretName+",service="+deploy.Name) {
				t.Errorf("%v: no serving certificate for the webhook", set)
			}
		}
	}
}

func toStringMap(t *testing.T, obj map[string]any, path ...string) map[string]string {
	t.Helper()
	var cur any = obj
	for _, p := range path {
		cur = cur.(map[string]any)[p]
	}
	out := map[string]string{}
	for k, v := range cur.(map[string]any) {
		out[k] = fmt.Sprint(v)
	}
	return out
}

// decodeChart decodes helm template output; the ServiceMonitor (Prometheus
// Operator) is the one kind the kustomize overlays do not have.
func decodeChart(t *testing.T, out []byte) rendered {
	t.Helper()
	reader := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(out)))
	var keep [][]byte
	var monitors []*unstructured.Unstructured
	for {
		doc, err := reader.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		u := &unstructured.Unstructured{}
		if err := yaml.Unmarshal(doc, &u.Object); err != nil {
			t.Fatal(err)
		}
		if u.GetKind() == "ServiceMonitor" {
			monitors = append(monitors, u)
			continue
		}
		keep = append(keep, doc)
	}
	r := decode(t, "chart", bytes.Join(keep, []byte("\n---\n")))
	for _, u := range monitors {
		if u.GetAPIVersion() != "monitoring.coreos.com/v1" {
			t.Errorf("ServiceMonitor apiVersion %s", u.GetAPIVersion())
		}
		r.objects = append(r.objects, object{APIVersion: u.GetAPIVersion(), Kind: u.GetKind(), Name: u.GetName(), Namespace: u.GetNamespace(), Unstructured: u})
	}
	return r
}

func certsJob(t *testing.T, r rendered) *batchv1.Job {
	t.Helper()
	for _, o := range r.objects {
		if o.Kind == "Job" {
			return o.Typed.(*batchv1.Job)
		}
	}
	t.Fatalf("%s: no Job", r.overlay)
	return nil
}

// TestCertsJob: the self-signed installs (kustomize and chart) run the
// depends-on CLI of the webhook image, write the Secret the Deployment
// mounts, pass Pod Security restricted, and their RBAC reaches only the
// Secrets and the webhook configuration they write; the webhook's own
// ServiceAccount stays without any binding.
func TestCertsJob(t *testing.T) {
	f := renderAll(t)
	for _, name := range []string{"self-signed", "chart-self-signed"} {
		r := f.overlays[name]
		job := certsJob(t, r)
		spec := job.Spec.Template.Spec
		c := spec.Containers[0]
		if c.Image != deployment(t, r).Spec.Template.Spec.Containers[0].Image || !slices.Equal(c.Command, []string{"/depends-on"}) || c.Args[0] != "certs" {
			t.Errorf("%s: Job runs %s %v %v", name, c.Image, c.Command, c.Args)
		}
		evaluateRestricted(t, name+" certs Job pod template", &job.Spec.Template.ObjectMeta, &spec)
		if c.Resources.Requests.Memory().IsZero() || c.Resources.Limits.Memory().IsZero() {
			t.Errorf("%s: Job resources %+v", name, c.Resources)
		}
		if spec.RestartPolicy != corev1.RestartPolicyOnFailure || job.Spec.BackoffLimit == nil || job.Spec.ActiveDeadlineSeconds == nil {
			t.Errorf("%s: Job retries: restartPolicy %s backoffLimit %v deadline %v", name, spec.RestartPolicy, job.Spec.BackoffLimit, job.Spec.ActiveDeadlineSeconds)
		}

		// The Secrets the Job writes, from its flags.
		secrets := []string{}
		var configs []string
		for _, a := range c.Args[1:] {
			k, v, _ := strings.Cut(a, "=")
			switch k {
			case "--ca-secret":
				secrets = append(secrets, v)
			case "--serving":
				for _, kv := range strings.Split(v, ",") {
					if s, ok := strings.CutPrefix(kv, "secret="); ok {
						secrets = append(secrets, s)
					}
				}
			case "--webhook-configuration":
				configs = append(configs, v)
			}
		}
		if !slices.Contains(secrets, deploy.SecretName) || !slices.Equal(configs, []string{deploy.WebhookConfiguration}) {
			t.Errorf("%s: Job writes Secrets %v and configurations %v, want %s and %s", name, secrets, configs, deploy.SecretName, deploy.WebhookConfiguration)
		}

		role := r.mustFind(t, "Role", "depends-on-certs").Typed.(*rbacv1.Role)
		for _, rule := range role.Rules {
			if !slices.Equal(rule.Resources, []string{"secrets"}) || !slices.Equal(rule.APIGroups, []string{""}) {
				t.Errorf("%s: Role rule beyond secrets: %+v", name, rule)
			}
			if len(rule.ResourceNames) == 0 && !slices.Equal(rule.Verbs, []string{"create"}) {
				t.Errorf("%s: verbs %v on every Secret (only create cannot be limited by name)", name, rule.Verbs)
			}
			if len(rule.ResourceNames) > 0 {
				slices.Sort(rule.ResourceNames)
				sorted := slices.Sorted(slices.Values(secrets))
				if !slices.Equal(rule.ResourceNames, sorted) || slices.Contains(rule.Verbs, "delete") || slices.Contains(rule.Verbs, "*") {
					t.Errorf("%s: Role names %v verbs %v, want exactly %v", name, rule.ResourceNames, rule.Verbs, sorted)
				}
			}
		}
		cr := r.mustFind(t, "ClusterRole", "depends-on-certs").Typed.(*rbacv1.ClusterRole)
		if len(cr.Rules) != 1 || !slices.Equal(cr.Rules[0].Resources, []string{"mutatingwebhookconfigurations"}) ||
			!slices.Equal(cr.Rules[0].ResourceNames, configs) || !slices.Equal(cr.Rules[0].Verbs, []string{"get", "patch"}) {
			t.Errorf("%s: ClusterRole %+v", name, cr.Rules)
		}
		rb := r.mustFind(t, "RoleBinding", "depends-on-certs").Typed.(*rbacv1.RoleBinding)
		crb := r.mustFind(t, "ClusterRoleBinding", "depends-on-certs").Typed.(*rbacv1.ClusterRoleBinding)
		for _, subjects := range [][]rbacv1.Subject{rb.Subjects, crb.Subjects} {
			if len(subjects) != 1 || subjects[0].Name != spec.ServiceAccountName || subjects[0].Namespace != deploy.Namespace {
				t.Errorf("%s: binding subjects %+v, want only the Job's ServiceAccount %s", name, subjects, spec.ServiceAccountName)
			}
		}
		if spec.ServiceAccountName == deploy.Name {
			t.Errorf("%s: the Job runs as the webhook's ServiceAccount", name)
		}
	}
}

// TestRenderEmbedded: the embedded manifests render what the checkout does,
// and never contain generated private keys.
func TestRenderEmbedded(t *testing.T) {
	dir, err := deploy.Dir()
	if err != nil {
		t.Fatal(err)
	}
	img, err := deploy.ParseImage("reg.example/webhook:v1", deploy.WebhookImage)
	if err != nil {
		t.Fatal(err)
	}
	for _, overlay := range []string{"base", "cert-manager", "self-signed"} {
		for _, opts := range []deploy.Options{{}, {Images: []kusttypes.Image{img}, WaitImage: "reg.example/wait:v1"}} {
			want, err := deploy.Render(filepath.Join(dir, overlay), opts)
			if err != nil {
				t.Fatal(err)
			}
			got, err := deploy.RenderEmbedded("deploy/"+overlay, opts)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("%s %+v: embedded render differs from the checkout's", overlay, opts)
			}
		}
	}
	if _, err := deploy.RenderEmbedded("nope", deploy.Options{}); err == nil {
		t.Error("unknown overlay rendered")
	}
	err = fs.WalkDir(deploy.Manifests(), ".", func(p string, d fs.DirEntry, err error) error {
		if strings.Contains(p, "generated") || strings.HasSuffix(p, ".key") {
			t.Errorf("embedded %s", p)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := fs.Stat(deploy.Manifests(), deploy.ChartDir+"/templates/_helpers.tpl"); err != nil {
		t.Errorf("chart helpers not embedded: %v", err)
	}
}
