package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"github.com/depends-on/depends-on/certs/certgen"
	"github.com/depends-on/depends-on/test/testutil"
	"github.com/depends-on/depends-on/webhook"
)

func TestParseFlags(t *testing.T) {
	o, err := parseFlags([]string{"--wait-image=reg.example/wfs:1", "--default-timeout=2m", "--wait-cpu-limit=", "--cluster-domain=corp.local"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	c := o.server.injector
	if c.WaitImage != "reg.example/wfs:1" || c.DefaultTimeout != 2*time.Minute || c.ClusterDomain != "corp.local" {
		t.Errorf("config = %+v", c)
	}
	if _, ok := c.Resources.Limits[corev1.ResourceCPU]; ok {
		t.Errorf("empty --wait-cpu-limit must remove the CPU limit: %v", c.Resources.Limits)
	}
	if got := c.Resources.Requests.Memory().String(); got != "16Mi" {
		t.Errorf("memory request = %s", got)
	}

	_, err = parseFlags([]string{"--wait-memory-limit=lots", "--fetch-size-limit=-1Mi", "--wait-image="}, io.Discard)
	if err == nil {
		t.Fatal("want an error")
	}
	for _, s := range []string{"--wait-memory-limit", "lots"} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("%q does not mention %q", err, s)
		}
	}
	if _, err := parseFlags([]string{"--fetch-size-limit=-1Mi"}, io.Discard); err == nil || !strings.Contains(err.Error(), "fetch size limit") {
		t.Errorf("negative fetch size limit: %v", err)
	}
}

