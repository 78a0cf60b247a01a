package deploy_test

import (
	"bufio"
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"io"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	kusttypes "sigs.k8s.io/kustomize/api/types"
	"sigs.k8s.io/yaml"

	"github.com/depends-on/depends-on/certs/certgen"
	"github.com/depends-on/depends-on/deploy"
)

// object is one rendered manifest, decoded strictly into its typed struct
// (or kept unstructured for cert-manager kinds).
type object struct {
	APIVersion, Kind, Name, Namespace string
	Typed                             any
	Unstructured                      *unstructured.Unstructured
}

type rendered struct {
	overlay string
	objects []object
}

func (r rendered) find(kind, name string) (object, bool) {
	for _, o := range r.objects {
		if o.Kind == kind && o.Name == name {
			return o, true
		}
	}
	return object{}, false
}

func (r rendered) mustFind(t *testing.T, kind, name string) object {
	t.Helper()
	o, ok := r.find(kind, name)
	if !ok {
		t.Fatalf("%s: no %s %s in the rendered manifests", r.overlay, kind, name)
	}
	return o
}

func deployment(t *testing.T, r rendered) *appsv1.Deployment {
	return r.mustFind(t, "Deployment", deploy.Name).Typed.(*appsv1.Deployment)
}

func webhookConfig(t *testing.T, r rendered) *admissionregistrationv1.MutatingWebhookConfiguration {
	return r.mustFind(t, "MutatingWebhookConfiguration", deploy.WebhookConfiguration).Typed.(*admissionregistrationv1.MutatingWebhookConfiguration)
}

// typedKinds are the built-in kinds the overlays may contain; anything else
// must be a cert-manager kind.
var typedKinds = map[string]func() any{
	"v1/Namespace":      func() any { return &corev1.Namespace{} },
	"v1/ServiceAccount": func() any { return &corev1.ServiceAccount{} },
	"v1/Service":        func() any { return &corev1.Service{} },
	"v1/Secret":         func() any { return &corev1.Secret{} },
	"apps/v1/Deployment": func() any {
		return &appsv1.Deployment{}
	},
	"policy/v1/PodDisruptionBudget":                   func() any { return &policyv1.PodDisruptionBudget{} },
	"batch/v1/Job":                                    func() any { return &batchv1.Job{} },
	"rbac.authorization.k8s.io/v1/Role":               func() any { return &rbacv1.Role{} },
	"rbac.authorization.k8s.io/v1/RoleBinding":        func() any { return &rbacv1.RoleBinding{} },
	"rbac.authorization.k8s.io/v1/ClusterRole":        func() any { return &rbacv1.ClusterRole{} },
	"rbac.authorization.k8s.io/v1/ClusterRoleBinding": func() any { return &rbacv1.ClusterRoleBinding{} },
	"v1/ConfigMap":                                    func() any { return &corev1.ConfigMap{} },
	"admissionregistration.k8s.io/v1/MutatingWebhookConfiguration": func() any {
		return &admissionregistrationv1.MutatingWebhookConfiguration{}
	},
}

var certManagerKinds = map[string]bool{"cert-manager.io/v1/Issuer": true, "cert-manager.io/v1/Certificate": true}

func decode(t *testing.T, overlay string, data []byte) rendered {
	t.Helper()
	r := rendered{overlay: overlay}
	reader := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	for {
		doc, err := reader.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("%s: %v", overlay, err)
		}
		if len(bytes.TrimSpace(doc)) == 0 {
			continue
		}
		u := &unstructured.Unstructured{}
		if err := yaml.Unmarshal(doc, &u.Object); err != nil {
			t.Fatalf("%s: %v\n%s", overlay, err, doc)
		}
		if len(u.Object) == 0 { // only comments (helm template)
			continue
		}
		o := object{APIVersion: u.GetAPIVersion(), Kind: u.GetKind(), Name: u.GetName(), Namespace: u.GetNamespace(), Unstructured: u}
		key := o.APIVersion + "/" + o.Kind
		switch {
		case typedKinds[key] != nil:
			o.Typed = typedKinds[key]()
			// Strict: unknown or duplicate fields are errors, as with
			// kubectl's server-side field validation.
			if err := yaml.UnmarshalStrict(doc, o.Typed); err != nil {
				t.Errorf("%s: %s %s does not decode strictly: %v", overlay, key, o.Name, err)
			}
		case certManagerKinds[key]:
		default:
			t.Errorf("%s: unexpected kind %s (%s)", overlay, key, o.Name)
		}
		if _, dup := r.find(o.Kind, o.Name); dup {
			t.Errorf("%s: duplicate %s %s", overlay, o.Kind, o.Name)
		}
		r.objects = append(r.objects, o)
	}
	return r
}

