// Package certgen generates a small private CA and serving certificates for
// the depends-on webhook, using only the standard library.
//
// It backs the certs command (make certs, deploy/own-certs) and lets Go
// tests create TLS material in-process:
//
//	b, err := certgen.Generate(certgen.Options{Hosts: []string{"localhost", "127.0.0.1"}})
//	...
//	err = b.WriteFiles(dir) // tls.crt, tls.key, ca.crt
package certgen

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha1"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// File names written by WriteFiles; the same names the webhook server reads
// from its --cert-dir (ca.crt is informational there).
const (
	CertFile   = "tls.crt"
	KeyFile    = "tls.key"
	CACertFile = "ca.crt"
	CAKeyFile  = "ca.key"
)

// Defaults used when Options leaves a field empty.
const (
	DefaultService       = "depends-on-webhook"
	DefaultNamespace     = "depends-on-system"
	DefaultClusterDomain = "cluster.local"
	DefaultCAValidity    = 10 * 365 * 24 * time.Hour
	DefaultCertValidity  = 365 * 24 * time.Hour
	// clockSkew backdates NotBefore so a freshly issued certificate is
	// accepted by API servers whose clock runs slightly behind.
	clockSkew = time.Hour
)

// CA is a certificate authority that can issue serving certificates.
type CA struct {
	Cert    *x509.Certificate
	Key     crypto.Signer
	CertPEM []byte
	KeyPEM  []byte
}

// NewCA creates a self-signed ECDSA P-256 CA valid for the given duration
// (DefaultCAValidity when zero).
func NewCA(commonName string, validity time.Duration) (*CA, error) {
	if validity <= 0 {
		validity = DefaultCAValidity
	}
	if commonName == "" {
		commonName = "depends-on-ca"
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate CA key: %w", err)
	}
	serial, err := newSerial()
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: commonName, Organization: []string{"depends-on"}},
		NotBefore:             now.Add(-clockSkew),
		NotAfter:              now.Add(validity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
		SubjectKeyId:          subjectKeyID(&key.PublicKey),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("create CA certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	keyPEM, err := encodeKey(key)
	if err != nil {
		return nil, err
	}
	return &CA{Cert: cert, Key: key, CertPEM: encodeCert(der), KeyPEM: keyPEM}, nil
}

// LoadCA parses a PEM CA certificate and its PEM private key (PKCS#8, EC or
// PKCS#1).
func LoadCA(certPEM, keyPEM []byte) (*CA, error) {
	block, _ := pem.Decode(certPEM)
	if block == nil || block.Type != "CERTIFICATE" {
		return nil, errors.New("CA certificate: no PEM CERTIFICATE block")
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("parse CA certificate: %w", err)
	}
	if !cert.IsCA {
		return nil, errors.New("CA certificate is not a CA")
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("CA key pair: %w", err)
	}
	signer, ok := pair.PrivateKey.(crypto.Signer)
	if !ok {
		return nil, errors.New("CA key cannot sign")
	}
	return &CA{Cert: cert, Key: signer, CertPEM: certPEM, KeyPEM: keyPEM}, nil
}

// Issue creates an ECDSA P-256 serving certificate signed by the CA for the
// given DNS names and IP addresses (entries that parse as IPs become IP SANs).
// The first host is also the subject common name (when it fits in 64 bytes).
func (ca *CA) Issue(hosts []string, validity time.Duration) (certPEM, keyPEM []byte, err error) {
	if len(hosts) == 0 {
		return nil, nil, errors.New("at least one host is required")
	}
	if validity <= 0 {
		validity = DefaultCertValidity
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("generate key: %w", err)
	}
	serial, err := newSerial()
	if err != nil {
		return nil, nil, err
	}
	now := time.Now()
	notAfter := now.Add(validity)
	if notAfter.After(ca.Cert.NotAfter) {
		notAfter = ca.Cert.NotAfter
	}
	cn := hosts[0]
	if len(cn) > 64 { // RFC 5280 upper bound
		cn = "depends-on-webhook"
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: cn, Organization: []string{"depends-on"}},
		NotBefore:             now.Add(-clockSkew),
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		SubjectKeyId:          subjectKeyID(&key.PublicKey),
	}
	for _, h := range dedupe(hosts) {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, &key.PublicKey, ca.Key)
	if err != nil {
		return nil, nil, fmt.Errorf("create serving certificate: %w", err)
	}
	keyPEM, err = encodeKey(key)
	if err != nil {
		return nil, nil, err
	}
	return encodeCert(der), keyPEM, nil
}

// ServiceDNSNames returns the DNS names under which the API server (and
// in-cluster clients) reach a Service: name.ns.svc (first: the name the API
// server dials), name.ns.svc.<clusterDomain>, name.ns and name.
func ServiceDNSNames(service, namespace, clusterDomain string) []string {
	if clusterDomain == "" {
		clusterDomain = DefaultClusterDomain
	}
	clusterDomain = strings.Trim(clusterDomain, ".")
	return []string{
		service + "." + namespace + ".svc",
		service + "." + namespace + ".svc." + clusterDomain,
		service + "." + namespace,
		service,
	}
}

