package integration

import (
	"maps"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/depends-on/depends-on/deploy"
	"github.com/depends-on/depends-on/webhook"
)

// Case 1: the docs' two examples, created through the API, are stored exactly
// as their golden files say.
func TestDocsExamplesStoredAsGoldens(t *testing.T) {
	useWebhook(t)
	for _, name := range docsExamples {
		t.Run(name, func(t *testing.T) { expectStoredAsGolden(t, name) })
	}
}

// docsExamples are the goldens of the docs' two init-container examples.
var docsExamples = []string{"myapp-pod", "init-demo"}

// Every other golden of webhook/testdata as well: generateName, native
// sidecars, the Pod's own init containers, re-created and stale-record Pods.
func TestOtherGoldensStoredAsGoldens(t *testing.T) {
	useWebhook(t)
	inputs, err := filepath.Glob(filepath.Join(suite.repoRoot, "webhook", "testdata", "*.injected.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	seen := 0
	for _, golden := range inputs {
		name := strings.TrimSuffix(filepath.Base(golden), ".injected.yaml")
		if slices.Contains(docsExamples, name) {
			continue
		}
		seen++
		t.Run(name, func(t *testing.T) { expectStoredAsGolden(t, name) })
	}
	if seen < 5 {
		t.Fatalf("only %d goldens found in webhook/testdata", seen)
	}
}

// expectStoredAsGolden creates webhook/testdata/<name>.yaml through the API
// and compares the stored Pod with <name>.injected.yaml.
func expectStoredAsGolden(t *testing.T, name string) {
	t.Helper()
	in := loadPod(t, name+".yaml")
	golden := loadPod(t, name+".injected.yaml")
	// The goldens were generated for their own namespace or, without one, for
	// the request namespace "default": it is part of the Service FQDNs
	// wait-for-service is given, so the Pods are created there.
	if in.Namespace == "" {
		in.Namespace = metav1.NamespaceDefault
	}
	ensureNamespace(t, in.Namespace)
	if in.Name != "" {
		// Several goldens share a name; the name is not part of the injection.
		in.Name = "golden-" + name
		golden.Name = in.Name
	}

	before := snapshot(t)
	createPod(t, in)
	want := counts{requests: 1, decisions: map[webhook.Decision]float64{webhook.DecisionPatched: 1}}
	expectDelta(t, before, want)
	stored := getPod(t, in.Namespace, in.Name)

	// What the webhook injected (the containers, volumes and mounts its record
	// names, and the record), as stored, against the golden as written: no
	// normalisation. The webhook already sets every field API-server defaulting
	// would fill in a container (imagePullPolicy, terminationMessagePath and
	// Policy, requests), so defaulting must leave them alone; if it did not, a
	// reinvocation would see a difference and inject again.
	expectSameParts(t, name, ourParts(t, stored), ourParts(t, golden))

	// The whole Pod: the golden put through the same API server without the
	// webhook (a dry-run in an excluded namespace) must be what was stored,
	// so the injection also changed nothing else. This accounts for the
	// defaults the API server adds to the user's part of the Pod (restartPolicy,
	// dnsPolicy, schedulerName, tolerations from DefaultTolerationSeconds,
	// the app containers' imagePullPolicy and port protocol, ...) without
	// listing them here. envtest's kube-apiserver runs without the
	// ServiceAccount admission plugin, so no kube-api-access projected volume
	// and mounts are added (in a cluster they are, before the webhook is
	// called, and the injected volume and mounts are appended after them).
	wantPod := defaulted(t, golden)
	if !apiequality.Semantic.DeepEqual(stored.Spec, wantPod.Spec) {
		t.Errorf("stored spec differs from the golden's after defaulting\n--- stored:\n%s\n--- golden, defaulted:\n%s",
			toYAML(t, stored.Spec), toYAML(t, wantPod.Spec))
	}
	if !maps.Equal(stored.Annotations, golden.Annotations) || !maps.Equal(stored.Labels, golden.Labels) {
		t.Errorf("stored metadata differs from the golden's:\nannotations %v\nwant        %v\nlabels %v\nwant   %v",
			stored.Annotations, golden.Annotations, stored.Labels, golden.Labels)
	}
}

// Case 2: invalid annotations fail the create call with a message naming the
// annotation and the entry; nothing is stored.
func TestInvalidAnnotationsRejected(t *testing.T) {
	useWebhook(t)
	ns := newNamespace(t, nil)
	const denied = `admission webhook "` + deploy.WebhookName + `" denied the request: depends-on: `
	for _, tc := range []struct {
		name        string
		annotations map[string]string
		want        []string
	}{{
		name:        "service-port",
		annotations: map[string]string{webhook.AnnotationServices: "myservice, mydb:99999"},
		want: []string{denied + "1 problem: ",
			`metadata.annotations[depends-on.dev/services]: Invalid value: "mydb:99999": port "99999" must be a number between 1 and 65535`},
	}, {
		name:        "tcp-without-port",
		annotations: map[string]string{webhook.AnnotationTCP: "db.example.com"},
		want:        []string{`metadata.annotations[depends-on.dev/tcp]: Invalid value: "db.example.com": expected host:port`},
	}, {
		name:        "http-scheme",
		annotations: map[string]string{webhook.AnnotationHTTP: "ftp://files.example.com/ready"},
		want:        []string{`metadata.annotations[depends-on.dev/http]: Invalid value: "ftp://files.example.com/ready": URL must start with http:// or https://`},
	}, {
		name:        "fetch-relative-path",
		annotations: map[string]string{webhook.AnnotationFetch: "index.html=http://info.cern.ch"},
		want:        []string{`metadata.annotations[depends-on.dev/fetch]: Invalid value: "index.html=http://info.cern.ch": path "index.html" must be absolute`},
	}, {
		name:        "timeout",
		annotations: map[string]string{webhook.AnnotationServices: "mydb", webhook.AnnotationTimeout: "soon"},
		want:        []string{`metadata.annotations[depends-on.dev/timeout]: Invalid value: "soon": not a duration`},
	}, {
		name:        "unknown-key",
		annotations: map[string]string{"depends-on.dev/service": "mydb"},
		want: []string{denied + "1 problem: ",
			`metadata.annotations[depends-on.dev/service]: Invalid value: "mydb": unknown annotation depends-on.dev/service; did you mean depends-on.dev/services?`},
	}, {
		name:        "every-problem-listed",
		annotations: map[string]string{webhook.AnnotationServices: "mydb:0, cache", "depends-on.dev/timout": "5m"},
		want: []string{denied + "2 problems: ",
			`metadata.annotations[depends-on.dev/timout]: Invalid value: "5m": unknown annotation depends-on.dev/timout; did you mean depends-on.dev/timeout?`,
			`metadata.annotations[depends-on.dev/services]: Invalid value: "mydb:0": port "0" must be a number between 1 and 65535`},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			before := snapshot(t)
			pod := simplePod(ns, tc.name, tc.annotations)
			err := suite.client.Create(testCtx(t), pod)
			if err == nil {
				t.Fatalf("create succeeded; stored init containers %v", names(pod.Spec.InitContainers))
			}
			// The webhook answers 422 Invalid; the API server passes code and reason on.
			if !apierrors.IsInvalid(err) {
				t.Errorf("error is not 422 Invalid (reason %q): %v", apierrors.ReasonForError(err), err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error lacks %q:\n%v", w, err)
				}
			}
			expectNoPod(t, ns, tc.name)
			expectDelta(t, before, counts{requests: 1, decisions: map[webhook.Decision]float64{webhook.DecisionDenied: 1}})
		})
	}
}

// Case 3: Pods without a depends-on.dev/ annotation are admitted unchanged,
// and the API server never calls the webhook for them (matchConditions).
func TestUnannotatedPodsNeverReachWebhook(t *testing.T) {
	useWebhook(t)
	ns := newNamespace(t, nil)
	pods := []*corev1.Pod{
		simplePod(ns, "no-annotations", nil),
		// Keys that only look like ours: the condition is the exact prefix "depends-on.dev/".
		simplePod(ns, "lookalike-annotations", map[string]string{
			"example.com/owner":                   "team-a",
			"depends-on.dev.example.com/services": "mydb",
			"x.depends-on.dev/services":           "mydb",
			"example.com/depends-on.dev":          "mydb",
		}),
	}
	// A mirror Pod (what the kubelet creates for a static Pod) is excluded
	// even when annotated: the not-mirror-pod condition.
	mirror := simplePod(ns, "mirror", map[string]string{
		corev1.MirrorPodAnnotationKey: "static-pod-hash",
		webhook.AnnotationServices:    "mydb",
	})
	mirror.Spec.NodeName = "node-1"
	pods = append(pods, mirror)

	before := snapshot(t)
	for _, pod := range pods {
		want := defaulted(t, pod)
		createPod(t, pod)
		stored := getPod(t, ns, pod.Name)
		if !apiequality.Semantic.DeepEqual(stored.Spec, want.Spec) || !maps.Equal(stored.Annotations, want.Annotations) {
			t.Errorf("Pod %s was changed on admission\n--- stored:\n%s\n--- without the webhook:\n%s", pod.Name, toYAML(t, stored), toYAML(t, want))
		}
	}
	// A last, annotated Pod goes through the webhook. Once its call is counted,
	// the counters must show exactly that one call: the API server sent none of
	// the Pods above.
	createPod(t, simplePod(ns, "sentinel", map[string]string{webhook.AnnotationServices: "mydb"}))
	expectDelta(t, before, counts{requests: 1, decisions: map[webhook.Decision]float64{webhook.DecisionPatched: 1}})
}

// Case 5: in a namespace enforcing Pod Security "restricted", an annotated
// restricted-compliant Pod is admitted with the injected containers. Pod
// Security admission runs after the mutating webhooks, so it judged the
// injected containers too.
func TestPodSecurityRestrictedAdmitsInjectedPod(t *testing.T) {
	useWebhook(t)
	ns := newNamespace(t, map[string]string{
		"pod-security.kubernetes.io/enforce":         "restricted",
		"pod-security.kubernetes.io/enforce-version": "latest",
	})
	annotations := map[string]string{
		webhook.AnnotationServices: "mydb:5432",
		webhook.AnnotationFetch:    "/etc/app/config.json=http://config.example.com/app.json",
	}
	// Compliant on its own, with no Pod-level securityContext: the injected
	// containers must carry their own restricted settings.
	restricted := func(name string) *corev1.Pod {
		pod := simplePod(ns, name, annotations)
		pod.Spec.Containers[0].SecurityContext = &corev1.SecurityContext{
			RunAsNonRoot:             ptr.To(true),
			AllowPrivilegeEscalation: ptr.To(false),
			Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
			SeccompProfile:           &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
		}
		return pod
	}

	before := snapshot(t)
	pod := restricted("compliant")
	createPod(t, pod)
	stored := getPod(t, ns, pod.Name)
	if got, want := names(stored.Spec.InitContainers), []string{webhook.WaitContainerName, webhook.FetchContainerName}; !slices.Equal(got, want) {
		t.Errorf("stored init containers %v, want %v", got, want)
	}
	if len(stored.Spec.Volumes) != 1 || stored.Spec.Volumes[0].Name != webhook.FetchVolumeName {
		t.Errorf("stored volumes %+v, want only %s", stored.Spec.Volumes, webhook.FetchVolumeName)
	}

	// Control: Pod Security is enforced in this API server. The same Pod with
	// one non-compliant setting in the app container is rejected, after
	// injection, and the rejection names only the app container.
	bad := restricted("non-compliant")
	bad.Spec.Containers[0].SecurityContext.AllowPrivilegeEscalation = nil
	err := suite.client.Create(testCtx(t), bad)
	if !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), `violates PodSecurity "restricted:latest"`) {
		t.Fatalf("non-compliant Pod: want a Pod Security rejection, got %v", err)
	}
	if !strings.Contains(err.Error(), `container "app"`) ||
		strings.Contains(err.Error(), webhook.WaitContainerName) || strings.Contains(err.Error(), `"`+webhook.FetchContainerName+`"`) {
		t.Errorf("rejection should name the app container and none of the injected ones: %v", err)
	}
	expectNoPod(t, ns, bad.Name)
	expectDelta(t, before, counts{requests: 2, decisions: map[webhook.Decision]float64{webhook.DecisionPatched: 2}})
}

// Case 7: a server-side dry-run create returns the mutated Pod and stores nothing.
func TestDryRunCreateReturnsInjectedPod(t *testing.T) {
	useWebhook(t)
	in := loadPod(t, "myapp-pod.yaml")
	golden := loadPod(t, "myapp-pod.injected.yaml")
	in.Namespace = metav1.NamespaceDefault // the golden's request namespace
	in.Name = "myapp-pod-dry-run"

	before := snapshot(t)
	if err := suite.client.Create(testCtx(t), in, client.DryRunAll); err != nil {
		t.Fatalf("dry-run create: %v", err)
	}
	expectSameParts(t, "dry-run response", partsOf(in), partsOf(golden))
	expectNoPod(t, in.Namespace, in.Name)
	expectDelta(t, before, counts{requests: 1, decisions: map[webhook.Decision]float64{webhook.DecisionPatched: 1}})
}