type fixture struct {
	// overlays: base, every kustomize overlay and the chart's installs (chartInstalls).
	overlays map[string]rendered
	bundle   *certgen.Bundle // what the own-certs overlay was generated with
}

// installs are the installable renders every safety check runs on: the
// kustomize overlays and the chart with the values of chartInstalls.
func installs() []string {
	names := slices.Clone(deploy.Overlays)
	for _, c := range chartInstalls {
		names = append(names, c.name)
	}
	return names
}

// renderAll renders base and every overlay from a copy of deploy/ in which
// the own-certs component was generated by certgen, as make certs does, and
// the chart (chartInstalls) with helm template.
func renderAll(t *testing.T) fixture {
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
	f := fixture{overlays: map[string]rendered{}, bundle: b}
	for _, name := range append([]string{"base"}, deploy.Overlays...) {
		out, err := deploy.Render(filepath.Join(tmp, name), deploy.Options{})
		if err != nil {
			t.Fatalf("render %s: %v", name, err)
		}
		f.overlays[name] = decode(t, name, out)
	}
	for _, c := range chartInstalls {
		f.overlays[c.name] = decode(t, c.name, renderChart(t, tmp, c.values...))
	}
	return f
}

func TestOverlaysRenderAndDecodeStrictly(t *testing.T) {
	f := renderAll(t)
	common := []string{"Namespace", "ServiceAccount", "Service", "Deployment", "PodDisruptionBudget", "MutatingWebhookConfiguration"}
	want := map[string][]string{
		"base":                 common,
		"cert-manager":         append(append(slices.Clone(common), "Issuer", "Issuer", "Certificate", "Certificate", "Certificate"), readinessKinds...),
		"self-signed":          append(append(slices.Clone(common), "ServiceAccount", "Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding", "Job"), readinessKinds...),
		deploy.OwnCertsOverlay: append(slices.Clone(common), "Secret"),
	}
	for name, kinds := range want {
		r := f.overlays[name]
		var got []string
		for _, o := range r.objects {
			got = append(got, o.Kind)
			if !clusterScoped[o.Kind] && o.Namespace != deploy.Namespace {
				t.Errorf("%s: %s %s in namespace %q, want %s", name, o.Kind, o.Name, o.Namespace, deploy.Namespace)
			}
			if o.Unstructured.GetLabels()["app.kubernetes.io/part-of"] != "depends-on" {
				t.Errorf("%s: %s %s lacks the part-of label", name, o.Kind, o.Name)
			}
		}
		slices.Sort(got)
		slices.Sort(kinds)
		if !slices.Equal(got, kinds) {
			t.Errorf("%s: kinds %v, want %v", name, got, kinds)
		}
		// Legacy kustomize order, so kubectl apply -f creates the Namespace
		// first and registers the webhook last.
		if r.objects[0].Kind != "Namespace" || r.objects[len(r.objects)-1].Kind != "MutatingWebhookConfiguration" {
			t.Errorf("%s: order %v: want Namespace first, webhook configuration last", name, got)
		}
	}
}

