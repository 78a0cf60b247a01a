package integration

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/depends-on/depends-on/test/testutil"
	"github.com/depends-on/depends-on/webhook"
)

const (
	// readyTimeout bounds a webhook start until /readyz answers 200.
	readyTimeout = time.Minute
	// stopTimeout bounds the exit after SIGTERM (--drain-period=0s, so it is quick).
	stopTimeout = 30 * time.Second
)

// webhookProcess is the real webhook binary (./cmd/webhook) run as a child
// process on loopback ports, with the flags the Deployment uses.
type webhookProcess struct {
	bin, certDir, logPath string
	// Ports stay the same across restarts: the registered URL points at port.
	port, healthPort, metricsPort int
	// extraArgs are appended to the flags below (later flags win).
	extraArgs []string

	mu      sync.Mutex
	cmd     *exec.Cmd
	exited  chan struct{} // closed when cmd has exited
	exitErr error
}

func (w *webhookProcess) mutateURL() string {
	return fmt.Sprintf("https://127.0.0.1:%d/mutate", w.port)
}

// startFresh picks free loopback ports and starts the process, retrying with
// new ports if one was taken between picking and binding.
func (w *webhookProcess) startFresh() error {
	var err error
	for attempt := 0; attempt < 3; attempt++ {
		var ports []int
		if ports, err = freePorts(3); err != nil {
			return err
		}
		w.port, w.healthPort, w.metricsPort = ports[0], ports[1], ports[2]
		if err = w.start(); err == nil {
			return nil
		}
	}
	return err
}

// start runs the binary and waits until /readyz answers 200.
func (w *webhookProcess) start() error {
	w.mu.Lock()
	if w.cmd != nil {
		w.mu.Unlock()
		return errors.New("webhook already running")
	}
	logFile, err := os.OpenFile(w.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		w.mu.Unlock()
		return err
	}
	caFile := filepath.Join(filepath.Dir(w.logPath), "readiness-ca.pem")
	if err := os.WriteFile(caFile, []byte(testutil.GoldenReadinessCA), 0o600); err != nil {
		logFile.Close()
		w.mu.Unlock()
		return err
	}
	cmd := exec.Command(w.bin,
		"--host=127.0.0.1",
		"--port="+strconv.Itoa(w.port),
		"--cert-dir="+w.certDir,
		"--health-probe-bind-address="+loopback(w.healthPort),
		"--metrics-bind-address="+loopback(w.metricsPort),
		// No drain: a stopped webhook must be gone at once for the outage case.
		"--drain-period=0s",
		"--shutdown-timeout=5s",
		// The image the goldens were generated with (webhook.DefaultConfig).
		"--wait-image="+webhook.DefaultWaitImage,
		// The readiness settings of the goldens (testutil), so object keys are admitted.
		"--readiness-url="+testutil.GoldenReadinessURL,
		"--readiness-ca-file="+caFile,
		"--zap-log-level=debug",
	)
	cmd.Args = append(cmd.Args, w.extraArgs...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		logFile.Close()
		w.mu.Unlock()
		return fmt.Errorf("start webhook: %w", err)
	}
	exited := make(chan struct{})
	w.cmd, w.exited = cmd, exited
	go func() {
		err := cmd.Wait()
		logFile.Close()
		w.mu.Lock()
		w.exitErr = err
		w.mu.Unlock()
		close(exited)
	}()
	w.mu.Unlock()

	if err := w.waitReady(exited); err != nil {
		_ = w.stop()
		return err
	}
	return nil
}

func (w *webhookProcess) waitReady(exited <-chan struct{}) error {
	deadline := time.Now().Add(readyTimeout)
	hc := &http.Client{Timeout: 2 * time.Second}
	url := fmt.Sprintf("http://%s/readyz", loopback(w.healthPort))
	var last string
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			w.mu.Lock()
			err := w.exitErr
			w.mu.Unlock()
			return fmt.Errorf("webhook exited before it was ready (%v); log tail:\n%s", err, w.logTail(30))
		default:
		}
		resp, err := hc.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			last = resp.Status
		} else {
			last = err.Error()
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("webhook not ready within %s (%s); log tail:\n%s", readyTimeout, last, w.logTail(30))
}

// stop sends SIGTERM and waits for the exit (SIGKILL after stopTimeout).
func (w *webhookProcess) stop() error {
	w.mu.Lock()
	cmd, exited := w.cmd, w.exited
	w.mu.Unlock()
	if cmd == nil {
		return nil
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-exited:
	case <-time.After(stopTimeout):
		_ = cmd.Process.Kill()
		<-exited
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.cmd, w.exited = nil, nil
	if err := w.exitErr; err != nil {
		return fmt.Errorf("webhook exit: %w", err)
	}
	return nil
}

func (w *webhookProcess) running() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.cmd != nil
}

