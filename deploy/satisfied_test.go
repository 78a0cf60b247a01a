package deploy_test

import (
	"path/filepath"
	"slices"
	"testing"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"

	"github.com/depends-on/depends-on/deploy"
	"github.com/depends-on/depends-on/webhook"
)

// TestSatisfiedWiring: where the readiness service is installed, the webhook
// has its own projected token for /v1/status (audience depends-on.dev/readiness,
// mounted where --satisfied-token-file defaults to) and the readiness service
// lets exactly the webhook's ServiceAccount ask; elsewhere the webhook has no
// token at all. The webhook is bound to no Role either way.
func TestSatisfiedWiring(t *testing.T) {
	client := "--status-clients=system:serviceaccount:" + deploy.Namespace + ":" + deploy.Name
	for name, r := range renderAll(t).overlays {
		_, withService := r.find("Service", deploy.ReadinessName)
		spec := deployment(t, r).Spec.Template.Spec
		var token *corev1.Volume
		for i, v := range spec.Volumes {
			if v.Projected != nil {
				token = &spec.Volumes[i]
			}
		}
		if (token != nil) != withService {
			t.Errorf("%s: readiness Service %v, webhook token volume %+v", name, withService, token)
		}
		for _, o := range r.objects {
			var subjects []rbacv1.Subject
			switch b := o.Typed.(type) {
			case *rbacv1.RoleBinding:
				subjects = b.Subjects
			case *rbacv1.ClusterRoleBinding:
				subjects = b.Subjects
			}
			for _, s := range subjects {
				if s.Kind == "ServiceAccount" && s.Name == deploy.Name {
					t.Errorf("%s: %s %s binds the webhook's ServiceAccount: it needs no RBAC", name, o.Kind, o.Name)
				}
			}
		}
		if !withService {
			continue
		}
		src := token.Projected.Sources
		if len(src) != 1 || src[0].ServiceAccountToken == nil || src[0].ServiceAccountToken.Audience != webhook.ReadinessAudience || src[0].ServiceAccountToken.Path != "token" {
			t.Errorf("%s: token volume %+v", name, token)
		}
		c := spec.Containers[0]
		if !slices.ContainsFunc(c.VolumeMounts, func(m corev1.VolumeMount) bool {
			return m.Name == token.Name && m.MountPath == webhook.ReadinessTokenDir && m.ReadOnly
		}) {
			t.Errorf("%s: token not mounted read-only at %s: %+v", name, webhook.ReadinessTokenDir, c.VolumeMounts)
		}
		if args := readinessDeployment(t, r).Spec.Template.Spec.Containers[0].Args; !slices.Contains(args, client) {
			t.Errorf("%s: readiness args %q lack %s", name, args, client)
		}
	}
}

// TestChartSatisfiedNamespace: in another release namespace the readiness
// service allows that namespace's webhook; without the readiness service the
// webhook has no token.
func TestChartSatisfiedNamespace(t *testing.T) {
	chart := filepath.Join(copyTree(t), deploy.ChartDir)
	r := decodeChart(t, helm(t, "template", "do", chart, "--namespace", "platform"))
	if args := readinessDeployment(t, r).Spec.Template.Spec.Containers[0].Args; !slices.Contains(args, "--status-clients=system:serviceaccount:platform:"+deploy.Name) {
		t.Errorf("readiness args %q: want the release namespace's webhook", args)
	}
	r = decodeChart(t, helm(t, "template", "do", chart, "--namespace", deploy.Namespace, "--set", "readiness.enabled=false"))
	spec := deployment(t, r).Spec.Template.Spec
	for _, v := range spec.Volumes {
		if v.Projected != nil {
			t.Errorf("readiness.enabled=false: webhook volume %s is a projected token", v.Name)
		}
	}
	for _, m := range spec.Containers[0].VolumeMounts {
		if m.MountPath == webhook.ReadinessTokenDir {
			t.Errorf("readiness.enabled=false: %s mounted", m.MountPath)
		}
	}
}