func TestDeployment(t *testing.T) {
	f := renderAll(t)
	for _, name := range installs() {
		r := f.overlays[name]
		d := deployment(t, r)
		spec := d.Spec.Template.Spec
		if d.Spec.Replicas == nil || *d.Spec.Replicas < 2 {
			t.Errorf("%s: replicas %v, want >= 2", name, d.Spec.Replicas)
		}
		sel, err := metav1.LabelSelectorAsSelector(d.Spec.Selector)
		if err != nil || !sel.Matches(labels.Set(d.Spec.Template.Labels)) {
			t.Fatalf("%s: selector %v does not match template labels %v (%v)", name, d.Spec.Selector, d.Spec.Template.Labels, err)
		}
		if ru := d.Spec.Strategy.RollingUpdate; ru == nil || ru.MaxUnavailable == nil || ru.MaxUnavailable.IntValue() != 0 {
			t.Errorf("%s: rolling update must keep every replica available: %+v", name, d.Spec.Strategy)
		}
		// Spread across nodes, but never refuse to schedule (single-node kind).
		if len(spec.TopologySpreadConstraints) == 0 && spec.Affinity == nil {
			t.Errorf("%s: no topology spread or anti-affinity", name)
		}
		for _, c := range spec.TopologySpreadConstraints {
			if c.WhenUnsatisfiable != corev1.ScheduleAnyway {
				t.Errorf("%s: topology spread on %s is %s: would not schedule 2 replicas on one node", name, c.TopologyKey, c.WhenUnsatisfiable)
			}
			if s, err := metav1.LabelSelectorAsSelector(c.LabelSelector); err != nil || !s.Matches(labels.Set(d.Spec.Template.Labels)) {
				t.Errorf("%s: spread selector does not select the pods", name)
			}
		}
		if spec.Affinity != nil && spec.Affinity.PodAntiAffinity != nil && len(spec.Affinity.PodAntiAffinity.RequiredDuringSchedulingIgnoredDuringExecution) > 0 {
			t.Errorf("%s: required anti-affinity would not schedule on one node", name)
		}
		if spec.PriorityClassName != "" {
			t.Errorf("%s: priorityClassName %q needs an extra object or kube-system", name, spec.PriorityClassName)
		}
		if spec.ServiceAccountName != deploy.Name {
			t.Errorf("%s: serviceAccountName %q", name, spec.ServiceAccountName)
		}
		sa := r.mustFind(t, "ServiceAccount", deploy.Name).Typed.(*corev1.ServiceAccount)
		if sa.AutomountServiceAccountToken == nil || *sa.AutomountServiceAccountToken || spec.AutomountServiceAccountToken == nil || *spec.AutomountServiceAccountToken {
			t.Errorf("%s: service account token must not be mounted", name)
		}

		if len(spec.Containers) != 1 {
			t.Fatalf("%s: %d containers", name, len(spec.Containers))
		}
		c := spec.Containers[0]
		if c.Name != deploy.ContainerName || c.Image != deploy.WebhookImage+":dev" || c.ImagePullPolicy != corev1.PullIfNotPresent {
			t.Errorf("%s: container %s image %s pull %s", name, c.Name, c.Image, c.ImagePullPolicy)
		}
		args := map[string]string{}
		for _, a := range c.Args {
			k, v, _ := strings.Cut(a, "=")
			args[k] = v
		}
		ports := map[string]int32{}
		for _, p := range c.Ports {
			ports[p.Name] = p.ContainerPort
		}
		if ports["webhook"] != 9443 || args["--port"] != "9443" {
			t.Errorf("%s: webhook port %d, --port %q", name, ports["webhook"], args["--port"])
		}
		if args["--health-probe-bind-address"] != ":8081" || ports["health"] != 8081 {
			t.Errorf("%s: health port %d, flag %q", name, ports["health"], args["--health-probe-bind-address"])
		}
		if args["--metrics-bind-address"] != ":8080" || ports["metrics"] != 8080 {
			t.Errorf("%s: metrics port %d, flag %q", name, ports["metrics"], args["--metrics-bind-address"])
		}
		for probe, path := range map[*corev1.Probe]string{c.ReadinessProbe: "/readyz", c.LivenessProbe: "/healthz"} {
			if probe == nil || probe.HTTPGet == nil || probe.HTTPGet.Path != path || probe.HTTPGet.Port != intstr.FromString("health") {
				t.Errorf("%s: probe for %s: %+v", name, path, probe)
			}
		}
		// Drain (readyz fails, keeps serving) + shutdown must fit in the grace period.
		drain, err := time.ParseDuration(args["--drain-period"])
		if err != nil {
			t.Errorf("%s: --drain-period %q: %v", name, args["--drain-period"], err)
		}
		if g := spec.TerminationGracePeriodSeconds; g == nil || time.Duration(*g)*time.Second < drain+10*time.Second+5*time.Second {
			t.Errorf("%s: terminationGracePeriodSeconds %v too short for drain %v + 10s shutdown", name, g, drain)
		}
		if c.Resources.Requests.Cpu().IsZero() || c.Resources.Requests.Memory().IsZero() || c.Resources.Limits.Memory().IsZero() {
			t.Errorf("%s: resources %+v", name, c.Resources)
		}
		// The serving Secret is mounted at --cert-dir.
		var mount *corev1.VolumeMount
		for i := range c.VolumeMounts {
			if c.VolumeMounts[i].MountPath == args["--cert-dir"] {
				mount = &c.VolumeMounts[i]
			}
		}
		if mount == nil {
			t.Fatalf("%s: nothing mounted at --cert-dir %q", name, args["--cert-dir"])
		}
		var secret string
		for _, v := range spec.Volumes {
			if v.Name == mount.Name && v.Secret != nil {
				secret = v.Secret.SecretName
			}
		}
		if secret != deploy.SecretName {
			t.Errorf("%s: cert-dir volume is secret %q, want %q", name, secret, deploy.SecretName)
		}

		// Service -> named port webhook -> 9443; PDB selects the pods.
		svc := r.mustFind(t, "Service", deploy.Name).Typed.(*corev1.Service)
		if !labels.SelectorFromSet(svc.Spec.Selector).Matches(labels.Set(d.Spec.Template.Labels)) {
			t.Errorf("%s: Service selector %v does not select the pods", name, svc.Spec.Selector)
		}
		if len(svc.Spec.Ports) != 1 || svc.Spec.Ports[0].Port != 443 || svc.Spec.Ports[0].Name != "webhook" ||
			(svc.Spec.Ports[0].TargetPort != intstr.FromString("webhook") && svc.Spec.Ports[0].TargetPort != intstr.FromInt32(9443)) {
			t.Errorf("%s: Service ports %+v", name, svc.Spec.Ports)
		}
		pdb := r.mustFind(t, "PodDisruptionBudget", deploy.Name).Typed.(*policyv1.PodDisruptionBudget)
		if s, err := metav1.LabelSelectorAsSelector(pdb.Spec.Selector); err != nil || !s.Matches(labels.Set(d.Spec.Template.Labels)) {
			t.Errorf("%s: PDB does not select the pods", name)
		}
		if pdb.Spec.MinAvailable == nil || pdb.Spec.MinAvailable.IntValue() != 1 || pdb.Spec.MinAvailable.IntValue() >= int(*d.Spec.Replicas) {
			t.Errorf("%s: PDB minAvailable %v with %d replicas would block drains or allow outages", name, pdb.Spec.MinAvailable, *d.Spec.Replicas)
		}
	}
}

