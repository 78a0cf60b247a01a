// Package incluster keeps the depends-on webhook's TLS material in the cluster
// without cert-manager, the way ingress-nginx's kube-webhook-certgen does: a
// Job (`depends-on certs`, deploy/self-signed) creates a private CA, issues
// serving certificates into kubernetes.io/tls Secrets and writes the CA into
// the caBundle of the MutatingWebhookConfigurations.
//
// Every run issues new serving certificates (re-running the Job rotates them)
// and keeps the CA unless it is near expiry. When the CA is replaced, the
// caBundle (and each Secret's ca.crt) trusts the old and the new CA until the
// old one expires, so a server still presenting a certificate of the old CA
// keeps being trusted while the kubelet refreshes its mounted Secret.
//
// Order of the writes, so that no admission request fails at any point:
// CA Secret (a crash never loses the CA), then caBundle, then the serving
// Secrets (only then can a server present a certificate of a new CA).
package incluster

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"

	"github.com/depends-on/depends-on/certs/certgen"
)

// Serving is one serving certificate: the Secret it goes into and its SANs.
type Serving struct {
	Secret   string
	DNSNames []string
}

// Options configures Run.
type Options struct {
	// Namespace of every Secret.
	Namespace string
	// CASecret holds the CA (tls.crt, tls.key) and the trust bundle (ca.crt).
	CASecret string
	// Servings are issued from the CA, one Secret each.
	Servings []Serving
	// WebhookConfigurations are MutatingWebhookConfigurations whose webhooks
	// all get the trust bundle as caBundle.
	WebhookConfigurations []string
	// CAValidity, CertValidity: lifetimes of a new CA and of each serving
	// certificate; CARenewBefore: a CA closer than this to expiry is replaced.
	CAValidity, CertValidity, CARenewBefore time.Duration
	// Wait bounds how long Run waits for a webhook configuration to exist
	// (kubectl apply creates it after the Job) and retries conflicts.
	Wait time.Duration
	// Labels are put on the Secrets Run creates.
	Labels map[string]string
	// Now is the clock (time.Now when nil).
	Now func() time.Time
	Log logr.Logger
}

// Defaults of Options.
const (
	DefaultCAValidity    = certgen.DefaultCAValidity
	DefaultCertValidity  = certgen.DefaultCertValidity
	DefaultCARenewBefore = 90 * 24 * time.Hour
	DefaultWait          = 2 * time.Minute
)

// Secret keys: the kubernetes.io/tls layout, as cert-manager writes it.
const (
	keyCert   = corev1.TLSCertKey       // tls.crt
	keyKey    = corev1.TLSPrivateKeyKey // tls.key
	keyBundle = "ca.crt"
)

// Result says what a run did.
type Result struct {
	CARenewed bool
	// Trusted is the number of CA certificates in the caBundle.
	Trusted  int
	CANotAft time.Time // expiry of the CA in use
	Issued   []string  // Secrets written
}