// logTail returns the last n lines the process logged.
func (w *webhookProcess) logTail(n int) string {
	data, err := os.ReadFile(w.logPath)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// servedCertificate dials the webhook's TLS port, verifying it against pool,
// and returns the leaf certificate it presented.
func (w *webhookProcess) servedCertificate(pool *x509.CertPool) (*x509.Certificate, error) {
	d := &net.Dialer{Timeout: 2 * time.Second}
	conn, err := tls.DialWithDialer(d, "tcp", loopback(w.port), &tls.Config{RootCAs: pool, ServerName: "127.0.0.1", MinVersion: tls.VersionTLS12})
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	certs := conn.ConnectionState().PeerCertificates
	if len(certs) == 0 {
		return nil, errors.New("no peer certificate")
	}
	return certs[0], nil
}

// metrics is one scrape of the webhook's /metrics.
type metrics map[string]*dto.MetricFamily

func (w *webhookProcess) scrape(ctx context.Context) (metrics, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("http://%s/metrics", loopback(w.metricsPort)), nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET /metrics: %s", resp.Status)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("parse /metrics: %w", err)
	}
	return metrics(fams), nil
}

// sum adds the counters of family name whose labels include match.
func (m metrics) sum(name string, match map[string]string) float64 {
	fam, ok := m[name]
	if !ok {
		return 0
	}
	total := 0.0
	for _, metric := range fam.GetMetric() {
		labels := map[string]string{}
		for _, l := range metric.GetLabel() {
			labels[l.GetName()] = l.GetValue()
		}
		ok := true
		for k, v := range match {
			if labels[k] != v {
				ok = false
			}
		}
		if ok && metric.GetCounter() != nil {
			total += metric.GetCounter().GetValue()
		}
	}
	return total
}

// The counters the cases read.
const (
	metricRequests  = "controller_runtime_webhook_requests_total"
	metricDecisions = "depends_on_admission_decisions_total"
)

// counts are the counters the cases compare before and after an action.
type counts struct {
	// requests is how often the API server called /mutate (all status codes).
	requests float64
	// decisions by webhook.Decision.
	decisions map[webhook.Decision]float64
}

func (m metrics) counts() counts {
	c := counts{
		requests:  m.sum(metricRequests, map[string]string{"webhook": "/mutate"}),
		decisions: map[webhook.Decision]float64{},
	}
	for _, d := range []webhook.Decision{webhook.DecisionAllowed, webhook.DecisionPatched, webhook.DecisionDenied, webhook.DecisionErrored} {
		c.decisions[d] = m.sum(metricDecisions, map[string]string{"decision": string(d)})
	}
	return c
}

func (c counts) sub(before counts) counts {
	d := counts{requests: c.requests - before.requests, decisions: map[webhook.Decision]float64{}}
	for k, v := range c.decisions {
		if dv := v - before.decisions[k]; dv != 0 {
			d.decisions[k] = dv
		}
	}
	return d
}

func (c counts) String() string {
	return fmt.Sprintf("requests=%v decisions=%v", c.requests, c.decisions)
}

// snapshot scrapes the webhook's counters.
func snapshot(t *testing.T) counts {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	m, err := suite.webhook.scrape(ctx)
	if err != nil {
		t.Fatalf("scrape webhook metrics: %v", err)
	}
	return m.counts()
}

// expectDelta waits until the counters moved by exactly want since before.
// The decision counter is incremented inside the handler, before the response
// is written; controller-runtime's request counter only after the handler
// returned, so it may lag the API server's answer by a moment: hence the
// bounded wait, which fails as soon as a counter overshoots.
func expectDelta(t *testing.T, before counts, want counts) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		got := snapshot(t).sub(before)
		if got.requests == want.requests && equalDecisions(got.decisions, want.decisions) {
			return
		}
		if got.requests > want.requests || time.Now().After(deadline) {
			t.Fatalf("webhook counters moved by %s, want %s", got, want)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func equalDecisions(a, b map[webhook.Decision]float64) bool {
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	for k, v := range b {
		if a[k] != v {
			return false
		}
	}
	return true
}

func loopback(port int) string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(port)) }

// freePorts reserves n distinct loopback ports by listening on :0, then frees them.
func freePorts(n int) ([]int, error) {
	var ports []int
	var lns []net.Listener
	defer func() {
		for _, ln := range lns {
			ln.Close()
		}
	}()
	for i := 0; i < n; i++ {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		lns = append(lns, ln)
		ports = append(ports, ln.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}