func TestWebhookConfiguration(t *testing.T) {
	f := renderAll(t)
	for _, name := range installs() {
		r := f.overlays[name]
		cfg := webhookConfig(t, r)
		if len(cfg.Webhooks) != 1 {
			t.Fatalf("%s: %d webhooks", name, len(cfg.Webhooks))
		}
		w := cfg.Webhooks[0]
		if w.Name != deploy.WebhookName {
			t.Errorf("%s: webhook name %q", name, w.Name)
		}
		s := w.ClientConfig.Service
		if s == nil || s.Name != deploy.Name || s.Namespace != deploy.Namespace || s.Path == nil || *s.Path != "/mutate" || s.Port == nil || *s.Port != 443 {
			t.Errorf("%s: clientConfig %+v", name, w.ClientConfig)
		}
		if w.ClientConfig.URL != nil {
			t.Errorf("%s: clientConfig.url set", name)
		}
		if !slices.Equal(w.AdmissionReviewVersions, []string{"v1"}) || w.SideEffects == nil || *w.SideEffects != admissionregistrationv1.SideEffectClassNone {
			t.Errorf("%s: admissionReviewVersions %v sideEffects %v", name, w.AdmissionReviewVersions, w.SideEffects)
		}
		if w.FailurePolicy == nil || *w.FailurePolicy != admissionregistrationv1.Fail {
			t.Errorf("%s: failurePolicy %v", name, w.FailurePolicy)
		}
		if w.ReinvocationPolicy == nil || *w.ReinvocationPolicy != admissionregistrationv1.IfNeededReinvocationPolicy {
			t.Errorf("%s: reinvocationPolicy %v", name, w.ReinvocationPolicy)
		}
		if w.TimeoutSeconds == nil || *w.TimeoutSeconds > 10 || *w.TimeoutSeconds < 1 {
			t.Errorf("%s: timeoutSeconds %v, want short (<= 10)", name, w.TimeoutSeconds)
		}
		if w.ObjectSelector != nil && (len(w.ObjectSelector.MatchLabels) > 0 || len(w.ObjectSelector.MatchExpressions) > 0) {
			t.Errorf("%s: objectSelector %v, want none", name, w.ObjectSelector)
		}
		wantRule := admissionregistrationv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"pods"}}
		if len(w.Rules) != 1 || !slices.Equal(w.Rules[0].Operations, []admissionregistrationv1.OperationType{admissionregistrationv1.Create}) ||
			!slices.Equal(w.Rules[0].APIGroups, wantRule.APIGroups) || !slices.Equal(w.Rules[0].APIVersions, wantRule.APIVersions) ||
			!slices.Equal(w.Rules[0].Resources, wantRule.Resources) {
			t.Errorf("%s: rules %+v, want CREATE pods v1", name, w.Rules)
		}
	}
}

