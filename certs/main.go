// Command certs generates the TLS material for the depends-on webhook on
// clusters without cert-manager, and for running the webhook locally.
//
// It creates (or reuses) a private CA and issues a serving certificate whose
// SANs are the webhook Service's DNS names plus any --host, then writes
//
//	<out>/tls.crt, tls.key, ca.crt   the files the server reads from --cert-dir
//	<out>/ca.key                     the CA key, reused by later runs
//	<out>/kustomization.yaml         a kustomize Component with
//	<out>/secret.yaml                  the kubernetes.io/tls Secret and
//	<out>/cabundle-patch.yaml          the caBundle patch for the webhook configuration
//
// The default --out is deploy/own-certs/generated, which deploy/own-certs
// includes. Re-running reuses the CA (so the caBundle does not change) and
// issues a new serving certificate: re-apply and the server reloads it.
// --rotate-ca replaces the CA, keeping the previous one in the caBundle until
// the next run. See certs/README.md.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/depends-on/depends-on/certs/certgen"
)

const previousCAFile = "previous-ca.crt"

// caRenewWindow: a CA this close to expiry is replaced instead of reused.
const caRenewWindow = 30 * 24 * time.Hour

type hostList []string

func (h *hostList) String() string { return strings.Join(*h, ",") }

func (h *hostList) Set(v string) error {
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			*h = append(*h, s)
		}
	}
	return nil
}

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "certs:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	fl := flag.NewFlagSet("certs", flag.ContinueOnError)
	var (
		hosts         hostList
		service       = fl.String("service", certgen.DefaultService, "webhook Service name (its DNS names become SANs)")
		namespace     = fl.String("namespace", certgen.DefaultNamespace, "namespace of the Service and the Secret")
		clusterDomain = fl.String("cluster-domain", certgen.DefaultClusterDomain, "cluster DNS domain")
		out           = fl.String("out", filepath.Join("deploy", "own-certs", "generated"), "output directory")
		secretName    = fl.String("secret-name", certgen.DefaultSecretName, "name of the TLS Secret")
		webhookConfig = fl.String("webhook-configuration", certgen.DefaultWebhookConfiguration, "MutatingWebhookConfiguration to patch with the caBundle")
		kustomize     = fl.Bool("kustomize", true, "also write the kustomize component (kustomization.yaml, secret.yaml, cabundle-patch.yaml)")
		validity      = fl.Duration("validity", certgen.DefaultCertValidity, "serving certificate validity")
		caValidity    = fl.Duration("ca-validity", certgen.DefaultCAValidity, "CA validity (new CAs only)")
		rotateCA      = fl.Bool("rotate-ca", false, "replace the CA; the old one stays in the caBundle until the next run")
	)
	fl.Var(&hosts, "host", "extra SAN, DNS name or IP (repeatable or comma-separated), e.g. localhost,127.0.0.1")
	fl.Usage = func() {
		fmt.Fprintf(fl.Output(), "Usage: go run ./certs [flags]\n\nGenerates a CA and a serving certificate for the depends-on webhook.\n\n")
		fl.PrintDefaults()
	}
	if err := fl.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	if fl.NArg() > 0 {
		return fmt.Errorf("unexpected arguments: %v", fl.Args())
	}

	if err := os.MkdirAll(*out, 0o755); err != nil {
		return err
	}
	ca, previous, err := loadOrCreateCA(*out, *rotateCA, *caValidity)
	if err != nil {
		return err
	}
	b, err := certgen.Generate(certgen.Options{
		Service:       *service,
		Namespace:     *namespace,
		ClusterDomain: *clusterDomain,
		Hosts:         hosts,
		CA:            ca,
		CertValidity:  *validity,
	})
	if err != nil {
		return err
	}
	if err := certgen.WriteFileAtomic(filepath.Join(*out, certgen.CAKeyFile), ca.KeyPEM, 0o600); err != nil {
		return err
	}
	if err := b.WriteFiles(*out); err != nil {
		return err
	}
	prevPath := filepath.Join(*out, previousCAFile)
	if previous != nil {
		if err := certgen.WriteFileAtomic(prevPath, previous, 0o644); err != nil {
			return err
		}
	} else if err := os.Remove(prevPath); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	if *kustomize {
		err := b.WriteComponent(*out, certgen.ComponentOptions{
			Namespace:            *namespace,
			SecretName:           *secretName,
			WebhookConfiguration: *webhookConfig,
			CABundle:             certgen.ConcatPEM(b.CACert, previous),
		})
		if err != nil {
			return err
		}
	}
	fmt.Fprintf(os.Stderr, "certs: wrote %s (%s)\n", *out, b.Describe())
	if previous != nil {
		fmt.Fprintf(os.Stderr, "certs: the caBundle also trusts the previous CA; once the webhook serves the new certificate, run again without --rotate-ca and re-apply to drop it\n")
	}
	return nil
}

// loadOrCreateCA reuses <out>/ca.crt + ca.key unless rotation is asked for or
// the CA is missing, unreadable or about to expire. It returns the previous
// CA certificate (PEM) when a still-valid CA is being replaced.
func loadOrCreateCA(out string, rotate bool, validity time.Duration) (*certgen.CA, []byte, error) {
	certPEM, certErr := os.ReadFile(filepath.Join(out, certgen.CACertFile))
	keyPEM, keyErr := os.ReadFile(filepath.Join(out, certgen.CAKeyFile))
	var existing *certgen.CA
	if certErr == nil && keyErr == nil {
		ca, err := certgen.LoadCA(certPEM, keyPEM)
		if err != nil {
			fmt.Fprintf(os.Stderr, "certs: ignoring the existing CA in %s: %v\n", out, err)
		} else {
			existing = ca
		}
	}
	now := time.Now()
	if existing != nil && !rotate && existing.Cert.NotAfter.After(now.Add(caRenewWindow)) {
		return existing, nil, nil
	}
	if existing != nil && !rotate {
		fmt.Fprintf(os.Stderr, "certs: the CA expires on %s: creating a new one\n", existing.Cert.NotAfter.UTC().Format(time.DateOnly))
	}
	ca, err := certgen.NewCA("depends-on-ca", validity)
	if err != nil {
		return nil, nil, err
	}
	var previous []byte
	if existing != nil && existing.Cert.NotAfter.After(now) {
		previous = existing.CertPEM
	}
	return ca, previous, nil
}
