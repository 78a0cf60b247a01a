package deploy_test

import (
	"context"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apiserver/pkg/admission"
	celplugin "k8s.io/apiserver/pkg/admission/plugin/cel"
	"k8s.io/apiserver/pkg/admission/plugin/webhook"
	"k8s.io/apiserver/pkg/admission/plugin/webhook/matchconditions"
	"k8s.io/apiserver/pkg/authentication/user"
	"k8s.io/apiserver/pkg/cel/environment"
	psapi "k8s.io/pod-security-admission/api"
	"k8s.io/pod-security-admission/policy"
	"k8s.io/utils/ptr"

	dowebhook "github.com/depends-on/depends-on/webhook"
)

var (
	podGVK = schema.GroupVersionKind{Version: "v1", Kind: "Pod"}
	podGVR = schema.GroupVersionResource{Version: "v1", Resource: "pods"}
)

// TestMatchConditionsCompile compiles the webhook's matchConditions the way
// the API server validates a new or updated webhook configuration.
func TestMatchConditionsCompile(t *testing.T) {
	for _, name := range append([]string{"base"}, overlaysForTest()...) {
		w := webhookConfig(t, renderAll(t).overlays[name]).Webhooks[0]
		if len(w.MatchConditions) == 0 {
			t.Fatalf("%s: no matchConditions: failurePolicy Fail would apply to every Pod", name)
		}
		var exprs []celplugin.ExpressionAccessor
		for _, mc := range w.MatchConditions {
			exprs = append(exprs, &matchconditions.MatchCondition{Name: mc.Name, Expression: mc.Expression})
		}
		compiler := celplugin.NewConditionCompiler(environment.MustBaseEnvSet(environment.DefaultCompatibilityVersion()))
		eval := compiler.CompileCondition(exprs, celplugin.OptionalVariableDeclarations{HasAuthorizer: true}, environment.NewExpressions)
		for _, err := range eval.CompilationErrors() {
			t.Errorf("%s: matchConditions do not compile: %v", name, err)
		}
	}
}

func overlaysForTest() []string { return installs() }

// TestMatchConditionsSelectAnnotatedPods evaluates the matchConditions with
// the API server's own matcher on a table of Pods.
func TestMatchConditionsSelectAnnotatedPods(t *testing.T) {
	w := webhookConfig(t, renderAll(t).overlays["base"]).Webhooks[0]
	accessor := webhook.NewMutatingWebhookAccessor("test", "depends-on", &w)
	matcher := accessor.GetCompiledMatcher(celplugin.NewConditionCompiler(environment.MustBaseEnvSet(environment.DefaultCompatibilityVersion())))

	for _, tc := range []struct {
		name        string
		annotations map[string]string
		want        bool
	}{
		{"no annotations", nil, false},
		{"empty annotations", map[string]string{}, false},
		{"unrelated annotations", map[string]string{"example.com/owner": "team-a", "prometheus.io/scrape": "true"}, false},
		{"similar prefix", map[string]string{"depends-on.dev.example/services": "db", "x.depends-on.dev/services": "db"}, false},
		{"services", map[string]string{"depends-on.dev/services": "mydb:5432, myservice"}, true},
		{"tcp", map[string]string{"depends-on.dev/tcp": "db:5432"}, true},
		{"http", map[string]string{"depends-on.dev/http": "http://api/healthz"}, true},
		{"fetch", map[string]string{"depends-on.dev/fetch": "http://cfg/x /work/x"}, true},
		{"timeout only", map[string]string{"depends-on.dev/timeout": "1m"}, true},
		// Sent (the prefix matches) so a re-created Pod is handled; the
		// webhook itself decides it has nothing to do.
		{"only injected", map[string]string{"depends-on.dev/injected": "true"}, true},
		{"services among others", map[string]string{"a": "b", "depends-on.dev/services": "db"}, true},
		{"mirror pod", map[string]string{"kubernetes.io/config.mirror": "abc", "depends-on.dev/services": "db"}, false},
		{"mirror pod without depends-on", map[string]string{"kubernetes.io/config.mirror": "abc"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pod := &corev1.Pod{
				TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
				ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "default", Annotations: tc.annotations},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "nginx:1.27"}}},
			}
			attr := admission.NewAttributesRecord(pod, nil, podGVK, "default", "p", podGVR, "", admission.Create,
				&metav1.CreateOptions{}, false, &user.DefaultInfo{Name: "alice"})
			res := matcher.Match(context.Background(), &admission.VersionedAttributes{
				Attributes: attr, VersionedObject: admission.NewLazyObject(pod), VersionedKind: podGVK,
			}, nil, nil)
			if res.Error != nil {
				t.Fatalf("match error (failurePolicy Fail would reject the Pod): %v", res.Error)
			}
			if res.Matches != tc.want {
				t.Errorf("matches = %v (failed condition %q), want %v", res.Matches, res.FailedConditionName, tc.want)
			}
		})
	}
}