// Run brings the Secrets and caBundles to the state described in the package
// comment.
func Run(ctx context.Context, cs kubernetes.Interface, opts Options) (*Result, error) {
	if err := opts.validate(); err != nil {
		return nil, err
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	setDefault(&opts.CAValidity, DefaultCAValidity)
	setDefault(&opts.CertValidity, DefaultCertValidity)
	setDefault(&opts.CARenewBefore, DefaultCARenewBefore)
	setDefault(&opts.Wait, DefaultWait)
	log := opts.Log
	secrets := cs.CoreV1().Secrets(opts.Namespace)
	res := &Result{}

	caSecret, err := getSecret(ctx, secrets, opts.CASecret)
	if err != nil {
		return nil, err
	}
	ca, trusted, renewed, err := opts.keepOrRenewCA(caSecret)
	if err != nil {
		return nil, err
	}
	res.CARenewed, res.CANotAft = renewed, ca.Cert.NotAfter
	bundle := pemBundle(trusted)
	res.Trusted = len(trusted)
	if renewed {
		log.Info("new CA", "secret", opts.CASecret, "notAfter", ca.Cert.NotAfter.UTC(), "trusted", len(trusted))
	} else {
		log.Info("keeping the CA", "secret", opts.CASecret, "notAfter", ca.Cert.NotAfter.UTC(), "trusted", len(trusted))
	}
	if err := writeSecret(ctx, secrets, caSecret, opts.CASecret, opts.Labels, map[string][]byte{
		keyCert: ca.CertPEM, keyKey: ca.KeyPEM, keyBundle: bundle,
	}); err != nil {
		return nil, fmt.Errorf("CA Secret %s/%s: %w", opts.Namespace, opts.CASecret, err)
	}

	for _, name := range opts.WebhookConfigurations {
		if err := opts.patchCABundle(ctx, cs, name, bundle); err != nil {
			return nil, fmt.Errorf("MutatingWebhookConfiguration %s: %w", name, err)
		}
	}

	for _, s := range opts.Servings {
		certPEM, keyPEM, err := ca.Issue(s.DNSNames, opts.CertValidity)
		if err != nil {
			return nil, fmt.Errorf("issue %s: %w", s.Secret, err)
		}
		existing, err := getSecret(ctx, secrets, s.Secret)
		if err != nil {
			return nil, err
		}
		if err := writeSecret(ctx, secrets, existing, s.Secret, opts.Labels, map[string][]byte{
			keyCert: certPEM, keyKey: keyPEM, keyBundle: bundle,
		}); err != nil {
			return nil, fmt.Errorf("serving Secret %s/%s: %w", opts.Namespace, s.Secret, err)
		}
		log.Info("issued serving certificate", "secret", s.Secret, "dnsNames", s.DNSNames, "validity", opts.CertValidity.String())
		res.Issued = append(res.Issued, s.Secret)
	}
	return res, nil
}

func setDefault(d *time.Duration, def time.Duration) {
	if *d <= 0 {
		*d = def
	}
}

func (o *Options) validate() error {
	var errs []error
	if o.Namespace == "" {
		errs = append(errs, errors.New("no namespace"))
	}
	if o.CASecret == "" {
		errs = append(errs, errors.New("no CA Secret"))
	}
	seen := map[string]bool{o.CASecret: true}
	for _, s := range o.Servings {
		if s.Secret == "" || len(s.DNSNames) == 0 {
			errs = append(errs, fmt.Errorf("serving certificate %q: needs a Secret name and at least one DNS name", s.Secret))
		}
		if seen[s.Secret] {
			errs = append(errs, fmt.Errorf("secret %q named twice", s.Secret))
		}
		seen[s.Secret] = true
	}
	if len(o.Servings) == 0 {
		errs = append(errs, errors.New("no serving certificate"))
	}
	return errors.Join(errs...)
}

// keepOrRenewCA returns the CA to issue from and the CAs to trust: the
// current one first, then earlier ones that have not expired yet.
func (o *Options) keepOrRenewCA(s *corev1.Secret) (ca *certgen.CA, trusted []*x509.Certificate, renewed bool, err error) {
	now := o.Now()
	var previous []*x509.Certificate
	if s != nil {
		if c, err := certgen.LoadCA(s.Data[keyCert], s.Data[keyKey]); err != nil {
			o.Log.Info("the CA Secret holds no usable CA: creating one", "secret", o.CASecret, "reason", err.Error())
		} else {
			ca = c
		}
		if certs, err := certgen.ParseCertificates(s.Data[keyBundle]); err == nil {
			previous = certs
		}
		if ca != nil {
			previous = append(previous, ca.Cert)
		}
	}
	if ca == nil || !ca.Cert.NotAfter.After(now.Add(o.CARenewBefore)) {
		if ca != nil {
			o.Log.Info("the CA is near expiry: replacing it; the caBundle keeps trusting it until it expires",
				"notAfter", ca.Cert.NotAfter.UTC(), "renewBefore", o.CARenewBefore.String())
		}
		ca, err = certgen.NewCA("depends-on-ca", o.CAValidity)
		if err != nil {
			return nil, nil, false, err
		}
		renewed = true
	}
	trusted = []*x509.Certificate{ca.Cert}
	for _, c := range previous {
		if c.NotAfter.After(now) && !slices.ContainsFunc(trusted, func(t *x509.Certificate) bool { return t.Equal(c) }) {
			trusted = append(trusted, c)
		}
	}
	return ca, trusted, renewed, nil
}

func pemBundle(certs []*x509.Certificate) []byte {
	var parts [][]byte
	for _, c := range certs {
		parts = append(parts, certgen.EncodeCertificate(c))
	}
	return certgen.ConcatPEM(parts...)
}

type secretClient interface {
	Get(ctx context.Context, name string, opts metav1.GetOptions) (*corev1.Secret, error)
	Create(ctx context.Context, s *corev1.Secret, opts metav1.CreateOptions) (*corev1.Secret, error)
	Update(ctx context.Context, s *corev1.Secret, opts metav1.UpdateOptions) (*corev1.Secret, error)
}

// getSecret returns nil, nil when the Secret does not exist.
func getSecret(ctx context.Context, c secretClient, name string) (*corev1.Secret, error) {
	s, err := c.Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("get Secret %s: %w", name, err)
	}
	return s, nil
}

// writeSecret creates the Secret (get-then-create: RBAC cannot restrict
// create by name) or updates the one read before, keeping its other keys,
// labels and annotations. The update carries the resourceVersion read, so a
// concurrent writer makes it fail instead of being overwritten.
func writeSecret(ctx context.Context, c secretClient, existing *corev1.Secret, name string, labels map[string]string, data map[string][]byte) error {
	if existing == nil {
		_, err := c.Create(ctx, &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels},
			Type:       corev1.SecretTypeTLS,
			Data:       data,
		}, metav1.CreateOptions{FieldManager: fieldManager})
		return err
	}
	if existing.Type != corev1.SecretTypeTLS {
		return fmt.Errorf("has type %q, want %s (delete it to let the Job recreate it)", existing.Type, corev1.SecretTypeTLS)
	}
	s := existing.DeepCopy()
	if s.Data == nil {
		s.Data = map[string][]byte{}
	}
	changed := false
	for k, v := range data {
		if !bytes.Equal(s.Data[k], v) {
			s.Data[k] = v
			changed = true
		}
	}
	if !changed {
		return nil
	}
	_, err := c.Update(ctx, s, metav1.UpdateOptions{FieldManager: fieldManager})
	return err
}

