package integration

import (
	"context"
	"crypto/x509"
	"slices"
	"strings"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"

	"github.com/depends-on/depends-on/certs/certgen"
	"github.com/depends-on/depends-on/certs/incluster"
	"github.com/depends-on/depends-on/deploy"
)

// TestCertsJobWithItsRBAC runs the certs Job's logic (incluster.Run, what
// `depends-on certs` does) against the real API server as the Job's
// ServiceAccount, with the rules of deploy/self-signed/certs-rbac.yaml. The
// suite's own webhook configuration must not change, so the objects are
// renamed: namespace certs-it, configuration depends-on-certs-it (the rules'
// verbs, resources and Secret names are the shipped ones).
func TestCertsJobWithItsRBAC(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	admin, err := kubernetes.NewForConfig(suite.cfg)
	if err != nil {
		t.Fatal(err)
	}
	const ns, mwcName = "certs-it", "depends-on-certs-it"
	if _, err := admin.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}

	out, err := deploy.RenderEmbedded("self-signed", deploy.Options{})
	if err != nil {
		t.Fatal(err)
	}
	objs, err := decodeManifests(out)
	if err != nil {
		t.Fatal(err)
	}
	var role rbacv1.Role
	var clusterRole rbacv1.ClusterRole
	var args []string
	for _, o := range objs {
		// The Job's own RBAC; deploy/self-signed also holds the readiness service's.
		if o.GetName() != "depends-on-certs" && o.GetKind() != "Job" {
			continue
		}
		switch o.GetKind() {
		case "Role":
			if err := runtime.DefaultUnstructuredConverter.FromUnstructured(o.Object, &role); err != nil {
				t.Fatal(err)
			}
		case "ClusterRole":
			if err := runtime.DefaultUnstructuredConverter.FromUnstructured(o.Object, &clusterRole); err != nil {
				t.Fatal(err)
			}
		case "Job":
			containers, _, _ := unstructured.NestedSlice(o.Object, "spec", "template", "spec", "containers")
			for _, a := range containers[0].(map[string]any)["args"].([]any) {
				args = append(args, a.(string))
			}
		}
	}
	if len(role.Rules) == 0 || len(clusterRole.Rules) != 1 || len(args) == 0 {
		t.Fatalf("deploy/self-signed: Role %v, ClusterRole %v, Job args %v", role.Rules, clusterRole.Rules, args)
	}
	for i := range clusterRole.Rules {
		clusterRole.Rules[i].ResourceNames = []string{mwcName}
	}
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "depends-on-certs", Namespace: ns}}
	role.ObjectMeta = metav1.ObjectMeta{Name: "depends-on-certs", Namespace: ns}
	clusterRole.ObjectMeta = metav1.ObjectMeta{Name: "depends-on-certs-it"}
	subject := []rbacv1.Subject{{Kind: "ServiceAccount", Name: sa.Name, Namespace: ns}}
	create := func(err error) {
		t.Helper()
		if err != nil && !apierrors.IsAlreadyExists(err) {
			t.Fatal(err)
		}
	}
	_, err = admin.CoreV1().ServiceAccounts(ns).Create(ctx, sa, metav1.CreateOptions{})
	create(err)
	_, err = admin.RbacV1().Roles(ns).Create(ctx, &role, metav1.CreateOptions{})
	create(err)
	_, err = admin.RbacV1().RoleBindings(ns).Create(ctx, &rbacv1.RoleBinding{ObjectMeta: role.ObjectMeta, Subjects: subject,
		RoleRef: rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: role.Name}}, metav1.CreateOptions{})
	create(err)
	_, err = admin.RbacV1().ClusterRoles().Create(ctx, &clusterRole, metav1.CreateOptions{})
	create(err)
	_, err = admin.RbacV1().ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{ObjectMeta: clusterRole.ObjectMeta, Subjects: subject,
		RoleRef: rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: clusterRole.Name}}, metav1.CreateOptions{})
	create(err)
	// A configuration that matches no namespace, with matchConditions the patch must keep.
	mwc := &admissionregistrationv1.MutatingWebhookConfiguration{
		ObjectMeta: metav1.ObjectMeta{Name: mwcName},
		Webhooks: []admissionregistrationv1.MutatingWebhook{{
			Name:                    "inject.certs-it.depends-on.dev",
			AdmissionReviewVersions: []string{"v1"},
			SideEffects:             ptr.To(admissionregistrationv1.SideEffectClassNone),
			ClientConfig: admissionregistrationv1.WebhookClientConfig{
				Service: &admissionregistrationv1.ServiceReference{Namespace: ns, Name: "nothing", Path: ptr.To("/mutate")},
			},
			NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"certs-it.depends-on.dev/never": "true"}},
			MatchConditions:   []admissionregistrationv1.MatchCondition{{Name: "never", Expression: "false"}},
		}},
	}
	t.Cleanup(func() {
		ctx := context.Background()
		_ = admin.AdmissionregistrationV1().MutatingWebhookConfigurations().Delete(ctx, mwcName, metav1.DeleteOptions{})
		_ = admin.RbacV1().ClusterRoleBindings().Delete(ctx, clusterRole.Name, metav1.DeleteOptions{})
		_ = admin.RbacV1().ClusterRoles().Delete(ctx, clusterRole.Name, metav1.DeleteOptions{})
		_ = admin.CoreV1().Namespaces().Delete(ctx, ns, metav1.DeleteOptions{})
	})

	// As the Job's ServiceAccount.
	cfg := rest.CopyConfig(suite.cfg)
	cfg.Impersonate = rest.ImpersonationConfig{UserName: "system:serviceaccount:" + ns + ":" + sa.Name}
	asJob, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	opts := incluster.Options{Namespace: ns, WebhookConfigurations: []string{mwcName}, Wait: 30 * time.Second}
	for _, a := range args {
		k, v, _ := strings.Cut(a, "=")
		switch k {
		case "--ca-secret":
			opts.CASecret = v
		case "--serving":
			spec, err := incluster.ParseServing(v)
			if err != nil {
				t.Fatal(err)
			}
			opts.Servings = append(opts.Servings, spec.Resolve(ns, ""))
		}
	}
	// The configuration appears after the Job started, as with kubectl apply.
	go func() {
		time.Sleep(2 * time.Second)
		_, _ = admin.AdmissionregistrationV1().MutatingWebhookConfigurations().Create(ctx, mwc, metav1.CreateOptions{})
	}()
	if _, err := incluster.Run(ctx, asJob, opts); err != nil {
		t.Fatalf("first run as the Job's ServiceAccount: %v", err)
	}
	first := bundleOf(t, ctx, admin, mwcName)

	// Re-run with a forced CA rotation: old and new CA trusted, matchConditions kept.
	opts.CARenewBefore = 100 * 365 * 24 * time.Hour
	res, err := incluster.Run(ctx, asJob, opts)
	if err != nil {
		t.Fatalf("CA rotation as the Job's ServiceAccount: %v", err)
	}
	second := bundleOf(t, ctx, admin, mwcName)
	if !res.CARenewed || res.Trusted != 2 || !strings.Contains(string(second), strings.TrimSpace(string(first))) {
		t.Errorf("CA rotation: %+v; caBundle %d -> %d bytes, old CA kept: %v", res, len(first), len(second), strings.Contains(string(second), strings.TrimSpace(string(first))))
	}
	// Every serving Secret (the webhook's and the readiness service's), from the one CA.
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(second)
	var issued []string
	for _, serving := range opts.Servings {
		s, err := admin.CoreV1().Secrets(ns).Get(ctx, serving.Secret, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		leaf, err := certgen.ParseCertificates(s.Data["tls.crt"])
		if err != nil {
			t.Fatal(err)
		}
		if _, err := leaf[0].Verify(x509.VerifyOptions{Roots: pool, DNSName: serving.DNSNames[0]}); err != nil {
			t.Errorf("serving certificate %s vs caBundle: %v", serving.Secret, err)
		}
		issued = append(issued, serving.Secret)
	}
	if !slices.Contains(issued, deploy.SecretName) || !slices.Contains(issued, deploy.ReadinessSecretName) {
		t.Errorf("the Job issued %v, want %s and %s", issued, deploy.SecretName, deploy.ReadinessSecretName)
	}

	// What the rules deny.
	if _, err := asJob.CoreV1().Secrets(ns).List(ctx, metav1.ListOptions{}); !apierrors.IsForbidden(err) {
		t.Errorf("list Secrets as the Job: %v, want Forbidden", err)
	}
	other := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "someone-elses", Namespace: ns}, StringData: map[string]string{"k": "v"}}
	if _, err := admin.CoreV1().Secrets(ns).Create(ctx, other, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := asJob.CoreV1().Secrets(ns).Get(ctx, other.Name, metav1.GetOptions{}); !apierrors.IsForbidden(err) {
		t.Errorf("get another Secret as the Job: %v, want Forbidden", err)
	}
	if _, err := asJob.CoreV1().Secrets("default").Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "x"}}, metav1.CreateOptions{}); !apierrors.IsForbidden(err) {
		t.Errorf("create a Secret in another namespace as the Job: %v, want Forbidden", err)
	}
	if _, err := asJob.AdmissionregistrationV1().MutatingWebhookConfigurations().Get(ctx, deploy.WebhookConfiguration, metav1.GetOptions{}); !apierrors.IsForbidden(err) {
		t.Errorf("get another webhook configuration as the Job: %v, want Forbidden", err)
	}
}

func bundleOf(t *testing.T, ctx context.Context, cs kubernetes.Interface, name string) []byte {
	t.Helper()
	mwc, err := cs.AdmissionregistrationV1().MutatingWebhookConfigurations().Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(mwc.Webhooks[0].MatchConditions) != 1 {
		t.Errorf("the caBundle patch changed matchConditions: %+v", mwc.Webhooks[0].MatchConditions)
	}
	if len(mwc.Webhooks[0].ClientConfig.CABundle) == 0 {
		t.Fatal("no caBundle")
	}
	return mwc.Webhooks[0].ClientConfig.CABundle
}
