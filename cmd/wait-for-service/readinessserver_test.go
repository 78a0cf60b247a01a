package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/depends-on/depends-on/webhook/target"
)

// testCA is a certificate authority made for one test, with a serving
// certificate it signed.
type testCA struct {
	pem  string // the CA certificate, PEM
	cert tls.Certificate
}

// newTestCA makes a CA and a serving certificate for hosts (DNS names or IP
// addresses).
func newTestCA(t *testing.T, hosts ...string) *testCA {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "test readiness CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(time.Hour),
		IsCA:                  true,
		KeyUsage:              x509.KeyUsageCertSign,
		BasicConstraintsValid: true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, err := x509.ParseCertificate(caDER)
	if err != nil {
		t.Fatal(err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: hosts[0]},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	return &testCA{
		pem:  string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER})),
		cert: tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key},
	}
}

// fakeReadiness serves GET /v1/wait as the protocol between wait-for-service
// and the readiness service says (long-poll on seen=, wait= default 30s max
// 60s, 400/401/403/503 with {"error":...}), over HTTPS with a testCA
// certificate. Tests set each target's state; unknown targets are waiting,
// "not found".
type fakeReadiness struct {
	ca *testCA

	mu          sync.Mutex
	srv         *httptest.Server
	addr        string // host:port, kept across restarts
	states      map[string]waitAnswer
	changed     chan struct{}          // closed and replaced on every change
	refuse      map[string]fakeRefusal // target -> a fixed error answer
	unavailable int                    // answer the next n requests with 503
	noHold      bool                   // answer at once (a broken server)
	tokens      map[string]bool        // tokens that authenticate
	requests    []fakeRequest
}

type fakeRefusal struct {
	code int
	msg  string
}

type fakeRequest struct {
	at                  time.Time
	target, seen, wait  string
	token               string
	code                int // the answer's status
	state, answerReason string
}

// newFakeReadiness starts the server on 127.0.0.1 with a certificate for
// 127.0.0.1 and readiness.test; tokens are the tokens it accepts.
func newFakeReadiness(t *testing.T, tokens ...string) *fakeReadiness {
	t.Helper()
	f := &fakeReadiness{
		ca:      newTestCA(t, "127.0.0.1", "readiness.test"),
		states:  map[string]waitAnswer{},
		changed: make(chan struct{}),
		refuse:  map[string]fakeRefusal{},
		tokens:  map[string]bool{},
	}
	for _, tok := range tokens {
		f.tokens[tok] = true
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f.addr = l.Addr().String()
	f.start(l)
	t.Cleanup(f.stop)
	return f
}

func (f *fakeReadiness) url() string { return "https://" + f.addr }

func (f *fakeReadiness) start(l net.Listener) {
	srv := httptest.NewUnstartedServer(http.HandlerFunc(f.serveHTTP))
	srv.Listener.Close()
	srv.Listener = l
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{f.ca.cert}}
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // handshake failures are expected in some tests
	srv.StartTLS()
	f.mu.Lock()
	f.srv = srv
	f.mu.Unlock()
}

// stop closes every connection (ending held requests at once, as a killed
// server would) and the listener.
func (f *fakeReadiness) stop() {
	f.mu.Lock()
	srv := f.srv
	f.srv = nil
	f.mu.Unlock()
	if srv != nil {
		srv.CloseClientConnections()
		srv.Close()
	}
}

// listenAgain listens on an address that was just closed.
func listenAgain(addr string) (net.Listener, error) {
	var err error
	for range 20 {
		var l net.Listener
		if l, err = net.Listen("tcp", addr); err == nil {
			return l, nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return nil, err
}

// update changes the server's settings under its lock.
func (f *fakeReadiness) update(fn func(f *fakeReadiness)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn(f)
}

func (f *fakeReadiness) set(target, state, reason string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.states[target] = waitAnswer{Target: target, State: state, Reason: reason}
	close(f.changed)
	f.changed = make(chan struct{})
}

func (f *fakeReadiness) setTokens(tokens ...string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.tokens = map[string]bool{}
	for _, tok := range tokens {
		f.tokens[tok] = true
	}
}

func (f *fakeReadiness) log() []fakeRequest {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]fakeRequest(nil), f.requests...)
}

func (f *fakeReadiness) serveHTTP(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	rec := fakeRequest{at: time.Now(), target: q.Get("target"), seen: q.Get("seen"), wait: q.Get("wait")}
	rec.token, _ = strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	answer := func(code int, body any) {
		rec.code = code
		if a, ok := body.(waitAnswer); ok {
			rec.state, rec.answerReason = a.State, a.Reason
		}
		f.mu.Lock()
		f.requests = append(f.requests, rec)
		f.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		json.NewEncoder(w).Encode(body)
	}
	fail := func(code int, msg string) { answer(code, map[string]string{"error": msg}) }

	if r.Method != http.MethodGet || r.URL.Path != "/v1/wait" {
		fail(http.StatusNotFound, "not found")
		return
	}
	f.mu.Lock()
	authenticated := f.tokens[rec.token]
	refusal, refused := f.refuse[rec.target]
	unavailable := f.unavailable > 0
	if unavailable && authenticated {
		f.unavailable--
	}
	noHold := f.noHold
	f.mu.Unlock()
	switch {
	case !authenticated:
		fail(http.StatusUnauthorized, "invalid bearer token")
		return
	case unavailable:
		fail(http.StatusServiceUnavailable, "watches not synced yet")
		return
	case refused:
		fail(refusal.code, refusal.msg)
		return
	}
	if tg, err := target.Parse(rec.target); err != nil || !tg.Kind.IsObject() || tg.Name != rec.target {
		fail(http.StatusBadRequest, "bad target "+rec.target)
		return
	}
	hold := 30 * time.Second
	if rec.wait != "" {
		d, err := time.ParseDuration(rec.wait)
		if err != nil || d < 0 || d > time.Minute {
			fail(http.StatusBadRequest, "bad wait "+rec.wait)
			return
		}
		hold = d
	}
	timer := time.NewTimer(hold)
	defer timer.Stop()
	for {
		f.mu.Lock()
		cur, ok := f.states[rec.target]
		changed := f.changed
		f.mu.Unlock()
		if !ok {
			cur = waitAnswer{Target: rec.target, State: "waiting", Reason: "not found"}
		}
		if cur.State != "waiting" || cur.Reason != rec.seen || noHold {
			answer(http.StatusOK, cur)
			return
		}
		select {
		case <-changed:
		case <-timer.C:
			answer(http.StatusOK, cur)
			return
		case <-r.Context().Done():
			f.mu.Lock()
			f.requests = append(f.requests, rec) // code 0: cut off
			f.mu.Unlock()
			return
		}
	}
}
