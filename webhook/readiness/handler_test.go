package readiness

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// fakeSource serves one settable state per target.
type fakeSource struct {
	mu     sync.Mutex
	subs   map[string]*fakeState
	active int
}

type fakeState struct {
	mu      sync.Mutex
	res     Result
	changed chan struct{}
	synced  chan struct{}
}

func (f *fakeSource) state(t string) *fakeState {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.subs == nil {
		f.subs = map[string]*fakeState{}
	}
	s := f.subs[t]
	if s == nil {
		s = &fakeState{res: notFound, changed: make(chan struct{}), synced: make(chan struct{})}
		close(s.synced)
		f.subs[t] = s
	}
	return s
}

func (f *fakeSource) set(t string, r Result) {
	s := f.state(t)
	s.mu.Lock()
	s.res = r
	close(s.changed)
	s.changed = make(chan struct{})
	s.mu.Unlock()
}

func (f *fakeSource) Subscribe(t Target) Subscription {
	s := f.state(t.String())
	f.mu.Lock()
	f.active++
	f.mu.Unlock()
	return &fakeSub{f: f, s: s}
}

type fakeSub struct {
	f    *fakeSource
	s    *fakeState
	once sync.Once
}

func (s *fakeSub) Synced() <-chan struct{} { return s.s.synced }
func (s *fakeSub) Changed() <-chan struct{} {
	s.s.mu.Lock()
	defer s.s.mu.Unlock()
	return s.s.changed
}
func (s *fakeSub) Result() Result {
	s.s.mu.Lock()
	defer s.s.mu.Unlock()
	return s.s.res
}
func (s *fakeSub) Release() {
	s.once.Do(func() { s.f.mu.Lock(); s.f.active--; s.f.mu.Unlock() })
}

// tokenAuth maps tokens to identities.
type tokenAuth map[string]Identity

func (a tokenAuth) Authenticate(_ context.Context, token string) (Identity, error) {
	if token == "broken" {
		return Identity{}, errors.New("TokenReview: connection refused")
	}
	id, ok := a[token]
	if !ok {
		return Identity{}, fmt.Errorf("%w: token not authenticated", ErrUnauthenticated)
	}
	return id, nil
}

type testServer struct {
	t       *testing.T
	src     *fakeSource
	h       *Handler
	srv     *httptest.Server
	metrics *Metrics
	events  *recordingNotifier
}

type recordingNotifier struct {
	mu  sync.Mutex
	got []string
}

func (n *recordingNotifier) Notify(who Identity, t Target, r Result) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.got = append(n.got, who.PodName+" "+t.String()+" "+string(r.State)+" "+r.Reason)
}
func (n *recordingNotifier) Forget(Identity, Target) {}

