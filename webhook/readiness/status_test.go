package readiness

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

type statusReply struct {
	code int
	body StatusAnswer
	err  string
}

func (ts *testServer) status(token string, query url.Values) statusReply {
	ts.t.Helper()
	req, _ := http.NewRequest(http.MethodGet, ts.srv.URL+StatusPath+"?"+query.Encode(), nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		ts.t.Fatal(err)
	}
	defer resp.Body.Close()
	var body struct {
		StatusAnswer
		Error string `json:"error"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		ts.t.Fatalf("decode body: %v", err)
	}
	return statusReply{code: resp.StatusCode, body: body.StatusAnswer, err: body.Error}
}

const webhookUser = "system:serviceaccount:depends-on-system:depends-on-webhook"

func statusServer(t *testing.T, mod func(*HandlerOptions)) *testServer {
	return newTestServer(t, func(o *HandlerOptions) {
		o.Authenticator = tokenAuth{
			"app-token":     {Namespace: "app", ServiceAccount: "default", PodName: "web", PodUID: "u1"},
			"webhook-token": {Namespace: "depends-on-system", ServiceAccount: "depends-on-webhook", PodName: "webhook-0", PodUID: "u2"},
		}
		o.StatusClients = []string{webhookUser}
		o.StatusSyncWait = 50 * time.Millisecond
		if mod != nil {
			mod(o)
		}
	})
}

func TestStatusAnswers(t *testing.T) {
	ts := statusServer(t, nil)
	ts.src.set("job:app/migrate", Result{StateReady, "1/1 succeeded"})
	ts.src.set("deployment:app/api", Result{StateWaiting, "0/2 available"})
	ts.src.set("job:shared/seed", Result{StateFailed, "BackoffLimitExceeded"})
	// A watch that never lists its target: unknown after StatusSyncWait.
	slow := ts.src.state("job:app/slow")
	slow.synced = make(chan struct{})

	start := time.Now()
	r := ts.status("webhook-token", q("namespace", "app",
		"target", "job:app/migrate", "target", "deployment:app/api", "target", "job:shared/seed",
		"target", "job:private/secret", "target", "job:app/slow"))
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("answer took %s: /v1/status must not hold requests", took)
	}
	if r.code != 200 {
		t.Fatalf("got %d %q", r.code, r.err)
	}
	want := []Answer{
		{"job:app/migrate", StateReady, "1/1 succeeded"},
		{"deployment:app/api", StateWaiting, "0/2 available"},
		{"job:shared/seed", StateFailed, "BackoffLimitExceeded"},
		{"job:private/secret", StateRefused, `namespace "private" does not share its objects with namespace "app": label it depends-on.dev/shared=true`},
		{"job:app/slow", StateUnknown, "watch not synced within 50ms"},
	}
	if r.body.Namespace != "app" || len(r.body.Answers) != len(want) {
		t.Fatalf("body %+v", r.body)
	}
	for i := range want {
		if r.body.Answers[i] != want[i] {
			t.Errorf("answer %d: got %+v, want %+v", i, r.body.Answers[i], want[i])
		}
	}
	if ts.src.active != 0 {
		t.Errorf("%d subscriptions left", ts.src.active)
	}
	if got := counterValue(t, ts.metrics.StatusAnswers.WithLabelValues(string(StateRefused))); got != 1 {
		t.Errorf("status_answers_total{state=refused} = %v, want 1", got)
	}
}

func TestStatusErrors(t *testing.T) {
	ts := statusServer(t, nil)
	many := q("namespace", "app")
	for i := 0; i <= MaxStatusTargets; i++ {
		many.Add("target", "job:app/j")
	}
	for _, tc := range []struct {
		name, token string
		query       url.Values
		code        int
		err         string
	}{
		{"a Pod's token", "app-token", q("namespace", "app", "target", "job:app/a"), 403,
			"system:serviceaccount:app:default may not use /v1/status"},
		{"no token", "", q("namespace", "app", "target", "job:app/a"), 401, "unauthenticated"},
		{"TokenReview down", "broken", q("namespace", "app", "target", "job:app/a"), 503, "cannot check the token"},
		{"no namespace", "webhook-token", q("target", "job:app/a"), 400, "namespace (of the Pod being admitted) is required"},
		{"bad namespace", "webhook-token", q("namespace", "App_1", "target", "job:app/a"), 400, `namespace "App_1"`},
		{"bad target", "webhook-token", q("namespace", "app", "target", "pod:app/a"), 400, `unknown kind "pod"`},
		{"too many targets", "webhook-token", many, 400, "more than 128"},
		{"unknown parameter", "webhook-token", q("namespace", "app", "target", "job:app/a", "wait", "1s"), 400, `unknown query parameter "wait"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := ts.status(tc.token, tc.query)
			if r.code != tc.code || !strings.Contains(r.err, tc.err) {
				t.Errorf("got %d %q, want %d containing %q", r.code, r.err, tc.code, tc.err)
			}
		})
	}
	// No target: a ping, answered for the allowed caller only.
	if r := ts.status("webhook-token", q("namespace", "app")); r.code != 200 || len(r.body.Answers) != 0 {
		t.Errorf("ping: %d %+v %q", r.code, r.body, r.err)
	}
	if r := ts.status("app-token", q("namespace", "app")); r.code != 403 {
		t.Errorf("ping with a Pod's token: %d", r.code)
	}
	// Nobody is allowed without --status-clients.
	closed := newTestServer(t, func(o *HandlerOptions) {
		o.Authenticator = tokenAuth{"webhook-token": {Namespace: "depends-on-system", ServiceAccount: "depends-on-webhook", PodName: "w", PodUID: "u"}}
	})
	if r := closed.status("webhook-token", q("namespace", "app", "target", "job:app/a")); r.code != 403 {
		t.Errorf("without StatusClients: got %d %q, want 403", r.code, r.err)
	}
	if ts.src.active != 0 {
		t.Errorf("%d subscriptions left", ts.src.active)
	}
}
