package deploy_test

import (
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/depends-on/depends-on/certs/incluster"
	"github.com/depends-on/depends-on/deploy"
)

// readinessKinds are what deploy/readiness adds to an overlay.
var readinessKinds = []string{"ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding",
	"ConfigMap", "Service", "Deployment", "PodDisruptionBudget"}

var clusterScoped = map[string]bool{"Namespace": true, "MutatingWebhookConfiguration": true, "ClusterRole": true, "ClusterRoleBinding": true}

// readinessOverlays are the installs that include the readiness service: both
// certificate paths, kustomize and chart (readiness.enabled by default).
var readinessOverlays = []string{"cert-manager", "self-signed", "chart", "chart-self-signed"}

func readinessDeployment(t *testing.T, r rendered) *appsv1.Deployment {
	return r.mustFind(t, "Deployment", deploy.ReadinessName).Typed.(*appsv1.Deployment)
}

func TestReadinessDeployment(t *testing.T) {
	f := renderAll(t)
	for _, name := range readinessOverlays {
		r := f.overlays[name]
		d := readinessDeployment(t, r)
		spec := d.Spec.Template.Spec
		if d.Spec.Replicas == nil || *d.Spec.Replicas != 2 {
			t.Errorf("%s: replicas %v, want 2", name, d.Spec.Replicas)
		}
		sel, err := metav1.LabelSelectorAsSelector(d.Spec.Selector)
		if err != nil || !sel.Matches(labels.Set(d.Spec.Template.Labels)) {
			t.Fatalf("%s: selector does not match template labels", name)
		}
		// The webhook's selector must not pick the readiness Pods, nor the reverse.
		web := deployment(t, r)
		if ws, _ := metav1.LabelSelectorAsSelector(web.Spec.Selector); ws.Matches(labels.Set(d.Spec.Template.Labels)) || sel.Matches(labels.Set(web.Spec.Template.Labels)) {
			t.Errorf("%s: webhook and readiness selectors overlap", name)
		}
		if ru := d.Spec.Strategy.RollingUpdate; ru == nil || ru.MaxUnavailable == nil || ru.MaxUnavailable.IntValue() != 0 {
			t.Errorf("%s: rolling update must keep every replica available", name)
		}
		if spec.ServiceAccountName != deploy.ReadinessName {
			t.Errorf("%s: serviceAccountName %q", name, spec.ServiceAccountName)
		}
		sa := r.mustFind(t, "ServiceAccount", deploy.ReadinessName).Typed.(*corev1.ServiceAccount)
		// The SA does not mount by default; only this Deployment opts in.
		if sa.AutomountServiceAccountToken == nil || *sa.AutomountServiceAccountToken || spec.AutomountServiceAccountToken == nil || !*spec.AutomountServiceAccountToken {
			t.Errorf("%s: token mount: SA %v, pod %v", name, sa.AutomountServiceAccountToken, spec.AutomountServiceAccountToken)
		}
		if len(spec.Containers) != 1 {
			t.Fatalf("%s: %d containers", name, len(spec.Containers))
		}
		c := spec.Containers[0]
		if c.Image != deploy.ReadinessImage+":dev" {
			t.Errorf("%s: image %q", name, c.Image)
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
		if ports["https"] != 8443 || args["--port"] != "8443" || ports["health"] != 8081 || args["--health-probe-bind-address"] != ":8081" ||
			ports["metrics"] != 8080 || args["--metrics-bind-address"] != ":8080" {
			t.Errorf("%s: ports %v args %v", name, ports, args)
		}
		for probe, path := range map[*corev1.Probe]string{c.ReadinessProbe: "/readyz", c.LivenessProbe: "/healthz"} {
			if probe == nil || probe.HTTPGet == nil || probe.HTTPGet.Path != path || probe.HTTPGet.Port != intstr.FromString("health") {
				t.Errorf("%s: probe for %s: %+v", name, path, probe)
			}
		}
		if c.Resources.Requests.Cpu().IsZero() || c.Resources.Requests.Memory().IsZero() || c.Resources.Limits.Memory().IsZero() {
			t.Errorf("%s: resources %+v", name, c.Resources)
		}
		env := map[string]corev1.EnvVar{}
		for _, e := range c.Env {
			env[e.Name] = e
		}
		if e := env["GOMEMLIMIT"]; e.ValueFrom == nil || e.ValueFrom.ResourceFieldRef == nil || e.ValueFrom.ResourceFieldRef.Resource != "limits.memory" {
			t.Errorf("%s: GOMEMLIMIT %+v", name, e)
		}
		if e := env["POD_NAMESPACE"]; e.ValueFrom == nil || e.ValueFrom.FieldRef == nil || e.ValueFrom.FieldRef.FieldPath != "metadata.namespace" {
			t.Errorf("%s: POD_NAMESPACE %+v", name, e)
		}
		if sc := c.SecurityContext; sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
			t.Errorf("%s: root filesystem not read-only", name)
		}
		var secret string
		for _, m := range c.VolumeMounts {
			if m.MountPath != args["--cert-dir"] {
				continue
			}
			for _, v := range spec.Volumes {
				if v.Name == m.Name && v.Secret != nil {
					secret = v.Secret.SecretName
				}
			}
		}
		if secret != deploy.ReadinessSecretName {
			t.Errorf("%s: --cert-dir holds secret %q, want %q", name, secret, deploy.ReadinessSecretName)
		}
		evaluateRestricted(t, name+" readiness Deployment", &d.Spec.Template.ObjectMeta, &d.Spec.Template.Spec)

		svc := r.mustFind(t, "Service", deploy.ReadinessName).Typed.(*corev1.Service)
		if !labels.SelectorFromSet(svc.Spec.Selector).Matches(labels.Set(d.Spec.Template.Labels)) ||
			len(svc.Spec.Ports) != 1 || svc.Spec.Ports[0].Port != 443 || svc.Spec.Ports[0].TargetPort != intstr.FromString("https") {
			t.Errorf("%s: Service %+v", name, svc.Spec)
		}
		pdb := r.mustFind(t, "PodDisruptionBudget", deploy.ReadinessName).Typed.(*policyv1.PodDisruptionBudget)
		if s, err := metav1.LabelSelectorAsSelector(pdb.Spec.Selector); err != nil || !s.Matches(labels.Set(d.Spec.Template.Labels)) ||
			pdb.Spec.MinAvailable == nil || pdb.Spec.MinAvailable.IntValue() != 1 {
			t.Errorf("%s: PDB %+v", name, pdb.Spec)
		}
		cm := r.mustFind(t, "ConfigMap", deploy.ReadinessStateConfig).Typed.(*corev1.ConfigMap)
		if cm.Data != nil || cm.BinaryData != nil {
			t.Errorf("%s: state ConfigMap ships data %v: re-applying would fight the service's entries", name, cm.Data)
		}
	}
}

