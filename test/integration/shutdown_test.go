package integration

import (
	"crypto/tls"
	"crypto/x509"
	"path/filepath"
	"testing"
	"time"
)

// --shutdown-timeout bounds in-flight requests on every port, /mutate included:
// controller-runtime's webhook server alone would wait up to a hard-coded minute
// for a client that holds a request open (here: a body never finished), beyond
// the Deployment's terminationGracePeriodSeconds (30).
func TestShutdownTimeoutBoundsWebhookPort(t *testing.T) {
	tmp := t.TempDir()
	w := &webhookProcess{
		bin:       suite.webhook.bin,
		certDir:   filepath.Join(tmp, "certs"),
		logPath:   filepath.Join(tmp, "webhook.log"),
		extraArgs: []string{"--shutdown-timeout=1s"},
	}
	if err := (&testSuite{ca: suite.ca, webhook: w}).issueServingCert(); err != nil {
		t.Fatal(err)
	}
	if err := w.startFresh(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = w.stop() })

	pool := x509.NewCertPool()
	pool.AddCert(suite.ca.Cert)
	conn, err := tls.Dial("tcp", loopback(w.port), &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	// Headers and the first byte of a 100-byte body: the handler is now reading it.
	if _, err := conn.Write([]byte("POST /mutate HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{")); err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond)

	start := time.Now()
	done := make(chan struct{})
	go func() { _ = w.stop(); close(done) }()
	select {
	case <-done:
		t.Logf("exited %s after SIGTERM", time.Since(start).Round(time.Millisecond))
	case <-time.After(15 * time.Second):
		t.Errorf("still running %s after SIGTERM with --drain-period=0s --shutdown-timeout=1s (controller-runtime waits up to 1m for the /mutate port)", time.Since(start).Round(time.Second))
		<-done
		t.Logf("exited %s after SIGTERM", time.Since(start).Round(time.Millisecond))
	}
}
