package incluster_test

import (
	"context"
	"crypto/x509"
	"slices"
	"strings"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/depends-on/depends-on/certs/certgen"
	"github.com/depends-on/depends-on/certs/incluster"
)

const ns = "depends-on-system"

func webhookConfig() *admissionregistrationv1.MutatingWebhookConfiguration {
	return &admissionregistrationv1.MutatingWebhookConfiguration{
		// The JSON patch tests the resourceVersion; the fake tracker keeps it as given.
		ObjectMeta: metav1.ObjectMeta{Name: "depends-on", ResourceVersion: "7"},
		Webhooks: []admissionregistrationv1.MutatingWebhook{
			{Name: "inject.depends-on.dev", MatchConditions: []admissionregistrationv1.MatchCondition{{Name: "keep-me", Expression: "true"}}},
			{Name: "other.depends-on.dev"},
		},
	}
}

func options(now time.Time) incluster.Options {
	return incluster.Options{
		Namespace: ns,
		CASecret:  "depends-on-ca",
		Servings: []incluster.Serving{
			incluster.ServingSpec{Secret: "depends-on-webhook-tls", Services: []string{"depends-on-webhook"}}.Resolve(ns, ""),
			incluster.ServingSpec{Secret: "depends-on-readiness-tls", Services: []string{"depends-on-readiness"}}.Resolve(ns, ""),
		},
		WebhookConfigurations: []string{"depends-on"},
		Wait:                  3 * time.Second,
		Now:                   func() time.Time { return now },
	}
}

