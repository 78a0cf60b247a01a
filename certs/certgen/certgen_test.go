package certgen_test

import (
	"crypto/tls"
	"crypto/x509"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/depends-on/depends-on/certs/certgen"
)

func TestGenerateServiceSANsAndChain(t *testing.T) {
	b, err := certgen.Generate(certgen.Options{
		Service:   "svc",
		Namespace: "ns",
		Hosts:     []string{"localhost", "127.0.0.1", "::1", "localhost"},
	})
	if err != nil {
		t.Fatal(err)
	}
	certs, err := certgen.ParseCertificates(b.TLSCert)
	if err != nil {
		t.Fatal(err)
	}
	leaf := certs[0]
	wantDNS := []string{"svc.ns.svc", "svc.ns.svc.cluster.local", "svc.ns", "svc", "localhost"}
	if !slices.Equal(leaf.DNSNames, wantDNS) {
		t.Errorf("DNSNames = %v, want %v", leaf.DNSNames, wantDNS)
	}
	if len(leaf.IPAddresses) != 2 || !leaf.IPAddresses[0].Equal(net.ParseIP("127.0.0.1")) || !leaf.IPAddresses[1].Equal(net.IPv6loopback) {
		t.Errorf("IPAddresses = %v", leaf.IPAddresses)
	}
	if leaf.IsCA {
		t.Error("serving certificate must not be a CA")
	}
	if !slices.Contains(leaf.ExtKeyUsage, x509.ExtKeyUsageServerAuth) {
		t.Errorf("ExtKeyUsage = %v, want server auth", leaf.ExtKeyUsage)
	}
	if leaf.Subject.CommonName != "svc.ns.svc" {
		t.Errorf("CN = %q", leaf.Subject.CommonName)
	}
	for _, name := range []string{"svc.ns.svc", "svc.ns.svc.cluster.local", "localhost", "127.0.0.1", "::1"} {
		if _, err := leaf.Verify(x509.VerifyOptions{DNSName: name, Roots: b.CertPool()}); err != nil {
			t.Errorf("verify %s: %v", name, err)
		}
	}
	if _, err := leaf.Verify(x509.VerifyOptions{DNSName: "other.ns.svc", Roots: b.CertPool()}); err == nil {
		t.Error("certificate verified for a name it does not carry")
	}
	if got := time.Until(leaf.NotAfter); got < 364*24*time.Hour || got > 366*24*time.Hour {
		t.Errorf("serving cert valid for %v, want ~1y", got)
	}
	ca := b.CA.Cert
	if !ca.IsCA || !ca.BasicConstraintsValid || ca.KeyUsage&x509.KeyUsageCertSign == 0 {
		t.Errorf("CA constraints: IsCA=%v KeyUsage=%v", ca.IsCA, ca.KeyUsage)
	}
}

func TestClusterDomainAndNoService(t *testing.T) {
	got := certgen.Hosts(certgen.Options{Service: "a", Namespace: "b", ClusterDomain: "example.org."})
	if !slices.Contains(got, "a.b.svc.example.org") {
		t.Errorf("Hosts = %v", got)
	}
	got = certgen.Hosts(certgen.Options{NoService: true, Hosts: []string{" localhost ", ""}})
	if !slices.Equal(got, []string{"localhost"}) {
		t.Errorf("Hosts = %v", got)
	}
	if _, err := certgen.Generate(certgen.Options{NoService: true}); err == nil {
		t.Error("Generate with no SANs succeeded")
	}
}

func TestCAReuseAndValidityCap(t *testing.T) {
	ca, err := certgen.NewCA("test-ca", 48*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	loaded, err := certgen.LoadCA(ca.CertPEM, ca.KeyPEM)
	if err != nil {
		t.Fatal(err)
	}
	b, err := certgen.Generate(certgen.Options{CA: loaded, CertValidity: 365 * 24 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if string(b.CACert) != string(ca.CertPEM) {
		t.Error("reused CA not in bundle")
	}
	leaf, _ := certgen.ParseCertificates(b.TLSCert)
	if leaf[0].NotAfter.After(ca.Cert.NotAfter) {
		t.Errorf("leaf outlives its CA: %v > %v", leaf[0].NotAfter, ca.Cert.NotAfter)
	}
	if _, err := certgen.LoadCA(b.TLSCert, b.TLSKey); err == nil {
		t.Error("LoadCA accepted a non-CA certificate")
	}
	other, _ := certgen.NewCA("", 0)
	if _, err := certgen.LoadCA(ca.CertPEM, other.KeyPEM); err == nil {
		t.Error("LoadCA accepted a mismatched key")
	}
}

// TestServeTLS checks the files work as a server's --cert-dir content and
// that a client trusting ca.crt connects by service name.
func TestServeTLS(t *testing.T) {
	b, err := certgen.Generate(certgen.Options{Hosts: []string{"127.0.0.1"}})
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "certs")
	if err := b.WriteFiles(dir); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(filepath.Join(dir, certgen.KeyFile)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("tls.key: %v %v", fi, err)
	}
	pair, err := tls.LoadX509KeyPair(filepath.Join(dir, certgen.CertFile), filepath.Join(dir, certgen.KeyFile))
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "ok")
	}))
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{pair}}
	srv.StartTLS()
	defer srv.Close()

	caPEM, err := os.ReadFile(filepath.Join(dir, certgen.CACertFile))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	for _, serverName := range []string{"depends-on-webhook.depends-on-system.svc", "127.0.0.1"} {
		client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
			TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: serverName},
		}}
		resp, err := client.Get(srv.URL)
		if err != nil {
			t.Fatalf("%s: %v", serverName, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(body) != "ok" {
			t.Errorf("%s: body %q", serverName, body)
		}
	}
}

func TestWriteComponent(t *testing.T) {
	b, err := certgen.Generate(certgen.Options{})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := b.WriteComponent(dir, certgen.ComponentOptions{Namespace: "ns1", SecretName: "s1", WebhookConfiguration: "w1"}); err != nil {
		t.Fatal(err)
	}
	read := func(name string) string {
		data, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		return string(data)
	}
	for name, want := range map[string][]string{
		certgen.ComponentFile:     {"kind: Component", "- secret.yaml", "path: cabundle-patch.yaml", "name: w1"},
		certgen.SecretFile:        {"name: s1", "namespace: ns1", "type: kubernetes.io/tls", "tls.crt: ", "tls.key: ", "ca.crt: "},
		certgen.CABundlePatchFile: {"path: /webhooks/0/clientConfig/caBundle"},
		".gitignore":              {"*"},
	} {
		got := read(name)
		for _, w := range want {
			if !strings.Contains(got, w) {
				t.Errorf("%s lacks %q:\n%s", name, w, got)
			}
		}
	}
}

func TestConcatPEM(t *testing.T) {
	got := string(certgen.ConcatPEM([]byte("a"), nil, []byte("b\n")))
	if got != "a\nb\n" {
		t.Errorf("ConcatPEM = %q", got)
	}
}
