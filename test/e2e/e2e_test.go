//go:build e2e

// Package e2e runs depends-on in a kind cluster: the docs' init-container
// examples, timeouts, Deployments, Pod Security "restricted", a rolling
// restart of the webhook under load, and the promise that unannotated Pods
// never reach it.
//
//	make e2e     # go test -tags e2e ./test/e2e (see README.md here for the knobs)
//
// TestMain builds the images (make docker-build), creates a kind cluster (or
// reuses KIND_CLUSTER), loads the images, installs cert-manager from
// CERT_MANAGER_MANIFEST and depends-on from deploy/cert-manager, then runs the
// cases in TestE2E. On failure it writes `kind export logs`, the webhook's logs
// and the cluster state under _artifacts/e2e-<timestamp>/.
package e2e

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/kustomize/api/types"

	"github.com/depends-on/depends-on/deploy"
	"github.com/depends-on/depends-on/webhook"
)

// Defaults for a machine with internet access; the offline kit overrides them
// through the environment (see README.md).
const (
	defaultCluster         = "depends-on-e2e"
	defaultNodeImage       = "kindest/node:v1.34.0" // what kind v0.30.0 ships with
	defaultCertManager     = "https://github.com/cert-manager/cert-manager/releases/download/v1.19.1/cert-manager.yaml"
	defaultImage           = "depends-on/webhook:e2e"
	defaultWaitImage       = "depends-on/wait-for-service:e2e"
	defaultReadinessImage  = "depends-on/readiness:e2e"
	certManagerNamespace   = "cert-manager"
	webhookLabelSelector   = "app.kubernetes.io/name=depends-on,app.kubernetes.io/component=webhook"
	servingCertificateName = "depends-on-webhook-serving"
)

// Images the cases run. Loaded into kind when the local Docker has them (the
// offline kit builds them); otherwise the node pulls them.
var workloadImages = []string{"busybox:1.28", "nginx:1.27"}

// env is the suite's configuration and cluster handle, set up by TestMain.
type env struct {
	root      string // repository root
	artifacts string // _artifacts/e2e-<timestamp>
	kind      string
	kubectl   string
	docker    string
	cluster   string
	nodeImage string
	keep      bool
	skipBuild bool
	img       string
	waitImg   string
	// readinessImg is the readiness service (deploy/readiness).
	readinessImg string
	cmManifest   string
	cmImages     []string
	kubeconfig   string

	created bool // this run created the cluster (and deletes it unless keep)
	// cmVersion is cert-manager's version (its controller image tag).
	cmVersion string
	// matchConditionsStripped: the webhook configuration lost its
	// matchConditions after installation (cert-manager < v1.12's cainjector).
	matchConditionsStripped bool
	cs                      *kubernetes.Clientset
	start                   time.Time
}

var (
	e        *env
	setupErr error
)

// results collects the figures the summary prints.
var results struct {
	sync.Mutex
	delays []delaySample
	avail  *availability
	phases []phase
	notes  []string
}

type delaySample struct {
	name string
	// fromLog: ready instant -> timestamp of the app container's first log
	// line (nanosecond resolution, taken by the container runtime).
	fromLog time.Duration
	// fromStartedAt: ready instant -> the container's status.startedAt (the
	// API rounds it down to the second).
	fromStartedAt time.Duration
	// detect: ready instant -> wait-for-service logged that all its targets
	// were ready (the rest of fromLog is the kubelet starting containers).
	detect time.Duration
}

type availability struct {
	created, failed int
	window          time.Duration // first to last creation
	rollout         time.Duration // rollout restart to the last old webhook Pod gone
	servedByNew     float64       // admission requests the new webhook Pods served
	servedDraining  float64       // ... and the old ones after their SIGTERM (lower bound)
}

type phase struct {
	name string
	d    time.Duration
}

func recordDelay(s delaySample) {
	results.Lock()
	defer results.Unlock()
	results.delays = append(results.delays, s)
}

func recordPhase(name string, since time.Time) {
	results.Lock()
	defer results.Unlock()
	results.phases = append(results.phases, phase{name, time.Since(since)})
}

func TestMain(m *testing.M) {
	flag.Parse()
	os.Exit(runMain(m))
}