const fieldManager = "depends-on-certs"

// patchCABundle sets clientConfig.caBundle of every webhook of the
// configuration with a JSON patch that touches nothing else (a full update
// with this binary's types would drop fields they do not know, as
// cert-manager < 1.12 dropped matchConditions) and that tests the
// resourceVersion, so the indexes cannot have moved in between. It waits for
// the configuration to exist: kubectl apply creates it after the Job.
func (o *Options) patchCABundle(ctx context.Context, cs kubernetes.Interface, name string, bundle []byte) error {
	client := cs.AdmissionregistrationV1().MutatingWebhookConfigurations()
	want := base64.StdEncoding.EncodeToString(bundle)
	var lastErr error
	err := wait.PollUntilContextTimeout(ctx, time.Second, o.Wait, true, func(ctx context.Context) (bool, error) {
		cfg, err := client.Get(ctx, name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			lastErr = err
			o.Log.V(1).Info("waiting for the webhook configuration", "name", name)
			return false, nil
		}
		if err != nil {
			return false, err
		}
		ops := []map[string]any{{"op": "test", "path": "/metadata/resourceVersion", "value": cfg.ResourceVersion}}
		for i, w := range cfg.Webhooks {
			if !bytes.Equal(w.ClientConfig.CABundle, bundle) {
				ops = append(ops, map[string]any{"op": "add", "path": fmt.Sprintf("/webhooks/%d/clientConfig/caBundle", i), "value": want})
			}
		}
		if len(ops) == 1 {
			o.Log.Info("caBundle up to date", "webhookConfiguration", name, "webhooks", len(cfg.Webhooks))
			return true, nil
		}
		patch, err := json.Marshal(ops)
		if err != nil {
			return false, err
		}
		_, err = client.Patch(ctx, name, types.JSONPatchType, patch, metav1.PatchOptions{FieldManager: fieldManager})
		if apierrors.IsInvalid(err) || apierrors.IsConflict(err) || apierrors.IsNotFound(err) {
			// The test op failed (the object changed in between): read it again.
			lastErr = err
			return false, nil
		}
		if err != nil {
			return false, err
		}
		o.Log.Info("caBundle written", "webhookConfiguration", name, "webhooks", len(ops)-1)
		return true, nil
	})
	if err != nil && lastErr != nil {
		return fmt.Errorf("%w (last: %v)", err, lastErr)
	}
	return err
}

// ServingSpec is the parsed form of a --serving flag:
// secret=NAME[,service=SVC][,dns=NAME]... (at least one of service, dns).
type ServingSpec struct {
	Secret   string
	Services []string
	DNSNames []string
}

// ParseServing parses "secret=NAME,service=SVC,dns=EXTRA,...".
func ParseServing(s string) (ServingSpec, error) {
	var spec ServingSpec
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		k, v, ok := strings.Cut(part, "=")
		if !ok || v == "" {
			return spec, fmt.Errorf("serving %q: %q is not key=value (keys: secret, service, dns)", s, part)
		}
		switch k {
		case "secret":
			if spec.Secret != "" {
				return spec, fmt.Errorf("serving %q: two secrets", s)
			}
			spec.Secret = v
		case "service":
			spec.Services = append(spec.Services, v)
		case "dns":
			spec.DNSNames = append(spec.DNSNames, v)
		default:
			return spec, fmt.Errorf("serving %q: unknown key %q (keys: secret, service, dns)", s, k)
		}
	}
	if spec.Secret == "" {
		return spec, fmt.Errorf("serving %q: no secret=NAME", s)
	}
	if len(spec.Services) == 0 && len(spec.DNSNames) == 0 {
		return spec, fmt.Errorf("serving %q: no service=NAME or dns=NAME", s)
	}
	return spec, nil
}

// Resolve expands each service into the DNS names clients use to reach it
// in namespace (certgen.ServiceDNSNames), then appends the dns entries.
func (s ServingSpec) Resolve(namespace, clusterDomain string) Serving {
	var names []string
	for _, svc := range s.Services {
		names = append(names, certgen.ServiceDNSNames(svc, namespace, clusterDomain)...)
	}
	names = append(names, s.DNSNames...)
	var out []string
	for _, n := range names {
		if !slices.Contains(out, n) {
			out = append(out, n)
		}
	}
	return Serving{Secret: s.Secret, DNSNames: out}
}
