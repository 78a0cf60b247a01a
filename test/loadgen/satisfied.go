package main

// -satisfied: the webhook checks object-only Pods against the real readiness
// service (issue 14). A real API server (envtest) holds two completed Jobs;
// the real readiness binary watches them and lets the webhook's
// ServiceAccount ask /v1/status; the webhook runs with its projected token
// (created with the TokenRequest API, bound to a Pod, as the kubelet would
// mount it). Every review is then answered from the webhook's cache, but for
// one request to the readiness service per target and TTL.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/depends-on/depends-on/certs/certgen"
	"github.com/depends-on/depends-on/deploy"
	"github.com/depends-on/depends-on/test/internal/readinessenv"
	"github.com/depends-on/depends-on/webhook"
)

// satisfiedJobs are the Jobs the load's Pods depend on, completed.
var satisfiedJobs = []string{"migrate", "seed"}

// objectPod writes the Pod of path with its depends-on.dev/ annotations
// replaced by depends-on.dev/jobs on satisfiedJobs, and returns the file and
// the Pod's namespace.
func objectPod(path, dir string) (string, string, error) {
	src, err := os.ReadFile(path)
	if err != nil {
		return "", "", err
	}
	var pod map[string]any
	if err := json.Unmarshal(src, &pod); err != nil {
		return "", "", fmt.Errorf("%s: %w", path, err)
	}
	md, _ := pod["metadata"].(map[string]any)
	ns, _ := md["namespace"].(string)
	ann, _ := md["annotations"].(map[string]any)
	if ann == nil || ns == "" {
		return "", "", fmt.Errorf("%s: want a Pod with a namespace and annotations", path)
	}
	for k := range ann {
		if strings.HasPrefix(k, webhook.Prefix) {
			delete(ann, k)
		}
	}
	ann[webhook.AnnotationJobs] = strings.Join(satisfiedJobs, ", ")
	out, err := json.Marshal(pod)
	if err != nil {
		return "", "", err
	}
	p := filepath.Join(dir, "object-pod.json")
	return p, ns, os.WriteFile(p, out, 0o600)
}

// readinessBackend is the API server and readiness service behind the webhook.
type readinessBackend struct {
	args    []string // the webhook's flags for it
	metrics string   // the readiness service's /metrics
	stop    func()
}

// startReadiness starts envtest and the readiness service, creates the
// completed Jobs in ns and the webhook's token, and returns the webhook's flags.
func startReadiness(root, dir, ns string) (*readinessBackend, error) {
	assets := os.Getenv("KUBEBUILDER_ASSETS")
	if assets == "" {
		return nil, errors.New("-satisfied needs KUBEBUILDER_ASSETS (kube-apiserver and etcd, for the real readiness service)")
	}
	var stops []func()
	b := &readinessBackend{stop: func() {
		for i := len(stops) - 1; i >= 0; i-- {
			stops[i]()
		}
	}}
	fail := func(err error) (*readinessBackend, error) { b.stop(); return nil, err }

	env := &envtest.Environment{BinaryAssetsDirectory: assets, ControlPlaneStartTimeout: 3 * time.Minute, ControlPlaneStopTimeout: time.Minute}
	cfg, err := env.Start()
	if err != nil {
		return nil, fmt.Errorf("start envtest: %w", err)
	}
	stops = append(stops, func() { _ = env.Stop() })
	cfg.WarningHandler = rest.NoWarnings{}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return fail(err)
	}
	c, err := client.New(cfg, client.Options{Scheme: clientgoscheme.Scheme})
	if err != nil {
		return fail(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	fmt.Println("building ./cmd/readiness ...")
	bin, err := readinessenv.Build(root, dir, false)
	if err != nil {
		return fail(err)
	}
	kubeconfig, err := readinessenv.Install(ctx, cfg, c, dir)
	if err != nil {
		return fail(err)
	}
	ca, err := certgen.NewCA("loadgen-readiness-ca", 0)
	if err != nil {
		return fail(err)
	}
	p, err := readinessenv.NewProcess(bin, kubeconfig, dir, ca)
	if err != nil {
		return fail(err)
	}
	p.ExtraArgs = []string{"--zap-log-level=info", "--status-clients=system:serviceaccount:" + deploy.Namespace + ":" + deploy.Name}
	if err := p.Start(); err != nil {
		return fail(err)
	}
	stops = append(stops, func() { _ = p.Stop() })
	b.metrics = p.MetricsURL()

	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		return fail(err)
	}
	for _, name := range satisfiedJobs {
		if err := completedJob(ctx, cs, ns, name); err != nil {
			return fail(err)
		}
	}
	_, token, err := readinessenv.PodToken(ctx, cs, deploy.Namespace, deploy.Name, "depends-on-webhook-loadgen")
	if err != nil {
		return fail(err)
	}
	tokenFile, caFile := filepath.Join(dir, "readiness-token"), filepath.Join(dir, "readiness-ca.crt")
	if err := os.WriteFile(tokenFile, []byte(token), 0o600); err != nil {
		return fail(err)
	}
	if err := os.WriteFile(caFile, ca.CertPEM, 0o600); err != nil {
		return fail(err)
	}
	b.args = []string{"--readiness-url=" + p.URL(), "--readiness-ca-file=" + caFile, "--satisfied-token-file=" + tokenFile}
	fmt.Printf("readiness service: pid %d on %s (envtest API server %s); Jobs %s/%v completed\n", p.Pid(), p.URL(), cfg.Host, ns, satisfiedJobs)
	return b, nil
}

// completedJob creates a Job and writes the status the Job controller would
// (none runs in envtest): SuccessCriteriaMet then Complete.
func completedJob(ctx context.Context, cs kubernetes.Interface, ns, name string) error {
	j, err := cs.BatchV1().Jobs(ns).Create(ctx, &batchv1.Job{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: batchv1.JobSpec{BackoffLimit: ptr.To[int32](0), Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{
			RestartPolicy: corev1.RestartPolicyNever,
			Containers:    []corev1.Container{{Name: "job", Image: "busybox:1.36"}},
		}}},
	}, metav1.CreateOptions{})
	if err != nil {
		return err
	}
	now := metav1.Now()
	start := metav1.NewTime(now.Add(-time.Second))
	cond := func(typ batchv1.JobConditionType) batchv1.JobCondition {
		return batchv1.JobCondition{Type: typ, Status: corev1.ConditionTrue, Reason: "CompletionsReached",
			Message: "Reached expected number of succeeded pods", LastProbeTime: now, LastTransitionTime: now}
	}
	j.Status = batchv1.JobStatus{StartTime: &start, CompletionTime: &now, Succeeded: 1,
		Conditions: []batchv1.JobCondition{cond(batchv1.JobSuccessCriteriaMet), cond(batchv1.JobComplete)}}
	if _, err := cs.BatchV1().Jobs(ns).UpdateStatus(ctx, j, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("complete Job %s: %w", name, err)
	}
	return nil
}

// metricLines returns the lines of url's /metrics that start with prefix.
func metricLines(url, prefix string) string {
	resp, err := http.Get(url)
	if err != nil {
		return err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, prefix) && !strings.HasSuffix(l, " 0") {
			out = append(out, strings.TrimPrefix(l, prefix))
		}
	}
	return prefix + " " + strings.Join(out, " ")
}