func TestParseFlagsReadiness(t *testing.T) {
	const ca = "-----BEGIN CERTIFICATE-----\ndGVzdCBDQQ==\n-----END CERTIFICATE-----\n"
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "ca.crt"), []byte(ca), 0o600); err != nil {
		t.Fatal(err)
	}
	other := filepath.Join(t.TempDir(), "other.pem")
	if err := os.WriteFile(other, []byte(strings.ReplaceAll(ca, "dGVzdCBDQQ==", "b3RoZXI=")), 0o600); err != nil {
		t.Fatal(err)
	}
	// Off by default: the object keys are denied.
	o, err := parseFlags([]string{"--cert-dir=" + dir}, io.Discard)
	if err != nil || o.server.injector.ReadinessURL != "" || o.server.injector.ReadinessCA != "" {
		t.Fatalf("default: %+v, %v", o, err)
	}
	// The CA defaults to the cert dir's ca.crt.
	o, err = parseFlags([]string{"--cert-dir=" + dir, "--readiness-url=https://r.test:443"}, io.Discard)
	if err != nil || o.server.injector.ReadinessURL != "https://r.test:443" || o.server.injector.ReadinessCA != ca {
		t.Fatalf("cert dir CA: %+v, %v", o, err)
	}
	o, err = parseFlags([]string{"--cert-dir=" + dir, "--readiness-url=https://r.test:443", "--readiness-ca-file=" + other}, io.Discard)
	if err != nil || !strings.Contains(o.server.injector.ReadinessCA, "b3RoZXI=") {
		t.Fatalf("--readiness-ca-file: %+v, %v", o, err)
	}
	// The skip of satisfied dependencies: on with the readiness service, off without it.
	if o, err := parseFlags([]string{"--cert-dir=" + dir, "--readiness-url=https://r.test:443"}, io.Discard); err != nil || !o.server.skipSatisfied ||
		o.server.satisfiedDeadline != 150*time.Millisecond || o.server.satisfiedTokenFile != "/var/run/secrets/depends-on.dev/readiness/token" {
		t.Errorf("with --readiness-url: %+v, %v", o, err)
	}
	if o, err := parseFlags([]string{"--cert-dir=" + dir, "--readiness-url=https://r.test:443", "--skip-satisfied=false"}, io.Discard); err != nil || o.server.skipSatisfied {
		t.Errorf("--skip-satisfied=false: %+v, %v", o, err)
	}
	if o, err := parseFlags([]string{"--cert-dir=" + dir}, io.Discard); err != nil || o.server.skipSatisfied {
		t.Errorf("without --readiness-url: %+v, %v", o, err)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--skip-satisfied=true"}, "--skip-satisfied needs --readiness-url"},
		{[]string{"--satisfied-deadline=5s"}, "--satisfied-deadline=5s"},
		{[]string{"--satisfied-ttl=0s"}, "--satisfied-ttl=0s"},
		{[]string{"--cert-dir=" + t.TempDir(), "--readiness-url=https://r.test"}, "ca.crt"},
		{[]string{"--cert-dir=" + dir, "--readiness-url=http://r.test"}, "readiness URL"},
		{[]string{"--readiness-ca-file=" + other}, "needs --readiness-url"},
	} {
		if _, err := parseFlags(tc.args, io.Discard); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: %v, want an error containing %q", tc.args, err, tc.want)
		}
	}
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// TestServe runs the real server on loopback with a fresh certificate: it patches
// over TLS 1.2+ without HTTP/2, counts decisions, and drains on shutdown.
// testServer returns the options of a server parsed from args, on free
// loopback ports with a throwaway serving certificate (the bundle) and its
// own metrics registry.
func testServer(t *testing.T, args ...string) (serverOptions, *certgen.Bundle) {
	t.Helper()
	dir := t.TempDir()
	bundle, err := certgen.Generate(certgen.Options{NoService: true, Hosts: []string{"127.0.0.1"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := bundle.WriteFiles(dir); err != nil {
		t.Fatal(err)
	}
	cli, err := parseFlags(args, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	o := cli.server
	o.host, o.port, o.certDir = "127.0.0.1", freePort(t), dir
	o.healthAddr = "127.0.0.1:" + strconv.Itoa(freePort(t))
	o.metricsAddr = "127.0.0.1:" + strconv.Itoa(freePort(t))
	o.drainPeriod, o.shutdownTimeout = 700*time.Millisecond, 2*time.Second
	reg := prometheus.NewRegistry()
	o.registry, o.gatherer = reg, reg
	return o, bundle
}

// waitReady waits until the server's /readyz answers 200.
func waitReady(t *testing.T, o serverOptions) {
	t.Helper()
	waitFor(t, func() bool {
		resp, err := http.Get("http://" + o.healthAddr + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
}

func TestServe(t *testing.T) {
	o, bundle := testServer(t)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	var logs testutil.SyncBuffer
	go func() { done <- run(ctx, o, zap.New(zap.WriteTo(&logs))) }()

	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		TLSClientConfig:   &tls.Config{RootCAs: bundle.CertPool(), MinVersion: tls.VersionTLS12},
		ForceAttemptHTTP2: true,
	}}
	base := "https://127.0.0.1:" + strconv.Itoa(o.port)
	waitReady(t, o)

	pod := `{"metadata":{"name":"myapp-pod","annotations":{"depends-on.dev/services":"myservice, mydb"}},"spec":{"containers":[{"name":"app","image":"busybox:1.28"}]}}`
	resp, body := postReview(t, client, base+MutatePath, pod)
	if resp.ProtoMajor != 1 {
		t.Errorf("served %s, want HTTP/1.1 only", resp.Proto)
	}
	if resp.TLS == nil || resp.TLS.Version < tls.VersionTLS12 {
		t.Errorf("TLS state = %+v", resp.TLS)
	}
	if !body.Allowed || !strings.Contains(string(body.Patch), "dns:mydb.default.svc.cluster.local.") {
		t.Fatalf("response = %+v, patch %s", body, body.Patch)
	}
	_, body = postReview(t, client, base+MutatePath, `{"metadata":{"name":"p","annotations":{"depends-on.dev/tcp":"x"}},"spec":{"containers":[{"name":"a","image":"a"}]}}`)
	if body.Allowed || !strings.Contains(body.Result.Message, "depends-on.dev/tcp") {
		t.Fatalf("response = %+v", body)
	}

	metrics := get(t, "http://"+o.metricsAddr+"/metrics")
	for _, want := range []string{
		`depends_on_admission_decisions_total{decision="patched",reason="injected"} 1`,
		`depends_on_admission_decisions_total{decision="denied",reason="invalid"} 1`,
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("metrics lack %q:\n%s", want, grep(metrics, "depends_on"))
		}
	}

	// Drain: readiness fails at once, requests are still served but told to close
	// their connection, and the server exits after the drain period.
	cancel()
	waitFor(t, func() bool {
		resp, err := http.Get("http://" + o.healthAddr + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusInternalServerError
	})
	resp, body = postReview(t, client, base+MutatePath, pod)
	if !body.Allowed || !resp.Close {
		t.Errorf("during drain: allowed=%v close=%v", body.Allowed, resp.Close)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("run: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("server did not stop after draining")
	}
	if _, err := client.Get(base + MutatePath); err == nil {
		t.Error("server still answers after shutdown")
	}
	if !strings.Contains(logs.String(), `"msg":"shutdown requested: draining"`) {
		t.Errorf("logs are not JSON lines with the drain message:\n%s", logs.String())
	}
}

func postReview(t *testing.T, c *http.Client, url, object string) (*http.Response, *admissionv1.AdmissionResponse) {
	t.Helper()
	ar := admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
		Request: &admissionv1.AdmissionRequest{
			UID: "u1", Kind: metav1.GroupVersionKind{Version: "v1", Kind: "Pod"},
			Resource:  metav1.GroupVersionResource{Version: "v1", Resource: "pods"},
			Namespace: "default", Operation: admissionv1.Create,
			Object: runtime.RawExtension{Raw: []byte(object)},
		},
	}
	raw, _ := json.Marshal(ar)
	resp, err := c.Post(url, "application/json", bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out admissionv1.AdmissionReview
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || out.Response == nil {
		t.Fatalf("decode: %v", err)
	}
	return resp, out.Response
}

func get(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

func grep(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met in 15s")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// The skip of satisfied dependencies needs the webhook's token: without the
// file it is off (and says so); with it, its metrics are registered.
func TestNewSatisfier(t *testing.T) {
	bundle, err := certgen.Generate(certgen.Options{NoService: true, Hosts: []string{"127.0.0.1"}})
	if err != nil {
		t.Fatal(err)
	}
	o := serverOptions{satisfiedTokenFile: filepath.Join(t.TempDir(), "absent"), satisfiedTTL: 5 * time.Second}
	o.injector.ReadinessURL, o.injector.ReadinessCA = "https://127.0.0.1:1", string(bundle.CACert)
	var logs testutil.SyncBuffer
	reg := prometheus.NewRegistry()
	if s, err := newSatisfier(o, reg, zap.New(zap.WriteTo(&logs))); s != nil || err != nil {
		t.Fatalf("without the token file: %v, %v", s, err)
	}
	if !strings.Contains(logs.String(), "not skipping satisfied dependencies") {
		t.Errorf("no log line:\n%s", logs.String())
	}
	o.satisfiedTokenFile = filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(o.satisfiedTokenFile, []byte("t"), 0o600); err != nil {
		t.Fatal(err)
	}
	s, err := newSatisfier(o, reg, zap.New(zap.WriteTo(&logs)))
	if err != nil || s == nil {
		t.Fatalf("with the token file: %v, %v", s, err)
	}
	fams, err := reg.Gather()
	if err != nil || len(fams) != 1 || fams[0].GetName() != "depends_on_satisfied_checks_total" {
		t.Errorf("metrics %v %v", fams, err)
	}
}

// A rotated readiness CA reaches the wait containers of new Pods without a
// restart: the webhook reads --readiness-ca-file again.
func TestReadinessCAReload(t *testing.T) {
	var cas [2][]byte
	for i := range cas {
		b, err := certgen.Generate(certgen.Options{NoService: true, Hosts: []string{"r.test"}})
		if err != nil {
			t.Fatal(err)
		}
		cas[i] = b.CACert
	}
	caFile := filepath.Join(t.TempDir(), "readiness-ca.crt")
	if err := os.WriteFile(caFile, cas[0], 0o600); err != nil {
		t.Fatal(err)
	}
	o, serving := testServer(t, "--readiness-url=https://r.test:443", "--readiness-ca-file="+caFile,
		"--skip-satisfied=false", "--readiness-ca-reload-interval=50ms")
	o.metricsAddr, o.drainPeriod = "0", 0
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	var logs testutil.SyncBuffer
	go func() { done <- run(ctx, o, zap.New(zap.WriteTo(&logs))) }()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: serving.CertPool(), MinVersion: tls.VersionTLS12},
	}}
	waitReady(t, o)
	// The CA the wait container gets, from the patch's env value.
	caOf := func() string {
		pod := `{"metadata":{"name":"p","annotations":{"depends-on.dev/jobs":"migrate"}},"spec":{"serviceAccountName":"default","containers":[{"name":"app","image":"busybox:1.28"}]}}`
		_, body := postReview(t, client, "https://127.0.0.1:"+strconv.Itoa(o.port)+MutatePath, pod)
		var ops []struct {
			Value json.RawMessage `json:"value"`
		}
		if err := json.Unmarshal(body.Patch, &ops); err != nil {
			t.Fatalf("patch %s: %v", body.Patch, err)
		}
		for _, op := range ops {
			var cs []corev1.Container
			if json.Unmarshal(op.Value, &cs) != nil {
				continue
			}
			for _, c := range cs {
				for _, e := range c.Env {
					if e.Name == webhook.EnvReadinessCA {
						return e.Value
					}
				}
			}
		}
		t.Fatalf("no %s in the patch %s", webhook.EnvReadinessCA, body.Patch)
		return ""
	}
	if got := caOf(); got != string(cas[0]) {
		t.Fatalf("before the rotation the wait container got another CA:\n%s", got)
	}
	if err := os.WriteFile(caFile, cas[1], 0o600); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return caOf() == string(cas[1]) })
	if !strings.Contains(logs.String(), "readiness CA changed") {
		t.Errorf("no log line for the change:\n%s", logs.String())
	}
}