func TestNamespaceSelector(t *testing.T) {
	w := webhookConfig(t, renderAll(t).overlays["base"]).Webhooks[0]
	sel, err := metav1.LabelSelectorAsSelector(w.NamespaceSelector)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		labels map[string]string
		want   bool
	}{
		{"default", nil, true},
		{"team-a", map[string]string{"env": "prod"}, true},
		{"team-b", map[string]string{"depends-on.dev/disabled": "false"}, true},
		{"kube-system", nil, false},
		{"kube-public", nil, false},
		{"kube-node-lease", nil, false},
		{"depends-on-system", nil, false},
		{"cert-manager", nil, false},
		{"opted-out", map[string]string{"depends-on.dev/disabled": "true"}, false},
	} {
		l := labels.Set{"kubernetes.io/metadata.name": tc.name} // set by the API server on every namespace
		for k, v := range tc.labels {
			l[k] = v
		}
		if got := sel.Matches(l); got != tc.want {
			t.Errorf("namespace %s %v: selected=%v, want %v", tc.name, tc.labels, got, tc.want)
		}
	}
	// The webhook's own namespace is opted out by label too.
	ns := renderAll(t).overlays["base"].mustFind(t, "Namespace", deploy.Namespace).Typed.(*corev1.Namespace)
	if ns.Labels["depends-on.dev/disabled"] != "true" {
		t.Errorf("namespace %s lacks depends-on.dev/disabled=true", deploy.Namespace)
	}
	if ns.Labels["pod-security.kubernetes.io/enforce"] != "restricted" {
		t.Errorf("namespace %s does not enforce the restricted Pod Security level", deploy.Namespace)
	}
}

// The overlays that install the readiness service point the webhook at it;
// the others leave --readiness-url unset (the object keys are then denied).
func TestReadinessURLFlag(t *testing.T) {
	const flag = "--readiness-url=https://" + deploy.ReadinessName + "." + deploy.Namespace + ".svc:443"
	for name, r := range renderAll(t).overlays {
		_, withService := r.find("Service", deploy.ReadinessName)
		var args []string
		for _, c := range deployment(t, r).Spec.Template.Spec.Containers {
			args = append(args, c.Args...)
		}
		if got := slices.Contains(args, flag); got != withService {
			t.Errorf("%s: readiness Service rendered %v, webhook args %q (want %s only with it)", name, withService, args, flag)
		}
	}
}