// Options configures Generate.
type Options struct {
	// Service and Namespace name the webhook Service; their DNS names become
	// SANs. Defaults: depends-on-webhook, depends-on-system. Set NoService to
	// leave them out (e.g. a certificate for localhost only).
	Service   string
	Namespace string
	NoService bool
	// ClusterDomain defaults to cluster.local.
	ClusterDomain string
	// Hosts are extra SANs (DNS names or IP addresses), e.g. localhost, 127.0.0.1.
	Hosts []string
	// CA signs the serving certificate; a new CA is created when nil.
	CA *CA
	// CAValidity and CertValidity default to DefaultCAValidity and DefaultCertValidity.
	CAValidity   time.Duration
	CertValidity time.Duration
}

// Bundle is the output of Generate: PEM encoded CA certificate, serving
// certificate and serving key, plus the CA used (whose key may be persisted
// to issue later certificates under the same caBundle).
type Bundle struct {
	CA      *CA
	CACert  []byte
	TLSCert []byte
	TLSKey  []byte
	// Hosts are the SANs of the serving certificate.
	Hosts []string
}

// Generate creates (or reuses, see Options.CA) a CA and issues a serving
// certificate for the service DNS names plus Options.Hosts.
func Generate(opts Options) (*Bundle, error) {
	hosts := Hosts(opts)
	if len(hosts) == 0 {
		return nil, errors.New("no SANs: set a service or hosts")
	}
	ca := opts.CA
	if ca == nil {
		var err error
		ca, err = NewCA("depends-on-ca", opts.CAValidity)
		if err != nil {
			return nil, err
		}
	}
	certPEM, keyPEM, err := ca.Issue(hosts, opts.CertValidity)
	if err != nil {
		return nil, err
	}
	return &Bundle{CA: ca, CACert: ca.CertPEM, TLSCert: certPEM, TLSKey: keyPEM, Hosts: hosts}, nil
}

// Hosts returns the SANs Generate puts in the serving certificate.
func Hosts(opts Options) []string {
	var hosts []string
	if !opts.NoService {
		svc, ns := opts.Service, opts.Namespace
		if svc == "" {
			svc = DefaultService
		}
		if ns == "" {
			ns = DefaultNamespace
		}
		hosts = ServiceDNSNames(svc, ns, opts.ClusterDomain)
	}
	for _, h := range opts.Hosts {
		if h = strings.TrimSpace(h); h != "" {
			hosts = append(hosts, h)
		}
	}
	return dedupe(hosts)
}

// WriteFiles writes tls.crt, tls.key (0600) and ca.crt into dir, creating it.
// Each file is written to a temporary name and renamed, so a server watching
// the directory never reads a half-written file.
func (b *Bundle) WriteFiles(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for _, f := range []struct {
		name string
		data []byte
		mode os.FileMode
	}{
		{CACertFile, b.CACert, 0o644},
		{KeyFile, b.TLSKey, 0o600},
		{CertFile, b.TLSCert, 0o644},
	} {
		if err := WriteFileAtomic(filepath.Join(dir, f.name), f.data, f.mode); err != nil {
			return err
		}
	}
	return nil
}

// TLSCertificate returns the serving key pair, ready for a tls.Config.
func (b *Bundle) TLSCertificate() (tls.Certificate, error) {
	return tls.X509KeyPair(b.TLSCert, b.TLSKey)
}

// CertPool returns a pool holding the CA certificate, for clients.
func (b *Bundle) CertPool() *x509.CertPool {
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(b.CACert)
	return pool
}

// WriteFileAtomic writes data to a temporary file in the same directory and
// renames it over path.
func WriteFileAtomic(path string, data []byte, mode os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // no-op after a successful rename
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// ParseCertificates decodes every CERTIFICATE block of a PEM bundle.
func ParseCertificates(pemData []byte) ([]*x509.Certificate, error) {
	var certs []*x509.Certificate
	for {
		var block *pem.Block
		block, pemData = pem.Decode(pemData)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, err
		}
		certs = append(certs, c)
	}
	if len(certs) == 0 {
		return nil, errors.New("no certificate in PEM data")
	}
	return certs, nil
}

func newSerial() (*big.Int, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("serial number: %w", err)
	}
	return serial, nil
}

func subjectKeyID(pub *ecdsa.PublicKey) []byte {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil
	}
	sum := sha1.Sum(der) // RFC 5280 method 1; not a security property
	return sum[:]
}

func encodeCert(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

func encodeKey(key *ecdsa.PrivateKey) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("marshal key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

func dedupe(in []string) []string {
	seen := make(map[string]bool, len(in))
	out := make([]string, 0, len(in))
	for _, s := range in {
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	return out
}

// ConcatPEM joins PEM bundles, making sure each ends with a newline.
func ConcatPEM(parts ...[]byte) []byte {
	var buf bytes.Buffer
	for _, p := range parts {
		if len(p) == 0 {
			continue
		}
		buf.Write(p)
		if p[len(p)-1] != '\n' {
			buf.WriteByte('\n')
		}
	}
	return buf.Bytes()
}

// EncodeCertificate returns the PEM encoding of a parsed certificate.
func EncodeCertificate(c *x509.Certificate) []byte { return encodeCert(c.Raw) }
