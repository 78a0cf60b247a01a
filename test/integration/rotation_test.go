package integration

import (
	"context"
	"crypto/x509"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/depends-on/depends-on/certs/certgen"
	"github.com/depends-on/depends-on/webhook"
)

// certReloadTimeout bounds how long the webhook may serve the old certificate
// after the files were replaced: controller-runtime's certwatcher reloads on
// fsnotify events and, failing those, polls every 10s (its
// defaultWatchInterval); the rest is margin for a loaded machine.
const certReloadTimeout = 10*time.Second + 20*time.Second

// Case 9: the serving certificate is replaced on disk, atomically file by
// file (certgen.Bundle.WriteFiles, as a Secret update or `make certs` does),
// while Pods are being created in a loop: no create fails, and the new
// certificate is served within the certwatcher's reload time.
func TestCertificateRotation(t *testing.T) {
	useWebhook(t)
	ns := newNamespace(t, nil)
	pool := x509.NewCertPool()
	pool.AddCert(suite.ca.Cert)
	old, err := suite.webhook.servedCertificate(pool)
	if err != nil {
		t.Fatalf("dial webhook: %v", err)
	}

	// Create annotated Pods until told to stop; every create must succeed
	// and come back injected.
	loopCtx, stopLoop := context.WithCancel(testCtx(t))
	var (
		created  atomic.Int64
		mu       sync.Mutex
		failures []string
		wg       sync.WaitGroup
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			pod := simplePod(ns, fmt.Sprintf("rotation-%d", i), map[string]string{webhook.AnnotationServices: "mydb"})
			err := suite.client.Create(loopCtx, pod)
			if loopCtx.Err() != nil {
				return // stopped mid-call: not a failure
			}
			if err == nil && pod.Annotations[webhook.AnnotationInjected] == "" {
				err = fmt.Errorf("stored without injection")
			}
			if err != nil {
				mu.Lock()
				failures = append(failures, fmt.Sprintf("%s (after %d creates): %v", pod.Name, created.Load(), err))
				mu.Unlock()
				continue
			}
			created.Add(1)
		}
	}()
	stop := func() { stopLoop(); wg.Wait() }
	defer stop()
	waitFor := func(what string, timeout time.Duration, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(timeout)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("timed out after %s waiting for %s", timeout, what)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	waitFor("the create loop to get going", 30*time.Second, func() bool { return created.Load() >= 3 })

	b, err := certgen.Generate(certgen.Options{CA: suite.ca, NoService: true, Hosts: []string{"127.0.0.1"}})
	if err != nil {
		t.Fatal(err)
	}
	certs, err := certgen.ParseCertificates(b.TLSCert)
	if err != nil {
		t.Fatal(err)
	}
	next := certs[0]
	before := created.Load()
	replaced := time.Now()
	if err := b.WriteFiles(suite.webhook.certDir); err != nil {
		t.Fatal(err)
	}

	var served *x509.Certificate
	waitFor("the new certificate to be served", certReloadTimeout, func() bool {
		served, err = suite.webhook.servedCertificate(pool)
		return err == nil && served.SerialNumber.Cmp(next.SerialNumber) == 0
	})
	reload := time.Since(replaced)
	if !served.Equal(next) {
		t.Errorf("served certificate has the new serial but is not the new certificate")
	}
	if served.SerialNumber.Cmp(old.SerialNumber) == 0 {
		t.Fatal("new and old certificate share a serial")
	}
	atReload := created.Load()
	// Keep creating for a while with the new certificate in place.
	waitFor("creates after the reload", 30*time.Second, func() bool { return created.Load() >= atReload+5 })
	stop()

	mu.Lock()
	defer mu.Unlock()
	for _, f := range failures {
		t.Errorf("create failed during rotation: %s", f)
	}
	t.Logf("new certificate served %s after the files were replaced; %d Pods created (%d before the swap, %d while the old certificate was still served, %d after)",
		reload.Round(time.Millisecond), created.Load(), before, atReload-before, created.Load()-atReload)
}