func TestCertManagerOverlay(t *testing.T) {
	r := renderAll(t).overlays["cert-manager"]
	cfg := webhookConfig(t, r)
	ref := cfg.Annotations["cert-manager.io/inject-ca-from"]
	ns, certName, ok := strings.Cut(ref, "/")
	if !ok || ns != deploy.Namespace {
		t.Fatalf("inject-ca-from %q", ref)
	}
	if len(cfg.Webhooks[0].ClientConfig.CABundle) != 0 {
		t.Error("caBundle set although cert-manager injects it")
	}
	serving := r.mustFind(t, "Certificate", certName).Unstructured
	str := func(u *unstructured.Unstructured, path ...string) string {
		s, _, _ := unstructured.NestedString(u.Object, path...)
		return s
	}
	if got := str(serving, "spec", "secretName"); got != deploy.SecretName {
		t.Errorf("serving Certificate secretName %q, want %q (mounted by the Deployment)", got, deploy.SecretName)
	}
	dns, _, _ := unstructured.NestedStringSlice(serving.Object, "spec", "dnsNames")
	for _, want := range []string{"depends-on-webhook.depends-on-system.svc", "depends-on-webhook.depends-on-system.svc.cluster.local"} {
		if !slices.Contains(dns, want) {
			t.Errorf("serving Certificate dnsNames %v lack %s", dns, want)
		}
	}
	if isCA, _, _ := unstructured.NestedBool(serving.Object, "spec", "isCA"); isCA {
		t.Error("serving Certificate is a CA")
	}

	// serving -> CA Issuer -> CA secret <- CA Certificate (isCA) -> self-signed Issuer.
	caIssuer := r.mustFind(t, "Issuer", str(serving, "spec", "issuerRef", "name")).Unstructured
	if str(serving, "spec", "issuerRef", "kind") != "Issuer" {
		t.Errorf("serving issuerRef kind %q", str(serving, "spec", "issuerRef", "kind"))
	}
	caSecret := str(caIssuer, "spec", "ca", "secretName")
	var caCert *unstructured.Unstructured
	for _, o := range r.objects {
		if o.Kind == "Certificate" && str(o.Unstructured, "spec", "secretName") == caSecret {
			caCert = o.Unstructured
		}
	}
	if caSecret == "" || caCert == nil {
		t.Fatalf("CA Issuer %s: no Certificate writes its secret %q", caIssuer.GetName(), caSecret)
	}
	if isCA, _, _ := unstructured.NestedBool(caCert.Object, "spec", "isCA"); !isCA {
		t.Error("CA Certificate lacks isCA: true")
	}
	root := r.mustFind(t, "Issuer", str(caCert, "spec", "issuerRef", "name")).Unstructured
	if _, ok, _ := unstructured.NestedMap(root.Object, "spec", "selfSigned"); !ok {
		t.Errorf("CA Certificate issued by %s, which is not self-signed", root.GetName())
	}

	// Only fields that exist in cert-manager.io/v1 since v1.11 (the oldest
	// supported release) and still exist today.
	allowed := map[string][]string{
		"Certificate": {"secretName", "secretTemplate", "commonName", "dnsNames", "ipAddresses", "uris", "emailAddresses",
			"duration", "renewBefore", "isCA", "usages", "privateKey", "issuerRef", "subject", "keystores",
			"encodeUsagesInRequest", "revisionHistoryLimit", "additionalOutputFormats"},
		"Issuer": {"selfSigned", "ca", "acme", "vault", "venafi"},
	}
	privateKeyFields := []string{"algorithm", "size", "encoding", "rotationPolicy"}
	usages := []string{"signing", "digital signature", "content commitment", "key encipherment", "key agreement",
		"data encipherment", "cert sign", "crl sign", "encipher only", "decipher only", "any", "server auth",
		"client auth", "code signing", "email protection", "s/mime", "ipsec end system", "ipsec tunnel",
		"ipsec user", "timestamping", "ocsp signing", "microsoft sgc", "netscape sgc"}
	for _, o := range r.objects {
		fields, ok := allowed[o.Kind]
		if !ok {
			continue
		}
		if o.APIVersion != "cert-manager.io/v1" {
			t.Errorf("%s %s: apiVersion %s", o.Kind, o.Name, o.APIVersion)
		}
		spec, _, _ := unstructured.NestedMap(o.Unstructured.Object, "spec")
		for k := range spec {
			if !slices.Contains(fields, k) {
				t.Errorf("%s %s: spec.%s is not a cert-manager v1.11 field", o.Kind, o.Name, k)
			}
		}
		pk, _, _ := unstructured.NestedMap(o.Unstructured.Object, "spec", "privateKey")
		for k := range pk {
			if !slices.Contains(privateKeyFields, k) {
				t.Errorf("%s %s: spec.privateKey.%s unknown", o.Kind, o.Name, k)
			}
		}
		us, _, _ := unstructured.NestedStringSlice(o.Unstructured.Object, "spec", "usages")
		for _, u := range us {
			if !slices.Contains(usages, u) {
				t.Errorf("%s %s: usage %q unknown", o.Kind, o.Name, u)
			}
		}
		if o.Kind == "Certificate" {
			for _, d := range []string{"duration", "renewBefore"} {
				if s := str(o.Unstructured, "spec", d); s != "" {
					if _, err := time.ParseDuration(s); err != nil {
						t.Errorf("%s %s: %s %q: %v", o.Kind, o.Name, d, s, err)
					}
				}
			}
			if str(o.Unstructured, "spec", "issuerRef", "group") != "cert-manager.io" {
				t.Errorf("%s %s: issuerRef.group", o.Kind, o.Name)
			}
		}
	}
}