// TestReadinessRBAC: exactly the read access the protocol lists, no wildcard,
// no Secrets or Pods, and write access to one ConfigMap by name.
func TestReadinessRBAC(t *testing.T) {
	f := renderAll(t)
	type grant struct{ group, resource, verbs string }
	flatten := func(rules []rbacv1.PolicyRule) (out []grant, names map[string][]string) {
		names = map[string][]string{}
		for _, rule := range rules {
			verbs := slices.Clone(rule.Verbs)
			slices.Sort(verbs)
			for _, g := range rule.APIGroups {
				for _, res := range rule.Resources {
					out = append(out, grant{g, res, strings.Join(verbs, ",")})
					names[g+"/"+res] = rule.ResourceNames
				}
			}
			if len(rule.NonResourceURLs) > 0 {
				out = append(out, grant{"nonResourceURLs", strings.Join(rule.NonResourceURLs, ","), strings.Join(verbs, ",")})
			}
		}
		slices.SortFunc(out, func(a, b grant) int { return strings.Compare(a.group+"/"+a.resource, b.group+"/"+b.resource) })
		return out, names
	}
	read := "get,list,watch"
	wantCluster := []grant{
		{"", "events", "create,patch"},
		{"", "namespaces", read},
		{"", "services", read},
		{"apps", "daemonsets", read},
		{"apps", "deployments", read},
		{"apps", "statefulsets", read},
		{"authentication.k8s.io", "tokenreviews", "create"},
		{"batch", "jobs", read},
		{"discovery.k8s.io", "endpointslices", read},
	}
	for _, name := range readinessOverlays {
		r := f.overlays[name]
		cr := r.mustFind(t, "ClusterRole", deploy.ReadinessName).Typed.(*rbacv1.ClusterRole)
		got, _ := flatten(cr.Rules)
		if !slices.Equal(got, wantCluster) || cr.AggregationRule != nil {
			t.Errorf("%s: ClusterRole grants\n%v\nwant exactly\n%v", name, got, wantCluster)
		}
		role := r.mustFind(t, "Role", deploy.ReadinessStateConfig).Typed.(*rbacv1.Role)
		got, names := flatten(role.Rules)
		if !slices.Equal(got, []grant{{"", "configmaps", "get,patch,update"}}) || !slices.Equal(names["/configmaps"], []string{deploy.ReadinessStateConfig}) {
			t.Errorf("%s: Role grants %v on %v, want get,patch,update on ConfigMap %s only", name, got, names, deploy.ReadinessStateConfig)
		}
		if role.Namespace != deploy.Namespace {
			t.Errorf("%s: Role in %q", name, role.Namespace)
		}
		crb := r.mustFind(t, "ClusterRoleBinding", deploy.ReadinessName).Typed.(*rbacv1.ClusterRoleBinding)
		rb := r.mustFind(t, "RoleBinding", deploy.ReadinessStateConfig).Typed.(*rbacv1.RoleBinding)
		wantSubject := []rbacv1.Subject{{Kind: "ServiceAccount", Name: deploy.ReadinessName, Namespace: deploy.Namespace}}
		if crb.RoleRef != (rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: cr.Name}) || !slices.Equal(crb.Subjects, wantSubject) {
			t.Errorf("%s: ClusterRoleBinding %+v", name, crb)
		}
		if rb.RoleRef != (rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: role.Name}) || !slices.Equal(rb.Subjects, wantSubject) {
			t.Errorf("%s: RoleBinding %+v", name, rb)
		}
		// Nothing else in the install binds roles but the certs Job's own
		// (TestCertsJob): the webhook keeps no RBAC.
		for _, o := range r.objects {
			if (o.Kind == "RoleBinding" || o.Kind == "ClusterRoleBinding") && o.Name != crb.Name && o.Name != rb.Name && o.Name != "depends-on-certs" {
				t.Errorf("%s: unexpected %s %s", name, o.Kind, o.Name)
			}
		}
	}
}