func runMain(m *testing.M) (code int) {
	start := time.Now()
	var err error
	e, err = newEnv(start)
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	// The whole setup is bounded, so that teardown runs before go test's own -timeout.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()

	defer func() {
		if code != 0 {
			e.dumpArtifacts()
		}
		e.teardown()
		e.printSummary(code)
	}()

	if setupErr = e.setup(ctx); setupErr != nil {
		e.logf("SETUP FAILED: %v", setupErr)
		return 1
	}
	recordPhase("setup (build, cluster, cert-manager, depends-on)", start)
	casesStart := time.Now()
	code = m.Run()
	recordPhase("cases", casesStart)
	return code
}

func newEnv(start time.Time) (*env, error) {
	dir, err := deploy.Dir()
	if err != nil {
		return nil, err
	}
	root := filepath.Dir(dir)
	x := &env{
		root:         root,
		start:        start,
		artifacts:    filepath.Join(root, "_artifacts", "e2e-"+start.UTC().Format("20060102-150405")),
		kind:         getenv("KIND", "kind"),
		docker:       getenv("DOCKER", "docker"),
		cluster:      getenv("KIND_CLUSTER", defaultCluster),
		nodeImage:    getenv("KIND_NODE_IMAGE", defaultNodeImage),
		keep:         os.Getenv("E2E_KEEP") == "1",
		skipBuild:    os.Getenv("E2E_SKIP_BUILD") == "1",
		img:          getenv("E2E_IMG", defaultImage),
		waitImg:      getenv("E2E_WAIT_IMG", defaultWaitImage),
		readinessImg: getenv("E2E_READINESS_IMG", defaultReadinessImage),
		cmManifest:   getenv("CERT_MANAGER_MANIFEST", defaultCertManager),
	}
	// As test/kind-env.sh: kubectl of the envtest assets (setup-envtest, the
	// offline kit), else the one in PATH.
	x.kubectl = os.Getenv("KUBECTL")
	if x.kubectl == "" {
		x.kubectl = "kubectl"
		if k := filepath.Join(os.Getenv("KUBEBUILDER_ASSETS"), "kubectl"); os.Getenv("KUBEBUILDER_ASSETS") != "" && isExecutable(k) {
			x.kubectl = k
		}
	}
	for _, tool := range []string{x.kind, x.kubectl, x.docker} {
		if _, err := lookPath(tool); err != nil {
			return nil, fmt.Errorf("%s not found (set KIND, KUBECTL, DOCKER or PATH): %w", tool, err)
		}
	}
	// cert-manager's images: listed by CERT_MANAGER_IMAGES, or in images.txt
	// next to a local manifest (the offline kit); upstream they are pulled.
	if list := os.Getenv("CERT_MANAGER_IMAGES"); list != "" {
		x.cmImages = strings.Fields(list)
	} else if !strings.Contains(x.cmManifest, "://") {
		if b, err := os.ReadFile(filepath.Join(filepath.Dir(x.cmManifest), "images.txt")); err == nil {
			x.cmImages = strings.Fields(string(b))
		}
	}
	if err := os.MkdirAll(x.artifacts, 0o755); err != nil {
		return nil, err
	}
	x.kubeconfig = filepath.Join(x.artifacts, "kubeconfig")
	return x, nil
}