func secret(t *testing.T, cs *fake.Clientset, name string) *corev1.Secret {
	t.Helper()
	s, err := cs.CoreV1().Secrets(ns).Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func caBundles(t *testing.T, cs *fake.Clientset) [][]byte {
	t.Helper()
	cfg, err := cs.AdmissionregistrationV1().MutatingWebhookConfigurations().Get(context.Background(), "depends-on", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var out [][]byte
	for _, w := range cfg.Webhooks {
		out = append(out, w.ClientConfig.CABundle)
		if w.Name == "inject.depends-on.dev" && len(w.MatchConditions) != 1 {
			t.Errorf("the patch touched matchConditions: %+v", w.MatchConditions)
		}
	}
	return out
}

// verify checks that the serving Secret's certificate chains to a CA of
// the caBundle for every DNS name.
func verify(t *testing.T, s *corev1.Secret, bundle []byte, now time.Time, names ...string) *x509.Certificate {
	t.Helper()
	if s.Type != corev1.SecretTypeTLS {
		t.Errorf("%s: type %s", s.Name, s.Type)
	}
	leaf, err := certgen.ParseCertificates(s.Data["tls.crt"])
	if err != nil {
		t.Fatalf("%s: %v", s.Name, err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(bundle) {
		t.Fatalf("caBundle is not PEM")
	}
	for _, n := range names {
		if _, err := leaf[0].Verify(x509.VerifyOptions{DNSName: n, Roots: pool, CurrentTime: now}); err != nil {
			t.Errorf("%s: does not verify for %s against the caBundle: %v", s.Name, n, err)
		}
	}
	if len(s.Data["tls.key"]) == 0 {
		t.Errorf("%s: no tls.key", s.Name)
	}
	return leaf[0]
}

// current verifies a Secret the last run wrote: its ca.crt is the caBundle.
func current(t *testing.T, s *corev1.Secret, bundle []byte, now time.Time, names ...string) *x509.Certificate {
	t.Helper()
	if string(s.Data["ca.crt"]) != string(bundle) {
		t.Errorf("%s: ca.crt differs from the caBundle", s.Name)
	}
	return verify(t, s, bundle, now, names...)
}

func TestRunCreatesRotatesAndKeepsTheCA(t *testing.T) {
	ctx := context.Background()
	now := time.Now()
	cs := fake.NewClientset(webhookConfig())

	res, err := incluster.Run(ctx, cs, options(now))
	if err != nil {
		t.Fatal(err)
	}
	if !res.CARenewed || res.Trusted != 1 || !slices.Equal(res.Issued, []string{"depends-on-webhook-tls", "depends-on-readiness-tls"}) {
		t.Errorf("first run: %+v", res)
	}
	bundles := caBundles(t, cs)
	if len(bundles) != 2 || len(bundles[0]) == 0 || string(bundles[0]) != string(bundles[1]) {
		t.Fatalf("caBundle not written into every webhook: %q", bundles)
	}
	ca1 := secret(t, cs, "depends-on-ca")
	leaf1 := current(t, secret(t, cs, "depends-on-webhook-tls"), bundles[0], now,
		"depends-on-webhook.depends-on-system.svc", "depends-on-webhook.depends-on-system.svc.cluster.local")
	current(t, secret(t, cs, "depends-on-readiness-tls"), bundles[0], now, "depends-on-readiness.depends-on-system.svc")

	// Re-run: same CA and caBundle, new serving certificates.
	res, err = incluster.Run(ctx, cs, options(now.Add(time.Hour)))
	if err != nil {
		t.Fatal(err)
	}
	if res.CARenewed || res.Trusted != 1 {
		t.Errorf("second run: %+v", res)
	}
	if string(secret(t, cs, "depends-on-ca").Data["tls.key"]) != string(ca1.Data["tls.key"]) {
		t.Error("re-run replaced the CA")
	}
	if got := caBundles(t, cs); string(got[0]) != string(bundles[0]) {
		t.Error("re-run changed the caBundle")
	}
	leaf2 := current(t, secret(t, cs, "depends-on-webhook-tls"), bundles[0], now, "depends-on-webhook.depends-on-system.svc")
	if leaf2.SerialNumber.Cmp(leaf1.SerialNumber) == 0 {
		t.Error("re-run did not rotate the serving certificate")
	}
}

func TestRunRenewsACANearExpiryAndTrustsBothUntilTheOldExpires(t *testing.T) {
	ctx := context.Background()
	now := time.Now()
	cs := fake.NewClientset(webhookConfig())
	opts := options(now)
	opts.CAValidity = 100 * 24 * time.Hour
	if _, err := incluster.Run(ctx, cs, opts); err != nil {
		t.Fatal(err)
	}
	oldCA := secret(t, cs, "depends-on-ca")
	oldLeaf := secret(t, cs, "depends-on-webhook-tls")

	// 20 days later the CA has 80 days left, within the 90-day default window.
	later := now.Add(20 * 24 * time.Hour)
	opts = options(later)
	res, err := incluster.Run(ctx, cs, opts)
	if err != nil {
		t.Fatal(err)
	}
	if !res.CARenewed || res.Trusted != 2 {
		t.Fatalf("near expiry: %+v", res)
	}
	bundle := caBundles(t, cs)[0]
	// A webhook Pod still serving the old certificate stays trusted...
	verify(t, oldLeaf, bundle, later, "depends-on-webhook.depends-on-system.svc")
	// ...and so is the new one.
	current(t, secret(t, cs, "depends-on-webhook-tls"), bundle, later, "depends-on-webhook.depends-on-system.svc")
	if string(secret(t, cs, "depends-on-ca").Data["tls.key"]) == string(oldCA.Data["tls.key"]) {
		t.Error("CA not replaced")
	}

	// Still before the old CA expires: both trusted. After it: only the new one.
	if res, err := incluster.Run(ctx, cs, options(later.Add(24*time.Hour))); err != nil || res.CARenewed || res.Trusted != 2 {
		t.Errorf("before the old CA expired: %+v, %v", res, err)
	}
	if res, err := incluster.Run(ctx, cs, options(now.Add(101*24*time.Hour))); err != nil || res.CARenewed || res.Trusted != 1 {
		t.Errorf("after the old CA expired: %+v, %v", res, err)
	}
	if n := strings.Count(string(caBundles(t, cs)[0]), "BEGIN CERTIFICATE"); n != 1 {
		t.Errorf("caBundle holds %d CAs after the old one expired", n)
	}
}

func TestRunUpdatesExistingSecretsKeepingOtherKeys(t *testing.T) {
	existing := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "depends-on-webhook-tls", Namespace: ns, Annotations: map[string]string{"a": "b"}},
		Type:       corev1.SecretTypeTLS,
		Data:       map[string][]byte{"tls.crt": []byte("old"), "tls.key": []byte("old"), "extra": []byte("x")},
	}
	cs := fake.NewClientset(webhookConfig(), existing)
	if _, err := incluster.Run(context.Background(), cs, options(time.Now())); err != nil {
		t.Fatal(err)
	}
	s := secret(t, cs, "depends-on-webhook-tls")
	if string(s.Data["extra"]) != "x" || s.Annotations["a"] != "b" || string(s.Data["tls.crt"]) == "old" {
		t.Errorf("update: %+v", s)
	}

	// A Secret of another type is not silently replaced.
	opaque := existing.DeepCopy()
	opaque.Type = corev1.SecretTypeOpaque
	cs = fake.NewClientset(webhookConfig(), opaque)
	if _, err := incluster.Run(context.Background(), cs, options(time.Now())); err == nil || !strings.Contains(err.Error(), "type") {
		t.Errorf("opaque Secret: err = %v", err)
	}
}

func TestRunWaitsForTheWebhookConfiguration(t *testing.T) {
	cs := fake.NewClientset()
	go func() {
		time.Sleep(1500 * time.Millisecond)
		_, _ = cs.AdmissionregistrationV1().MutatingWebhookConfigurations().Create(context.Background(), webhookConfig(), metav1.CreateOptions{})
	}()
	if _, err := incluster.Run(context.Background(), cs, options(time.Now())); err != nil {
		t.Fatal(err)
	}
	if len(caBundles(t, cs)[0]) == 0 {
		t.Error("caBundle not written after the configuration appeared")
	}

	opts := options(time.Now())
	opts.Wait = time.Second
	opts.WebhookConfigurations = []string{"missing"}
	if _, err := incluster.Run(context.Background(), fake.NewClientset(), opts); err == nil || !strings.Contains(err.Error(), "missing") {
		t.Errorf("missing configuration: err = %v", err)
	}
}

func TestOptionsAndServingErrors(t *testing.T) {
	for _, o := range []incluster.Options{
		{},
		{Namespace: ns, CASecret: "ca"},
		{Namespace: ns, CASecret: "ca", Servings: []incluster.Serving{{Secret: "ca", DNSNames: []string{"x"}}}},
		{Namespace: ns, CASecret: "ca", Servings: []incluster.Serving{{Secret: "s"}}},
	} {
		if _, err := incluster.Run(context.Background(), fake.NewClientset(), o); err == nil {
			t.Errorf("Run(%+v) succeeded", o)
		}
	}
	spec, err := incluster.ParseServing("secret=s, service=svc,dns=extra.example")
	if err != nil {
		t.Fatal(err)
	}
	got := spec.Resolve("ns", "corp.local")
	want := []string{"svc.ns.svc", "svc.ns.svc.corp.local", "svc.ns", "svc", "extra.example"}
	if got.Secret != "s" || !slices.Equal(got.DNSNames, want) {
		t.Errorf("Resolve = %+v, want %v", got, want)
	}
	for _, bad := range []string{"", "service=svc", "secret=s", "secret=s,secret=t,dns=x", "secret=s,host=x", "secret=s,dns"} {
		if _, err := incluster.ParseServing(bad); err == nil {
			t.Errorf("ParseServing(%q) succeeded", bad)
		}
	}
}
