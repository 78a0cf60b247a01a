package webhook

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	admissionv1 "k8s.io/api/admission/v1"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"
)

func reviewServer(t *testing.T, h admission.Handler, opts ReviewOptions) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(NewReviewHandler(h, opts))
	t.Cleanup(srv.Close)
	return srv
}

func send(t *testing.T, url, method, contentType, body string) (*admissionv1.AdmissionReview, int) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", contentType)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var out admissionv1.AdmissionReview
	if err := json.Unmarshal(raw, &out); err != nil || out.Response == nil {
		t.Fatalf("answer is not an AdmissionReview response: %s (%v)", raw, err)
	}
	return &out, resp.StatusCode
}

const reviewJSON = `{"apiVersion":"%s","kind":"AdmissionReview","request":{"uid":"u-1","kind":{"group":"","version":"v1","kind":"Pod"},
"resource":{"group":"","version":"v1","resource":"pods"},"namespace":"shop","operation":"CREATE",
"object":{"metadata":{"name":"p","annotations":{"depends-on.dev/services":"mydb:5432"}},"spec":{"containers":[{"name":"app","image":"app"}]}}}}`

func TestReviewHandler(t *testing.T) {
	rec := &countRecorder{}
	srv := reviewServer(t, NewHandler(testInjector(t), HandlerOptions{Recorder: rec}), ReviewOptions{Recorder: rec})

	for _, version := range []string{"admission.k8s.io/v1", "admission.k8s.io/v1beta1"} {
		out, code := send(t, srv.URL, http.MethodPost, "application/json; charset=utf-8", strings.Replace(reviewJSON, "%s", version, 1))
		r := out.Response
		if code != http.StatusOK || out.APIVersion != version || out.Kind != "AdmissionReview" || r.UID != "u-1" || !r.Allowed ||
			r.PatchType == nil || !strings.Contains(string(r.Patch), "tcp:mydb.shop.svc.cluster.local.:5432") {
			t.Errorf("%s: HTTP %d, review %+v, response %+v, patch %s", version, code, out.TypeMeta, r, r.Patch)
		}
	}
	if got := rec.get(Outcome{DecisionPatched, ReasonInjected}); got != 2 {
		t.Errorf("patched/injected recorded %d times, want 2", got)
	}

	bad := []struct {
		name, method, contentType, body string
		code                            int32
		uid                             string
		reason                          Reason
	}{
		{"GET", http.MethodGet, "application/json", "", http.StatusMethodNotAllowed, "", ReasonMethod},
		{"content type", http.MethodPost, "text/plain", "{}", http.StatusUnsupportedMediaType, "", ReasonContentType},
		{"not JSON", http.MethodPost, "application/json", "{", http.StatusBadRequest, "", ReasonMalformed},
		{"no request", http.MethodPost, "application/json", `{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}`, http.StatusBadRequest, "", ReasonMalformed},
		{"other apiVersion", http.MethodPost, "application/json", strings.Replace(reviewJSON, "%s", "v1", 1), http.StatusBadRequest, "u-1", ReasonMalformed},
		{"object not a Pod", http.MethodPost, "application/json", strings.Replace(strings.Replace(reviewJSON, "%s", "admission.k8s.io/v1", 1), `{"metadata"`, `{"spec":{"containers":"x"},"metadata"`, 1), http.StatusBadRequest, "u-1", ReasonMalformed},
		{"too large", http.MethodPost, "application/json", `{"x":"` + strings.Repeat("a", DefaultMaxRequestBytes) + `"}`, http.StatusRequestEntityTooLarge, "", ReasonOversize},
	}
	for _, b := range bad {
		before := rec.get(Outcome{DecisionErrored, b.reason})
		out, code := send(t, srv.URL, b.method, b.contentType, b.body)
		r := out.Response
		if code != http.StatusOK || r.Allowed || r.Result == nil || r.Result.Code != b.code || string(r.UID) != b.uid {
			t.Errorf("%s: HTTP %d, response %+v", b.name, code, r)
		}
		if got := rec.get(Outcome{DecisionErrored, b.reason}) - before; got != 1 {
			t.Errorf("%s: errored/%s recorded %d times, want 1", b.name, b.reason, got)
		}
	}
}

func TestReviewHandlerRecoversPanics(t *testing.T) {
	rec := &countRecorder{}
	srv := reviewServer(t, admission.HandlerFunc(func(context.Context, admission.Request) admission.Response {
		panic("boom")
	}), ReviewOptions{Recorder: rec})
	out, _ := send(t, srv.URL, http.MethodPost, "application/json", strings.Replace(reviewJSON, "%s", "admission.k8s.io/v1", 1))
	if r := out.Response; r.Allowed || r.Result == nil || r.Result.Code != http.StatusInternalServerError || r.UID != "u-1" || !strings.Contains(r.Result.Message, "boom") {
		t.Fatalf("response %+v", r)
	}
	if got := rec.get(Outcome{DecisionErrored, ReasonPanic}); got != 1 {
		t.Errorf("errored/panic recorded %d times, want 1", got)
	}
}