// setup brings the cluster to the state the cases expect. The image build
// and the cluster/cert-manager install run in parallel.
func (x *env) setup(ctx context.Context) error {
	x.logf("cluster %s, node image %s, kind %s, kubectl %s", x.cluster, x.nodeImage, x.kind, x.kubectl)
	x.logf("images %s, %s; cert-manager %s (%d images to load)", x.img, x.waitImg, x.cmManifest, len(x.cmImages))
	x.logf("artifacts and logs: %s", x.artifacts)

	buildDone := make(chan error, 1)
	go func() {
		if x.skipBuild {
			x.logf("E2E_SKIP_BUILD=1: using the existing images")
			buildDone <- x.requireImages(ctx, x.img, x.waitImg, x.readinessImg)
			return
		}
		t0 := time.Now()
		x.logf("make docker-build ...")
		_, err := x.run(ctx, "docker-build", "make", "-C", x.root, "docker-build",
			"VERSION=e2e", "IMG="+x.img, "WAIT_IMG="+x.waitImg, "READINESS_IMG="+x.readinessImg)
		if err == nil {
			x.logf("images built in %s", since(t0))
			recordPhase("make docker-build", t0)
		}
		buildDone <- err
	}()

	clusterErr := func() error {
		t0 := time.Now()
		if err := x.ensureCluster(ctx); err != nil {
			return err
		}
		recordPhase("kind cluster", t0)
		if err := x.blockEgress(ctx); err != nil {
			return err
		}
		t0 = time.Now()
		images := append([]string{}, x.cmImages...)
		images = append(images, x.localImages(ctx, workloadImages)...)
		if err := x.load(ctx, "load-cert-manager-and-workload-images", images...); err != nil {
			return err
		}
		recordPhase("kind load (cert-manager, busybox, nginx)", t0)
		t0 = time.Now()
		if err := x.installCertManager(ctx); err != nil {
			return err
		}
		recordPhase("cert-manager install", t0)
		return nil
	}()
	buildErr := <-buildDone
	if err := errors.Join(buildErr, clusterErr); err != nil {
		return err
	}
	t0 := time.Now()
	if err := x.load(ctx, "load-depends-on", x.img, x.waitImg, x.readinessImg); err != nil {
		return err
	}
	recordPhase("kind load (depends-on)", t0)
	t0 = time.Now()
	if err := x.installDependsOn(ctx); err != nil {
		return err
	}
	recordPhase("depends-on install (until a dry-run Pod is injected)", t0)
	return nil
}