var restrictedLatest = psapi.LevelVersion{Level: psapi.LevelRestricted, Version: psapi.LatestVersion()}

func evaluateRestricted(t *testing.T, what string, meta *metav1.ObjectMeta, spec *corev1.PodSpec) {
	t.Helper()
	evaluator, err := policy.NewEvaluator(policy.DefaultChecks(), nil)
	if err != nil {
		t.Fatal(err)
	}
	res := policy.AggregateCheckResults(evaluator.EvaluatePod(restrictedLatest, meta, spec))
	if !res.Allowed {
		t.Errorf("%s violates Pod Security restricted:latest: %s", what, res.ForbiddenDetail())
	}
}

// TestDeploymentPodSecurityRestricted: the webhook's Pods run in a namespace
// that enforces restricted.
func TestDeploymentPodSecurityRestricted(t *testing.T) {
	for _, name := range overlaysForTest() {
		d := deployment(t, renderAll(t).overlays[name])
		evaluateRestricted(t, name+" Deployment pod template", &d.Spec.Template.ObjectMeta, &d.Spec.Template.Spec)
	}
	// Guard the check itself: a template without the securityContext fails.
	d := deployment(t, renderAll(t).overlays["base"]).DeepCopy()
	d.Spec.Template.Spec.SecurityContext = nil
	d.Spec.Template.Spec.Containers[0].SecurityContext = nil
	evaluator, _ := policy.NewEvaluator(policy.DefaultChecks(), nil)
	if policy.AggregateCheckResults(evaluator.EvaluatePod(restrictedLatest, &d.Spec.Template.ObjectMeta, &d.Spec.Template.Spec)).Allowed {
		t.Error("a pod without securityContext passed restricted: the evaluator is not checking")
	}
}

// TestInjectedPodSecurityRestricted: an annotated Pod that passes restricted
// still passes after the webhook injected its containers, whether the Pod
// sets its security settings at Pod or at container level.
func TestInjectedPodSecurityRestricted(t *testing.T) {
	inj, err := dowebhook.NewInjector(dowebhook.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	restrictedContainer := func(name string) corev1.Container {
		return corev1.Container{
			Name:  name,
			Image: "nginx:1.27",
			SecurityContext: &corev1.SecurityContext{
				AllowPrivilegeEscalation: ptr.To(false),
				Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
			},
		}
	}
	podLevel := &corev1.PodSecurityContext{
		RunAsNonRoot:   ptr.To(true),
		SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
	}
	containerLevel := restrictedContainer("app")
	containerLevel.SecurityContext.RunAsNonRoot = ptr.To(true)
	containerLevel.SecurityContext.SeccompProfile = &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault}

	annotations := map[string]string{
		"depends-on.dev/services": "mydb:5432, myservice",
		"depends-on.dev/tcp":      "cache.other:6379",
		"depends-on.dev/http":     "http://api.default.svc:8080/healthz",
	}
	for _, tc := range []struct {
		name string
		pod  *corev1.Pod
	}{
		{"pod-level securityContext", &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: "a", Namespace: "default", Annotations: annotations},
			Spec: corev1.PodSpec{
				SecurityContext: podLevel,
				InitContainers:  []corev1.Container{restrictedContainer("migrate")},
				Containers:      []corev1.Container{restrictedContainer("app")},
			},
		}},
		{"container-level securityContext", &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: "b", Namespace: "default", Annotations: annotations},
			Spec:       corev1.PodSpec{Containers: []corev1.Container{containerLevel}},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			evaluateRestricted(t, "input pod", &tc.pod.ObjectMeta, &tc.pod.Spec)
			out, err := inj.Inject(dowebhook.PodFrom(tc.pod), "default")
			if err != nil {
				t.Fatal(err)
			}
			if len(out.Spec.InitContainers) <= len(tc.pod.Spec.InitContainers) {
				t.Fatalf("nothing injected: %d init containers", len(out.Spec.InitContainers))
			}
			// What injection changes that Pod Security looks at: the init containers.
			injected := tc.pod.DeepCopy()
			injected.Spec.InitContainers = out.Spec.InitContainers
			evaluateRestricted(t, "injected pod", &injected.ObjectMeta, &injected.Spec)
		})
	}
}
