package satisfied

import (
	"context"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/depends-on/depends-on/certs/certgen"
	"github.com/depends-on/depends-on/webhook"
	"github.com/depends-on/depends-on/webhook/readiness"
)

// fakeService is a /v1/status with settable states, a settable delay, and
// a record of the requests and tokens it got.
type fakeService struct {
	mu     sync.Mutex
	states map[string]readiness.State
	delay  time.Duration
	code   int
	calls  []string
	tokens []string
}

func (f *fakeService) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	delay, code := f.delay, f.code
	f.calls = append(f.calls, r.URL.Query().Get("namespace")+" "+strings.Join(r.URL.Query()["target"], ","))
	f.tokens = append(f.tokens, r.Header.Get("Authorization"))
	out := readiness.StatusAnswer{Namespace: r.URL.Query().Get("namespace")}
	for _, t := range r.URL.Query()["target"] {
		st, ok := f.states[t]
		if !ok {
			st = readiness.StateUnknown
		}
		out.Answers = append(out.Answers, readiness.Answer{Target: t, State: st, Reason: "test"})
	}
	f.mu.Unlock()
	if r.URL.Path != readiness.StatusPath {
		http.NotFound(w, r)
		return
	}
	time.Sleep(delay)
	if code != 0 {
		w.WriteHeader(code)
		_, _ = w.Write([]byte(`{"error":"broken"}`))
		return
	}
	_ = json.NewEncoder(w).Encode(out)
}

func (f *fakeService) set(t string, s readiness.State) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.states == nil {
		f.states = map[string]readiness.State{}
	}
	f.states[t] = s
}

func (f *fakeService) ncalls() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.calls)
}

type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

type fixture struct {
	svc       *fakeService
	c         *Client
	m         *Metrics
	clock     *clock
	tokenFile string
}