func (x *env) ensureCluster(ctx context.Context) error {
	out, err := x.run(ctx, "kind-get-clusters", x.kind, "get", "clusters")
	if err != nil {
		return err
	}
	exists := false
	for _, c := range strings.Fields(out) {
		exists = exists || c == x.cluster
	}
	if exists {
		x.logf("reusing kind cluster %s (KIND_CLUSTER); it is not deleted afterwards", x.cluster)
		kc, err := x.run(ctx, "kind-get-kubeconfig", x.kind, "get", "kubeconfig", "--name", x.cluster)
		if err != nil {
			return err
		}
		if err := os.WriteFile(x.kubeconfig, []byte(kc), 0o600); err != nil {
			return err
		}
	} else {
		t0 := time.Now()
		x.logf("kind create cluster --name %s --image %s ...", x.cluster, x.nodeImage)
		x.created = true // delete it even if creation fails half-way
		// The kubeconfig goes into the artifacts, never into ~/.kube/config.
		if _, err := x.run(ctx, "kind-create-cluster", x.kind, "create", "cluster", "--name", x.cluster,
			"--image", x.nodeImage, "--kubeconfig", x.kubeconfig, "--wait", "3m"); err != nil {
			return err
		}
		x.logf("cluster created in %s", since(t0))
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", x.kubeconfig)
	if err != nil {
		return err
	}
	cfg.QPS, cfg.Burst = 100, 200 // the availability case creates Pods quickly
	x.cs, err = kubernetes.NewForConfig(cfg)
	return err
}

// blockEgress makes connections from Pods to anything but Pods fail fast
// (REJECT in the node's FORWARD chain; Services are DNATed to Pod IPs before
// that chain, the API server and kubelet are the node itself). Like a network
// that routes nothing, a connection to a ClusterIP that kube-proxy has not
// programmed yet, or to the outside, then fails instead of reaching whatever
// answers on the host's network: some CI sandboxes accept every TCP connection,
// which would make a Service without backends look ready. Single-node
// clusters only (kind's default); otherwise it does nothing.
func (x *env) blockEgress(ctx context.Context) error {
	var nodes *corev1.NodeList
	// A new node gets its podCIDR from the controller manager a moment after it registers.
	if err := retry(ctx, 2*time.Minute, time.Second, func() error {
		var err error
		nodes, err = x.cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
		if err == nil && len(nodes.Items) == 1 && nodes.Items[0].Spec.PodCIDR == "" {
			err = errors.New("node has no podCIDR yet")
		}
		return err
	}); err != nil {
		return err
	}
	if len(nodes.Items) != 1 {
		x.logf("not blocking Pod egress: %d nodes", len(nodes.Items))
		return nil
	}
	cidr := nodes.Items[0].Spec.PodCIDR
	rule := []string{"-s", cidr, "!", "-d", cidr, "-m", "comment", "--comment", "depends-on e2e: no egress from Pods", "-j", "REJECT"}
	node := nodes.Items[0].Name
	check := append([]string{"exec", node, "iptables", "-C", "FORWARD"}, rule...)
	if _, err := x.run(ctx, "block-egress", x.docker, check...); err == nil {
		return nil // reused cluster: already there
	}
	insert := append([]string{"exec", node, "iptables", "-I", "FORWARD", "1"}, rule...)
	if _, err := x.run(ctx, "block-egress", x.docker, insert...); err != nil {
		return fmt.Errorf("block Pod egress on %s: %w", node, err)
	}
	x.logf("Pod egress outside %s rejected on node %s", cidr, node)
	return nil
}

// localImages returns the images the local Docker has, so that kind can
// load them instead of the node pulling them.
func (x *env) localImages(ctx context.Context, images []string) []string {
	var out []string
	for _, img := range images {
		if _, err := x.run(ctx, "docker-inspect", x.docker, "image", "inspect", "--format", "{{.Id}}", img); err == nil {
			out = append(out, img)
		}
	}
	return out
}

func (x *env) requireImages(ctx context.Context, images ...string) error {
	if missing := len(images) - len(x.localImages(ctx, images)); missing > 0 {
		return fmt.Errorf("E2E_SKIP_BUILD=1 but %d of %v are not in the local Docker", missing, images)
	}
	return nil
}

func (x *env) load(ctx context.Context, logName string, images ...string) error {
	if len(images) == 0 {
		return nil
	}
	t0 := time.Now()
	args := append([]string{"load", "docker-image", "--name", x.cluster}, images...)
	if _, err := x.run(ctx, logName, x.kind, args...); err != nil {
		return err
	}
	x.logf("kind load docker-image %s: %s", strings.Join(images, " "), since(t0))
	return nil
}

func (x *env) installCertManager(ctx context.Context) error {
	t0 := time.Now()
	x.logf("installing cert-manager from %s ...", x.cmManifest)
	// Server-side apply: idempotent on a reused cluster, no size limit from
	// the last-applied annotation on the large CRDs.
	if _, err := x.kubectlRun(ctx, "cert-manager-apply", "apply", "--server-side", "--force-conflicts", "-f", x.cmManifest); err != nil {
		return err
	}
	if _, err := x.kubectlRun(ctx, "cert-manager-wait", "-n", certManagerNamespace, "wait", "--for=condition=Available",
		"--timeout=5m", "deployment/cert-manager", "deployment/cert-manager-cainjector", "deployment/cert-manager-webhook"); err != nil {
		return err
	}
	x.logf("cert-manager Available in %s", since(t0))
	return nil
}

// installDependsOn renders deploy/cert-manager with the e2e images (kustomize
// images, through the same renderer as make deploy), applies it and waits
// until an annotated dry-run Pod comes back injected: Certificate issued,
// caBundle injected, Deployment Available and the Service routing to it.
func (x *env) installDependsOn(ctx context.Context) error {
	t0 := time.Now()
	img, err := deploy.ParseImage(x.img, deploy.WebhookImage)
	if err != nil {
		return err
	}
	readinessImg, err := deploy.ParseImage(x.readinessImg, deploy.ReadinessImage)
	if err != nil {
		return err
	}
	manifest, err := deploy.Render(filepath.Join(x.root, "deploy", "cert-manager"),
		deploy.Options{Images: []types.Image{img, readinessImg}, WaitImage: x.waitImg})
	if err != nil {
		return err
	}
	path := filepath.Join(x.artifacts, "depends-on.yaml")
	if err := os.WriteFile(path, manifest, 0o644); err != nil {
		return err
	}
	existed := false
	if _, err := x.cs.AppsV1().Deployments(deploy.Namespace).Get(ctx, deploy.Name, metav1.GetOptions{}); err == nil {
		existed = true
	}
	// cert-manager's own webhook may need a few more seconds before it admits
	// the Issuers and Certificates.
	x.logf("installing depends-on (%s) ...", path)
	if err := retry(ctx, 3*time.Minute, 3*time.Second, func() error {
		_, err := x.kubectlRun(ctx, "depends-on-apply", "apply", "--server-side", "--force-conflicts", "-f", path)
		return err
	}); err != nil {
		return fmt.Errorf("apply depends-on: %w", err)
	}
	if existed {
		// A reused cluster runs the previous build under the same tag.
		if _, err := x.kubectlRun(ctx, "depends-on-restart", "-n", deploy.Namespace, "rollout", "restart", "deployment/"+deploy.Name); err != nil {
			return err
		}
	}
	if _, err := x.kubectlRun(ctx, "depends-on-certificate", "-n", deploy.Namespace, "wait", "--for=condition=Ready",
		"--timeout=3m", "certificate/"+servingCertificateName); err != nil {
		return err
	}
	if _, err := x.kubectlRun(ctx, "depends-on-rollout", "-n", deploy.Namespace, "rollout", "status",
		"deployment/"+deploy.Name, "--timeout=5m"); err != nil {
		return err
	}
	if _, err := x.kubectlRun(ctx, "depends-on-readiness-rollout", "-n", deploy.Namespace, "rollout", "status",
		"deployment/"+deploy.ReadinessName, "--timeout=5m"); err != nil {
		return err
	}
	// Old replicas drain for a while after the rollout counts them gone; the
	// metrics cases need every Pod that can serve to be a current one.
	if err := retry(ctx, 2*time.Minute, time.Second, func() error {
		pods, err := x.cs.CoreV1().Pods(deploy.Namespace).List(ctx, metav1.ListOptions{LabelSelector: webhookLabelSelector})
		if err != nil {
			return err
		}
		for _, p := range pods.Items {
			if p.DeletionTimestamp != nil {
				return fmt.Errorf("webhook Pod %s is still terminating", p.Name)
			}
		}
		return nil
	}); err != nil {
		return err
	}
	if err := retry(ctx, 2*time.Minute, time.Second, func() error {
		mwc, err := x.cs.AdmissionregistrationV1().MutatingWebhookConfigurations().Get(ctx, deploy.WebhookConfiguration, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if len(mwc.Webhooks) == 0 || len(mwc.Webhooks[0].ClientConfig.CABundle) == 0 {
			return errors.New("caBundle not injected yet")
		}
		return nil
	}); err != nil {
		return fmt.Errorf("MutatingWebhookConfiguration %s: %w", deploy.WebhookConfiguration, err)
	}
	x.logf("webhook Available, caBundle injected (%s)", since(t0))
	if err := x.checkMatchConditions(ctx); err != nil {
		return err
	}
	if err := retry(ctx, 2*time.Minute, time.Second, func() error { return x.probeInjection(ctx) }); err != nil {
		return fmt.Errorf("the webhook does not inject: %w", err)
	}
	x.logf("depends-on installed and injecting in %s", since(t0))
	return nil
}

// checkMatchConditions records whether the installed MutatingWebhookConfiguration
// still has the matchConditions of deploy/base (they keep unannotated Pods away
// from the webhook), and cert-manager's version.
func (x *env) checkMatchConditions(ctx context.Context) error {
	d, err := x.cs.AppsV1().Deployments(certManagerNamespace).Get(ctx, "cert-manager", metav1.GetOptions{})
	if err != nil {
		return err
	}
	if cs := d.Spec.Template.Spec.Containers; len(cs) > 0 {
		if i := strings.LastIndex(cs[0].Image, ":"); i > strings.LastIndex(cs[0].Image, "/") {
			x.cmVersion = cs[0].Image[i+1:]
		}
	}
	mwc, err := x.cs.AdmissionregistrationV1().MutatingWebhookConfigurations().Get(ctx, deploy.WebhookConfiguration, metav1.GetOptions{})
	if err != nil {
		return err
	}
	if len(mwc.Webhooks) > 0 && len(mwc.Webhooks[0].MatchConditions) == 0 {
		x.matchConditionsStripped = true
		note := fmt.Sprintf("WARNING: MutatingWebhookConfiguration %s has no matchConditions after cert-manager %s injected its caBundle: every Pod creation in application namespaces reaches the webhook", deploy.WebhookConfiguration, x.cmVersion)
		x.logf("%s", note)
		results.Lock()
		results.notes = append(results.notes, note)
		results.Unlock()
	}
	return nil
}

// probeInjection creates an annotated Pod with dryRun=All: the API server runs
// admission, including our webhook, and stores nothing.
func (x *env) probeInjection(ctx context.Context) error {
	pod := tinyPod("e2e-probe", map[string]string{webhook.AnnotationServices: "kubernetes"})
	got, err := x.cs.CoreV1().Pods("default").Create(ctx, pod, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
	if err != nil {
		return err
	}
	if len(got.Spec.InitContainers) == 0 || got.Spec.InitContainers[0].Name != webhook.WaitContainerName {
		return errors.New("dry-run Pod came back without the wait-for-service init container")
	}
	if got.Spec.InitContainers[0].Image != x.waitImg {
		return fmt.Errorf("injected image %s, want %s", got.Spec.InitContainers[0].Image, x.waitImg)
	}
	return nil
}

func (x *env) teardown() {
	if x == nil {
		return
	}
	switch {
	case !x.created:
	case x.keep:
		x.logf("E2E_KEEP=1: cluster %s kept; kubeconfig %s (or: %s export kubeconfig --name %s)", x.cluster, x.kubeconfig, x.kind, x.cluster)
	default:
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		t0 := time.Now()
		if _, err := x.run(ctx, "kind-delete-cluster", x.kind, "delete", "cluster", "--name", x.cluster); err != nil {
			x.logf("deleting cluster %s: %v", x.cluster, err)
		} else {
			x.logf("cluster %s deleted in %s", x.cluster, since(t0))
		}
	}
}

// dumpArtifacts saves what a failure needs: kind's node logs, the webhook's
// logs and the cluster state.
func (x *env) dumpArtifacts() {
	if x == nil || x.cs == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	x.logf("FAILED: collecting logs into %s", x.artifacts)
	if _, err := x.run(ctx, "kind-export-logs", x.kind, "export", "logs", filepath.Join(x.artifacts, "kind-logs"), "--name", x.cluster); err != nil {
		x.logf("kind export logs: %v", err)
	}
	state := [][]string{
		{"get", "nodes,pods,services,deployments,replicasets,endpointslices", "-A", "-o", "wide"},
		{"get", "events", "-A", "--sort-by=.lastTimestamp"},
		{"-n", deploy.Namespace, "describe", "deployments,pods,certificates,issuers"},
		{"get", "mutatingwebhookconfigurations", "-o", "yaml"},
	}
	var b strings.Builder
	for _, args := range state {
		out, err := x.kubectlRun(ctx, "", args...)
		fmt.Fprintf(&b, "$ kubectl %s\n%s\n", strings.Join(args, " "), out)
		if err != nil {
			fmt.Fprintf(&b, "(error: %v)\n", err)
		}
	}
	_ = os.WriteFile(filepath.Join(x.artifacts, "cluster-state.txt"), []byte(b.String()), 0o644)
	for _, ns := range []string{deploy.Namespace, certManagerNamespace} {
		x.dumpPodLogs(ctx, ns, filepath.Join(x.artifacts, "logs-"+ns))
	}
	x.logf("artifacts: %s", x.artifacts)
}

// dumpPodLogs writes the logs of every container (current and previous) of
// every Pod in ns into dir.
func (x *env) dumpPodLogs(ctx context.Context, ns, dir string) {
	pods, err := x.cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		return
	}
	_ = os.MkdirAll(dir, 0o755)
	for _, p := range pods.Items {
		var cs []corev1.Container
		cs = append(cs, p.Spec.InitContainers...)
		cs = append(cs, p.Spec.Containers...)
		for _, c := range cs {
			for _, previous := range []bool{false, true} {
				raw, err := x.cs.CoreV1().Pods(ns).GetLogs(p.Name, &corev1.PodLogOptions{
					Container: c.Name, Timestamps: true, Previous: previous}).DoRaw(ctx)
				if err != nil || len(raw) == 0 {
					continue
				}
				name := p.Name + "_" + c.Name
				if previous {
					name += "_previous"
				}
				_ = os.WriteFile(filepath.Join(dir, name+".log"), raw, 0o644)
			}
		}
	}
}

func (x *env) printSummary(code int) {
	if x == nil {
		return
	}
	results.Lock()
	defer results.Unlock()
	var b strings.Builder
	status := "PASS"
	if code != 0 {
		status = "FAIL"
	}
	fmt.Fprintf(&b, "\n==== depends-on e2e summary: %s, wall time %s ====\n", status, since(x.start))
	for _, p := range results.phases {
		fmt.Fprintf(&b, "  %-58s %8s\n", p.name, p.d.Round(100*time.Millisecond))
	}
	if n := len(results.delays); n > 0 {
		fmt.Fprintf(&b, "dependency ready -> app container started (%d cases):\n", n)
		fmt.Fprintf(&b, "  %-30s %14s %16s %18s\n", "case", "first log line", "status.startedAt", "(wait-for-service)")
		var fromLog, fromStarted, detect []time.Duration
		for _, d := range results.delays {
			fmt.Fprintf(&b, "  %-30s %14s %16s %18s\n", d.name, d.fromLog.Round(time.Millisecond), d.fromStartedAt.Round(time.Millisecond), d.detect.Round(time.Millisecond))
			fromLog = append(fromLog, d.fromLog)
			fromStarted = append(fromStarted, d.fromStartedAt)
			detect = append(detect, d.detect)
		}
		fmt.Fprintf(&b, "  %-30s %14s %16s %18s\n", "p50", median(fromLog).Round(time.Millisecond), median(fromStarted).Round(time.Millisecond), median(detect).Round(time.Millisecond))
		fmt.Fprintf(&b, "  %-30s %14s %16s %18s\n", "max", maxDur(fromLog).Round(time.Millisecond), maxDur(fromStarted).Round(time.Millisecond), maxDur(detect).Round(time.Millisecond))
		fmt.Fprintf(&b, "  (wait-for-service: when it logged all targets ready; the rest is the kubelet starting containers)\n")
		fmt.Fprintf(&b, "  (startedAt has 1 s resolution, so it can read up to 1 s early)\n")
	}
	printObjectWaits(&b)
	if a := results.avail; a != nil {
		fmt.Fprintf(&b, "rolling restart of the webhook: %d annotated Pods created over %s, %d failed; rollout took %s; old replicas answered >= %.0f admission requests while draining, new replicas %.0f\n",
			a.created, a.window.Round(100*time.Millisecond), a.failed, a.rollout.Round(100*time.Millisecond), a.servedDraining, a.servedByNew)
	}
	for _, n := range results.notes {
		fmt.Fprintf(&b, "%s\n", n)
	}
	fmt.Print(b.String())
	_ = os.WriteFile(filepath.Join(x.artifacts, "summary.txt"), []byte(b.String()), 0o644)
}

func median(ds []time.Duration) time.Duration {
	s := append([]time.Duration{}, ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	n := len(s)
	if n == 0 {
		return 0
	}
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

func maxDur(ds []time.Duration) time.Duration {
	var m time.Duration
	for i, d := range ds {
		if i == 0 || d > m {
			m = d
		}
	}
	return m
}

// requireSetup skips nothing: a test binary without a working cluster fails.
func requireSetup(t *testing.T) {
	t.Helper()
	if e == nil || e.cs == nil || setupErr != nil {
		t.Fatalf("setup did not complete: %v", setupErr)
	}
}

// webhookPods returns the running webhook Pods.
func webhookPods(ctx context.Context) ([]corev1.Pod, error) {
	list, err := e.cs.CoreV1().Pods(deploy.Namespace).List(ctx, metav1.ListOptions{LabelSelector: webhookLabelSelector})
	if err != nil {
		return nil, err
	}
	var out []corev1.Pod
	for _, p := range list.Items {
		if p.DeletionTimestamp == nil && p.Status.Phase == corev1.PodRunning {
			out = append(out, p)
		}
	}
	return out, nil
}