func TestOwnCertsOverlay(t *testing.T) {
	f := renderAll(t)
	r := f.overlays[deploy.OwnCertsOverlay]
	secret := r.mustFind(t, "Secret", deploy.SecretName).Typed.(*corev1.Secret)
	if secret.Type != corev1.SecretTypeTLS {
		t.Errorf("Secret type %q", secret.Type)
	}
	for _, k := range []string{"tls.crt", "tls.key", "ca.crt"} {
		if len(secret.Data[k]) == 0 {
			t.Errorf("Secret lacks %s", k)
		}
	}
	if string(secret.Data["tls.crt"]) != string(f.bundle.TLSCert) {
		t.Error("Secret tls.crt is not the generated certificate")
	}
	cfg := webhookConfig(t, r)
	if _, ok := cfg.Annotations["cert-manager.io/inject-ca-from"]; ok {
		t.Error("own-certs overlay carries the cert-manager annotation")
	}
	bundle := cfg.Webhooks[0].ClientConfig.CABundle
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(bundle) {
		t.Fatalf("caBundle is not PEM: %q", bundle)
	}
	block, _ := pem.Decode(secret.Data["tls.crt"])
	if block == nil {
		t.Fatal("tls.crt is not PEM")
	}
	leaf, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	// The API server dials <service>.<namespace>.svc and checks the chain
	// against caBundle.
	svc := deploy.Name + "." + deploy.Namespace + ".svc"
	if _, err := leaf.Verify(x509.VerifyOptions{DNSName: svc, Roots: pool}); err != nil {
		t.Errorf("serving certificate does not verify for %s against caBundle: %v", svc, err)
	}
}

func TestRenderOptions(t *testing.T) {
	dir, err := deploy.Dir()
	if err != nil {
		t.Fatal(err)
	}
	img, err := deploy.ParseImage("registry.example:5000/team/webhook:v1.2.3", deploy.WebhookImage)
	if err != nil {
		t.Fatal(err)
	}
	out, err := deploy.Render(filepath.Join(dir, "cert-manager"), deploy.Options{
		Images:    []kusttypes.Image{img},
		WaitImage: "registry.example:5000/team/wait-for-service:v1.2.3",
	})
	if err != nil {
		t.Fatal(err)
	}
	r := decode(t, "cert-manager+options", out)
	c := deployment(t, r).Spec.Template.Spec.Containers[0]
	if c.Image != "registry.example:5000/team/webhook:v1.2.3" {
		t.Errorf("image %q", c.Image)
	}
	if !slices.Contains(c.Args, "--wait-image=registry.example:5000/team/wait-for-service:v1.2.3") {
		t.Errorf("args %v lack --wait-image", c.Args)
	}
	// The checked-in files are untouched.
	again, err := deploy.Render(filepath.Join(dir, "cert-manager"), deploy.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(again), "registry.example") {
		t.Error("Render with options modified the source tree")
	}
}

func TestParseImage(t *testing.T) {
	for _, tc := range []struct{ in, name, newName, tag, digest string }{
		{"depends-on/webhook:dev", deploy.WebhookImage, "depends-on/webhook", "dev", ""},
		{"localhost:5000/webhook", deploy.WebhookImage, "localhost:5000/webhook", "", ""},
		{"localhost:5000/webhook:v1", deploy.WebhookImage, "localhost:5000/webhook", "v1", ""},
		{"x/y=reg/z@sha256:abc", "x/y", "reg/z", "", "sha256:abc"},
	} {
		img, err := deploy.ParseImage(tc.in, deploy.WebhookImage)
		if err != nil {
			t.Errorf("%s: %v", tc.in, err)
			continue
		}
		if img.Name != tc.name || img.NewName != tc.newName || img.NewTag != tc.tag || img.Digest != tc.digest {
			t.Errorf("%s: %+v", tc.in, img)
		}
	}
	for _, bad := range []string{"", "=x", "x=", "a b:c"} {
		if _, err := deploy.ParseImage(bad, deploy.WebhookImage); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

// The checked-in own-certs overlay needs make certs; without it the error
// must say what is missing rather than render a broken install.
func TestOwnCertsWithoutGeneratedFails(t *testing.T) {
	tmp := t.TempDir()
	if err := deploy.CopySources(tmp); err != nil {
		t.Fatal(err)
	}
	if _, err := deploy.Render(filepath.Join(tmp, deploy.OwnCertsOverlay), deploy.Options{}); err == nil || !strings.Contains(err.Error(), "generated") {
		t.Errorf("render without generated/: err = %v", err)
	}
}