// TestReadinessCertificate: every install issues the readiness service's
// serving certificate, for its Service's names, into the Secret its
// Deployment mounts, from the webhook's CA (the webhook hands that CA to the
// injected containers): a cert-manager Certificate from the Issuer
// depends-on-ca, or one more --serving of the certs Job, which writes every
// serving Secret from its one --ca-secret.
func TestReadinessCertificate(t *testing.T) {
	f := renderAll(t)
	want := []string{"depends-on-readiness.depends-on-system.svc", "depends-on-readiness.depends-on-system.svc.cluster.local"}
	for _, name := range readinessOverlays {
		r := f.overlays[name]
		if c, ok := r.find("Certificate", "depends-on-readiness-serving"); ok {
			secret, _, _ := unstructured.NestedString(c.Unstructured.Object, "spec", "secretName")
			issuer, _, _ := unstructured.NestedString(c.Unstructured.Object, "spec", "issuerRef", "name")
			dns, _, _ := unstructured.NestedStringSlice(c.Unstructured.Object, "spec", "dnsNames")
			if secret != deploy.ReadinessSecretName || !slices.Equal(dns, want) {
				t.Errorf("%s: readiness Certificate: secret %q dnsNames %v", name, secret, dns)
			}
			web := r.mustFind(t, "Certificate", "depends-on-webhook-serving").Unstructured
			webIssuer, _, _ := unstructured.NestedString(web.Object, "spec", "issuerRef", "name")
			if issuer != webIssuer || issuer != "depends-on-ca" {
				t.Errorf("%s: readiness issuer %q, webhook issuer %q, want both depends-on-ca", name, issuer, webIssuer)
			}
			continue
		}
		job := certsJob(t, r)
		var found []incluster.Serving
		for _, a := range job.Spec.Template.Spec.Containers[0].Args {
			v, ok := strings.CutPrefix(a, "--serving=")
			if !ok {
				continue
			}
			spec, err := incluster.ParseServing(v)
			if err != nil {
				t.Fatalf("%s: Job arg %s: %v", name, a, err)
			}
			if s := spec.Resolve(deploy.Namespace, ""); s.Secret == deploy.ReadinessSecretName {
				found = append(found, s)
			}
		}
		// certgen adds the short names (svc.ns, svc) to the two the clients use.
		if len(found) != 1 || !slices.Contains(found[0].DNSNames, want[0]) || !slices.Contains(found[0].DNSNames, want[1]) {
			t.Errorf("%s: certs Job issues %s as %+v, want once, for %v", name, deploy.ReadinessSecretName, found, want)
		}
	}
}