func newFixture(t testing.TB) *fixture {
	t.Helper()
	f := &fixture{svc: &fakeService{}, clock: &clock{now: time.Unix(1_800_000_000, 0)}}
	srv := httptest.NewTLSServer(f.svc)
	t.Cleanup(srv.Close)
	ca := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	f.tokenFile = filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(f.tokenFile, []byte("token-1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var err error
	if f.m, err = NewMetrics(prometheus.NewRegistry()); err != nil {
		t.Fatal(err)
	}
	f.c, err = New(Options{URL: srv.URL, CA: ca, TokenFile: f.tokenFile, Metrics: f.m, Now: f.clock.Now, TTL: 4 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func (f *fixture) ask(t *testing.T, deadline time.Duration, targets ...string) (webhook.Verdict, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	return f.c.Satisfied(ctx, "app", targets)
}

func (f *fixture) count(result, cache string) float64 {
	var m dto.Metric
	_ = f.m.Checks.WithLabelValues(result, cache).Write(&m)
	return m.GetCounter().GetValue()
}

func TestClientCachesReadyAnswers(t *testing.T) {
	f := newFixture(t)
	f.svc.set("job:app/migrate", readiness.StateReady)
	f.svc.set("deployment:app/api", readiness.StateReady)
	if v, err := f.ask(t, 2*time.Second, "job:app/migrate", "deployment:app/api"); v != webhook.VerdictSatisfied || err != nil {
		t.Fatalf("first ask: %s %v", v, err)
	}
	if f.svc.ncalls() != 1 || f.svc.calls[0] != "app job:app/migrate,deployment:app/api" || f.svc.tokens[0] != "Bearer token-1" {
		t.Errorf("requests %v tokens %v: want one with both targets and the token", f.svc.calls, f.svc.tokens)
	}
	// Within the TTL: from memory, no request.
	for i := 0; i < 100; i++ {
		if v, err := f.ask(t, time.Millisecond, "job:app/migrate", "deployment:app/api"); v != webhook.VerdictSatisfied || err != nil {
			t.Fatalf("cached ask: %s %v", v, err)
		}
	}
	if f.svc.ncalls() != 1 || f.count("satisfied", "hit") != 100 || f.count("satisfied", "miss") != 1 {
		t.Errorf("%d requests, hits %v, misses %v", f.svc.ncalls(), f.count("satisfied", "hit"), f.count("satisfied", "miss"))
	}

	// Past TTL/2: still answered from memory, refreshed in the background,
	// with the rotated token read again.
	if err := os.WriteFile(f.tokenFile, []byte("token-2"), 0o600); err != nil {
		t.Fatal(err)
	}
	f.svc.set("job:app/migrate", readiness.StateWaiting) // e.g. the Job was re-created
	f.clock.add(3 * time.Second)
	if v, _ := f.ask(t, time.Millisecond, "job:app/migrate", "deployment:app/api"); v != webhook.VerdictSatisfied {
		t.Errorf("stale but within TTL: %s", v)
	}
	waitFor(t, func() bool { return f.svc.ncalls() == 2 })
	waitFor(t, func() bool {
		v, _ := f.ask(t, time.Millisecond, "job:app/migrate", "deployment:app/api")
		return v == webhook.VerdictNotSatisfied
	})
	if f.svc.tokens[1] != "Bearer token-2" {
		t.Errorf("refresh sent %q: the token file must be read again", f.svc.tokens[1])
	}
}

func TestClientVerdicts(t *testing.T) {
	for _, tc := range []struct {
		name  string
		state readiness.State
		want  webhook.Verdict
		// requests after the second ask: unknown is not kept (the watch is
		// probably synced by the next Pod).
		requests int
	}{
		{"waiting", readiness.StateWaiting, webhook.VerdictNotSatisfied, 1},
		{"failed", readiness.StateFailed, webhook.VerdictNotSatisfied, 1},
		{"refused", readiness.StateRefused, webhook.VerdictNotSatisfied, 1},
		{"unknown (not synced)", readiness.StateUnknown, webhook.VerdictUnknown, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			f.svc.set("job:app/migrate", readiness.StateReady)
			f.svc.set("job:app/other", tc.state)
			if v, err := f.ask(t, 2*time.Second, "job:app/migrate", "job:app/other"); v != tc.want || err != nil {
				t.Errorf("got %s %v, want %s", v, err, tc.want)
			}
			// Not-ready answers are kept NegativeTTL (1s) only.
			if v, _ := f.ask(t, 2*time.Second, "job:app/other"); v != tc.want || f.svc.ncalls() != tc.requests {
				t.Errorf("within 1s: %s after %d requests, want %d", v, f.svc.ncalls(), tc.requests)
			}
			f.svc.set("job:app/other", readiness.StateReady)
			f.clock.add(1100 * time.Millisecond)
			if v, _ := f.ask(t, 2*time.Second, "job:app/migrate", "job:app/other"); v != webhook.VerdictSatisfied || f.svc.ncalls() != tc.requests+1 {
				t.Errorf("after 1s: %s after %d requests, want asked again", v, f.svc.ncalls())
			}
		})
	}
}

func TestClientDoubts(t *testing.T) {
	t.Run("deadline passed", func(t *testing.T) {
		f := newFixture(t)
		f.svc.set("job:app/migrate", readiness.StateReady)
		f.svc.delay = 300 * time.Millisecond
		start := time.Now()
		v, err := f.ask(t, 50*time.Millisecond, "job:app/migrate")
		if v != webhook.VerdictUnknown || err == nil || time.Since(start) > 250*time.Millisecond {
			t.Errorf("got %s %v after %s, want unknown with an error at the deadline", v, err, time.Since(start))
		}
		// The late answer still fills the cache for the next Pod.
		waitFor(t, func() bool {
			v, _ := f.ask(t, time.Millisecond, "job:app/migrate")
			return v == webhook.VerdictSatisfied
		})
		if f.svc.ncalls() != 1 || f.count("unknown", "miss") < 1 {
			t.Errorf("%d requests, unknown misses %v", f.svc.ncalls(), f.count("unknown", "miss"))
		}
	})
	t.Run("service error", func(t *testing.T) {
		f := newFixture(t)
		f.svc.code = http.StatusForbidden
		if v, err := f.ask(t, 2*time.Second, "job:app/migrate"); v == webhook.VerdictSatisfied || err == nil {
			t.Errorf("got %s %v", v, err)
		}
		if f.count("error", "miss") != 1 {
			t.Errorf("error misses %v", f.count("error", "miss"))
		}
		// For NegativeTTL the failure is remembered: the next Pods do not
		// wait on a broken service; then it is asked again.
		if v, _ := f.ask(t, 2*time.Second, "job:app/migrate"); v != webhook.VerdictUnknown || f.svc.ncalls() != 1 {
			t.Errorf("right after the failure: %s after %d requests", v, f.svc.ncalls())
		}
		f.svc.mu.Lock()
		f.svc.code = 0
		f.svc.mu.Unlock()
		f.svc.set("job:app/migrate", readiness.StateReady)
		f.clock.add(1100 * time.Millisecond)
		if v, err := f.ask(t, 2*time.Second, "job:app/migrate"); v != webhook.VerdictSatisfied || err != nil || f.svc.ncalls() != 2 {
			t.Errorf("after 1s: %s %v after %d requests", v, err, f.svc.ncalls())
		}
	})
	t.Run("no token file", func(t *testing.T) {
		f := newFixture(t)
		f.svc.set("job:app/migrate", readiness.StateReady)
		_ = os.Remove(f.tokenFile)
		if v, err := f.ask(t, 2*time.Second, "job:app/migrate"); v == webhook.VerdictSatisfied || err == nil || f.svc.ncalls() != 0 {
			t.Errorf("got %s %v after %d requests", v, err, f.svc.ncalls())
		}
	})
	t.Run("unreachable", func(t *testing.T) {
		c, err := New(Options{URL: "https://127.0.0.1:1", CA: testCA(t), TokenFile: "/dev/null"})
		if err != nil {
			t.Fatal(err)
		}
		if v, err := c.Satisfied(context.Background(), "app", []string{"job:app/migrate"}); v == webhook.VerdictSatisfied || err == nil {
			t.Errorf("got %s %v", v, err)
		}
	})
}

func TestClientBounded(t *testing.T) {
	f := newFixture(t)
	f.c.opts.MaxEntries = 10
	for i := 0; i < 50; i++ {
		_, _ = f.ask(t, time.Second, "job:app/j"+string(rune('a'+i%26))+string(rune('a'+i/26)))
	}
	f.c.mu.Lock()
	n := len(f.c.entries)
	f.c.mu.Unlock()
	if n > 10 {
		t.Errorf("%d entries, bound 10", n)
	}
	// One Pod with more targets than the bound: no panic, an answer.
	many := make([]string, 40)
	for i := range many {
		many[i] = fmt.Sprintf("job:app/many-%d", i)
		f.svc.set(many[i], readiness.StateReady)
	}
	if v, err := f.ask(t, 2*time.Second, many...); v == webhook.VerdictNotSatisfied {
		t.Errorf("40 targets over a bound of 10: %s %v", v, err)
	}
}

func TestNewRejects(t *testing.T) {
	for _, o := range []Options{
		{URL: "http://x", CA: testCA(t), TokenFile: "t"},
		{URL: "https://x", CA: []byte("nope"), TokenFile: "t"},
		{URL: "https://x", CA: testCA(t)},
	} {
		if _, err := New(o); err == nil {
			t.Errorf("%+v accepted", o)
		}
	}
}

func testCA(t *testing.T) []byte {
	srv := httptest.NewTLSServer(http.NotFoundHandler())
	defer srv.Close()
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 5s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Run keeps recently asked targets fresh (one request per namespace) and
// drops the ones nobody asked about for KeepWarm.
func TestClientKeepsWarm(t *testing.T) {
	f := newFixture(t)
	f.c.opts.KeepWarm = time.Minute
	f.svc.set("job:app/migrate", readiness.StateReady)
	f.svc.set("job:app/seed", readiness.StateReady)
	if v, _ := f.ask(t, 2*time.Second, "job:app/migrate", "job:app/seed"); v != webhook.VerdictSatisfied {
		t.Fatal(v)
	}
	// 30s later, nobody asked since: refreshed, so a Pod now is a hit.
	f.clock.add(30 * time.Second)
	f.c.refresh(f.clock.Now())
	waitFor(t, func() bool { return f.svc.ncalls() == 2 })
	f.svc.mu.Lock()
	got := f.svc.calls[1]
	f.svc.mu.Unlock()
	if got != "app job:app/migrate,job:app/seed" && got != "app job:app/seed,job:app/migrate" {
		t.Errorf("refresh asked %q, want both targets in one request", got)
	}
	waitFor(t, func() bool {
		f.c.mu.Lock()
		defer f.c.mu.Unlock()
		return f.c.entries[key{"app", "job:app/migrate"}].inflight == nil
	})
	hits := f.count("satisfied", "hit")
	if v, _ := f.ask(t, time.Millisecond, "job:app/migrate", "job:app/seed"); v != webhook.VerdictSatisfied || f.count("satisfied", "hit") != hits+1 {
		t.Errorf("after the refresh: %s, hits %v -> %v", v, hits, f.count("satisfied", "hit"))
	}
	// Not asked for longer than KeepWarm: dropped, not refreshed.
	f.clock.add(2 * time.Minute)
	f.c.refresh(f.clock.Now())
	f.c.mu.Lock()
	n := len(f.c.entries)
	f.c.mu.Unlock()
	if n != 0 || f.svc.ncalls() != 2 {
		t.Errorf("%d entries after KeepWarm, %d requests", n, f.svc.ncalls())
	}
}

// BenchmarkClientHit is the admission path's cost of a cached verdict.
func BenchmarkClientHit(b *testing.B) {
	f := newFixture(b)
	f.svc.set("job:app/migrate", readiness.StateReady)
	f.svc.set("deployment:app/api", readiness.StateReady)
	targets := []string{"job:app/migrate", "deployment:app/api"}
	if v, err := f.c.Satisfied(context.Background(), "app", targets); v != webhook.VerdictSatisfied {
		b.Fatal(v, err)
	}
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if v, _ := f.c.Satisfied(ctx, "app", targets); v != webhook.VerdictSatisfied {
			b.Fatal(v)
		}
	}
}

// With nothing to refresh, Run pings (no targets) so the connection and the
// service's TokenReview of the webhook's token stay warm.
func TestClientPings(t *testing.T) {
	f := newFixture(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go f.c.Run(ctx)
	waitFor(t, func() bool { return f.svc.ncalls() >= 1 })
	f.svc.mu.Lock()
	defer f.svc.mu.Unlock()
	if f.svc.calls[0] != "default " || f.svc.tokens[0] != "Bearer token-1" {
		t.Errorf("first request %q with %q, want a ping with the token", f.svc.calls[0], f.svc.tokens[0])
	}
}

// SetCA (a rotated CA): the requests after it trust only the new CAs.
func TestClientSetCA(t *testing.T) {
	f := newFixture(t)
	f.svc.set("job:app/migrate", readiness.StateReady)
	other, err := certgen.Generate(certgen.Options{NoService: true, Hosts: []string{"127.0.0.1"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := f.c.SetCA(other.CACert); err != nil {
		t.Fatal(err)
	}
	if v, err := f.ask(t, 2*time.Second, "job:app/migrate"); v == webhook.VerdictSatisfied || err == nil || f.svc.ncalls() != 0 {
		t.Fatalf("with a CA that does not sign the server: %s %v, %d requests served", v, err, f.svc.ncalls())
	}
	f.clock.add(2 * time.Second) // past the memory of the failure
	if err := f.c.SetCA(f.c.opts.CA); err != nil {
		t.Fatal(err)
	}
	if v, err := f.ask(t, 2*time.Second, "job:app/migrate"); v != webhook.VerdictSatisfied || err != nil {
		t.Fatalf("with the server's CA again: %s %v", v, err)
	}
	if err := f.c.SetCA([]byte("nope")); err == nil {
		t.Error("SetCA accepted a value without a certificate")
	}
}
