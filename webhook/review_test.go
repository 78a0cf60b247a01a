package webhook

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

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

// TestReviewHandlerClosesTricklingClients: a body that trickles in is cut off
// at ReadTimeout and the connection closed.
func TestReviewHandlerClosesTricklingClients(t *testing.T) {
	rec := &countRecorder{}
	srv := reviewServer(t, NewHandler(testInjector(t), HandlerOptions{}), ReviewOptions{Recorder: rec, ReadTimeout: 300 * time.Millisecond})
	conn, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	body := strings.Replace(reviewJSON, "%s", "admission.k8s.io/v1", 1)
	fmt.Fprintf(conn, "POST /mutate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n", len(body))
	closed := make(chan struct{})
	go func() {
		_, _ = io.ReadAll(conn) // the answer, then EOF when the server closes
		close(closed)
	}()
	start := time.Now()
	for i := 0; i < len(body); i++ {
		if _, err := conn.Write([]byte{body[i]}); err != nil {
			break // closed by the server
		}
		select {
		case <-closed:
			i = len(body)
		case <-time.After(100 * time.Millisecond):
		}
		if time.Since(start) > 10*time.Second {
			t.Fatal("connection still open after 10s of trickling")
		}
	}
	select {
	case <-closed:
	case <-time.After(5 * time.Second):
		t.Fatal("connection not closed")
	}
	if got := time.Since(start); got > 3*time.Second {
		t.Errorf("closed after %s, ReadTimeout is 300ms", got)
	}
	if got := rec.get(Outcome{DecisionErrored, ReasonRead}); got != 1 {
		t.Errorf("errored/read recorded %d times, want 1", got)
	}
}

// TestReviewHandlerRefusesOversizeUnread: a body announced larger than the
// limit is refused before it is read (it is never sent here).
func TestReviewHandlerRefusesOversizeUnread(t *testing.T) {
	rec := &countRecorder{}
	srv := reviewServer(t, NewHandler(testInjector(t), HandlerOptions{}), ReviewOptions{Recorder: rec})
	conn, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "POST /mutate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n{", 10<<20)
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("no answer while the body is unsent: %v", err)
	}
	defer resp.Body.Close()
	var out admissionv1.AdmissionReview
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || out.Response == nil || out.Response.Result.Code != http.StatusRequestEntityTooLarge {
		t.Fatalf("answer %+v, %v", out.Response, err)
	}
	if got := rec.get(Outcome{DecisionErrored, ReasonOversize}); got != 1 {
		t.Errorf("errored/oversize recorded %d times, want 1", got)
	}
}

// TestReviewHandlerBoundsBytesInFlight: while one request holds all of
// MaxInFlightBytes, another waits AdmitWait and is refused with 429 and
// Retry-After (which the API server's client retries).
func TestReviewHandlerBoundsBytesInFlight(t *testing.T) {
	rec := &countRecorder{}
	srv := reviewServer(t, NewHandler(testInjector(t), HandlerOptions{Recorder: rec}), ReviewOptions{
		Recorder: rec, MaxRequestBytes: 4096, MaxInFlightBytes: 4096, AdmitWait: 200 * time.Millisecond, ReadTimeout: 3 * time.Second,
	})
	// A request that announces the whole budget and sends nothing holds it.
	conn, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "POST /mutate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 4096\r\n\r\n")
	time.Sleep(200 * time.Millisecond)

	body := strings.Replace(reviewJSON, "%s", "admission.k8s.io/v1", 1)
	start := time.Now()
	resp, err := http.Post(srv.URL, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") != "1" {
		t.Errorf("HTTP %d, Retry-After %q; want 429 and 1", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("refused after %s, AdmitWait is 200ms", d)
	}
	if got := rec.get(Outcome{DecisionErrored, ReasonBusy}); got != 1 {
		t.Errorf("errored/busy recorded %d times, want 1", got)
	}
	// Once the holder is gone, requests are served again.
	conn.Close()
	deadline := time.Now().Add(5 * time.Second)
	for {
		out, code := send(t, srv.URL, http.MethodPost, "application/json", body)
		if code == http.StatusOK && out.Response.Allowed {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("still refused: HTTP %d", code)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestReviewHandlerHonoursTimeout: a request whose deadline (the API
// server's ?timeout=) has passed is not handled.
func TestReviewHandlerHonoursTimeout(t *testing.T) {
	rec := &countRecorder{}
	called := 0
	srv := reviewServer(t, admission.HandlerFunc(func(context.Context, admission.Request) admission.Response {
		called++
		return admission.Allowed("")
	}), ReviewOptions{Recorder: rec})
	out, _ := send(t, srv.URL+"?timeout=1ns", http.MethodPost, "application/json", strings.Replace(reviewJSON, "%s", "admission.k8s.io/v1", 1))
	if out.Response.Allowed || called != 0 {
		t.Errorf("handled after the deadline: %+v, handler called %d times", out.Response, called)
	}
	if got := rec.get(Outcome{DecisionErrored, ReasonCanceled}); got != 1 {
		t.Errorf("errored/canceled recorded %d times, want 1", got)
	}
}

// TestHandlerStopsWhenCanceled: the Handler does not patch for a caller
// that gave up.
func TestHandlerStopsWhenCanceled(t *testing.T) {
	rec := &countRecorder{}
	h := NewHandler(testInjector(t), HandlerOptions{Recorder: rec})
	var ar admissionv1.AdmissionReview
	if err := json.Unmarshal([]byte(strings.Replace(reviewJSON, "%s", "admission.k8s.io/v1", 1)), &ar); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	resp := h.Handle(ctx, admission.Request{AdmissionRequest: *ar.Request})
	if resp.Allowed || len(resp.Patch) != 0 || rec.get(Outcome{DecisionErrored, ReasonCanceled}) != 1 {
		t.Errorf("response %+v, recorded %v", resp, rec.outcomes)
	}
}