func newTestServer(t *testing.T, mod func(*HandlerOptions)) *testServer {
	t.Helper()
	m, err := NewMetrics(prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	ts := &testServer{t: t, src: &fakeSource{}, metrics: m, events: &recordingNotifier{}}
	o := HandlerOptions{
		Authenticator: tokenAuth{"app-token": {Namespace: "app", ServiceAccount: "default", PodName: "web", PodUID: "u1"}},
		Authorizer:    NamespaceAuthorizer{Namespaces: namespaces{"app": {}, "shared": {LabelShared: "true"}, "private": {}}},
		Source:        ts.src,
		Notifier:      ts.events,
		Metrics:       m,
		Log:           logr.Discard(),
	}
	if mod != nil {
		mod(&o)
	}
	if ts.h, err = NewHandler(o); err != nil {
		t.Fatal(err)
	}
	ts.srv = httptest.NewServer(ts.h)
	t.Cleanup(ts.srv.Close)
	return ts
}

type reply struct {
	code   int
	answer Answer
	err    string
	header http.Header
	close  bool // the server asked to close the connection
}

func (ts *testServer) get(token string, query url.Values) reply {
	ts.t.Helper()
	req, _ := http.NewRequest(http.MethodGet, ts.srv.URL+WaitPath+"?"+query.Encode(), nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		ts.t.Fatal(err)
	}
	defer resp.Body.Close()
	r := reply{code: resp.StatusCode, header: resp.Header, close: resp.Close}
	var body struct {
		Answer
		Error string `json:"error"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		ts.t.Fatalf("decode body: %v", err)
	}
	r.answer, r.err = body.Answer, body.Error
	return r
}

func q(kv ...string) url.Values {
	v := url.Values{}
	for i := 0; i+1 < len(kv); i += 2 {
		v.Add(kv[i], kv[i+1])
	}
	return v
}

func TestHandlerErrors(t *testing.T) {
	ts := newTestServer(t, nil)
	for _, tc := range []struct {
		name  string
		token string
		query url.Values
		code  int
		err   string
	}{
		{"no target", "app-token", q(), 400, "target is required"},
		{"bad target", "app-token", q("target", "pod:app/x"), 400, `unknown kind "pod"`},
		{"two targets", "app-token", q("target", "job:app/a", "target", "job:app/b"), 400, `"target" given 2 times`},
		{"unknown parameter", "app-token", q("target", "job:app/a", "namespace", "x"), 400, `unknown query parameter "namespace"`},
		{"bad wait", "app-token", q("target", "job:app/a", "wait", "soon"), 400, "wait="},
		{"negative wait", "app-token", q("target", "job:app/a", "wait", "-1s"), 400, "negative"},
		{"no token", "", q("target", "job:app/a"), 401, "unauthenticated"},
		{"forged token", "forged", q("target", "job:app/a"), 401, "not authenticated"},
		{"TokenReview down", "broken", q("target", "job:app/a"), 503, "cannot check the token"},
		{"other namespace", "app-token", q("target", "job:private/a"), 403,
			`namespace "private" does not share its objects with namespace "app": label it depends-on.dev/shared=true`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := ts.get(tc.token, tc.query)
			if r.code != tc.code || !strings.Contains(r.err, tc.err) {
				t.Errorf("got %d %q, want %d containing %q", r.code, r.err, tc.code, tc.err)
			}
		})
	}
	if got := counterValue(t, ts.metrics.Answers.WithLabelValues(ResultError)); got != 10 {
		t.Errorf("answers_total{result=error} = %v, want 10", got)
	}
	if ts.src.active != 0 {
		t.Errorf("%d subscriptions left", ts.src.active)
	}
}

func TestHandlerLongPoll(t *testing.T) {
	ts := newTestServer(t, nil)
	const target = "job:app/migrate"
	ts.src.set(target, Result{StateWaiting, "0/1 succeeded"})

	// No seen: the current state at once.
	r := ts.get("app-token", q("target", target))
	if r.code != 200 || r.answer != (Answer{Target: target, State: StateWaiting, Reason: "0/1 succeeded"}) {
		t.Fatalf("first ask: %+v", r)
	}
	// Seen the current reason: held until it changes.
	done := make(chan reply, 1)
	start := time.Now()
	go func() { done <- ts.get("app-token", q("target", target, "seen", "0/1 succeeded", "wait", "20s")) }()
	waitFor(t, func() bool { return ts.h.Inflight() == 1 })
	select {
	case r := <-done:
		t.Fatalf("answered while nothing changed: %+v", r)
	case <-time.After(100 * time.Millisecond):
	}
	ts.src.set(target, Result{StateReady, "1/1 succeeded"})
	r = <-done
	if r.answer.State != StateReady || r.answer.Reason != "1/1 succeeded" || time.Since(start) > 10*time.Second {
		t.Fatalf("after completion: %+v after %s", r, time.Since(start))
	}
	// Ready and failed answer at once whatever seen says.
	r = ts.get("app-token", q("target", target, "seen", "1/1 succeeded"))
	if r.answer.State != StateReady {
		t.Errorf("ready with seen=its reason: %+v", r)
	}
	// Wait elapses: the same waiting state.
	ts.src.set("deployment:shared/api", Result{StateWaiting, "1/3 available"})
	start = time.Now()
	r = ts.get("app-token", q("target", "deployment:shared/api", "seen", "1/3 available", "wait", "300ms"))
	if held := time.Since(start); r.answer.State != StateWaiting || held < 300*time.Millisecond {
		t.Errorf("wait elapsed: %+v after %s", r, held)
	}
	// A change that keeps the reason does not answer; one that changes it does.
	go func() {
		done <- ts.get("app-token", q("target", "deployment:shared/api", "seen", "1/3 available", "wait", "20s"))
	}()
	waitFor(t, func() bool { return ts.h.Inflight() == 1 })
	ts.src.set("deployment:shared/api", Result{StateWaiting, "1/3 available"})
	time.Sleep(50 * time.Millisecond)
	ts.src.set("deployment:shared/api", Result{StateWaiting, "2/3 available"})
	if r := <-done; r.answer.Reason != "2/3 available" {
		t.Errorf("reason change: %+v", r)
	}
	if got := counterValue(t, ts.metrics.Answers.WithLabelValues(ResultReady)); got != 2 {
		t.Errorf("answers_total{result=ready} = %v, want 2", got)
	}
	ts.events.mu.Lock()
	defer ts.events.mu.Unlock()
	if len(ts.events.got) == 0 || ts.events.got[0] != "web job:app/migrate waiting 0/1 succeeded" {
		t.Errorf("notifications: %q", ts.events.got)
	}
}

func TestHandlerDrain(t *testing.T) {
	ts := newTestServer(t, nil)
	ts.src.set("job:app/x", Result{StateWaiting, "0/1 succeeded"})
	done := make(chan reply, 1)
	go func() { done <- ts.get("app-token", q("target", "job:app/x", "seen", "0/1 succeeded", "wait", "30s")) }()
	waitFor(t, func() bool { return ts.h.Inflight() == 1 })
	ts.h.Drain()
	select {
	case r := <-done:
		if r.code != 200 || r.answer.State != StateWaiting || !r.close {
			t.Errorf("drained answer: %+v", r)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("held request not answered on Drain")
	}
	if r := ts.get("app-token", q("target", "job:app/x")); r.code != 503 || !r.close {
		t.Errorf("new request while draining: %+v", r)
	}
}

func TestHandlerLimits(t *testing.T) {
	ts := newTestServer(t, func(o *HandlerOptions) { o.MaxWaiters = 1; o.SyncTimeout = 200 * time.Millisecond })
	ts.src.set("job:app/x", Result{StateWaiting, "0/1 succeeded"})
	done := make(chan reply, 1)
	go func() { done <- ts.get("app-token", q("target", "job:app/x", "seen", "0/1 succeeded", "wait", "30s")) }()
	waitFor(t, func() bool { return ts.h.Inflight() == 1 })
	if r := ts.get("app-token", q("target", "job:app/y")); r.code != 503 || r.header.Get("Retry-After") == "" {
		t.Errorf("over max waiters: %+v", r)
	}
	ts.src.set("job:app/x", Result{StateReady, "1/1 succeeded"})
	<-done

	// A watch that never syncs: 503 after SyncTimeout.
	s := ts.src.state("job:app/never")
	s.synced = make(chan struct{})
	if r := ts.get("app-token", q("target", "job:app/never")); r.code != 503 || !strings.Contains(r.err, "not synced") {
		t.Errorf("unsynced: %+v", r)
	}
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

func counterValue(t *testing.T, c prometheus.Counter) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}
