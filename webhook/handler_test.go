package webhook

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"

	jsonpatch "gomodules.xyz/jsonpatch/v2"
	admissionv1 "k8s.io/api/admission/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/yaml"
)

func mustJSON(t testing.TB, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// countRecorder counts outcomes, and decisions (n).
type countRecorder struct {
	mu       sync.Mutex
	n        map[Decision]int
	outcomes map[Outcome]int
}

func (c *countRecorder) Record(o Outcome) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.n == nil {
		c.n, c.outcomes = map[Decision]int{}, map[Outcome]int{}
	}
	c.n[o.Decision]++
	c.outcomes[o]++
}

func (c *countRecorder) get(o Outcome) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.outcomes[o]
}

func newTestServer(t *testing.T) (*httptest.Server, *countRecorder) {
	t.Helper()
	rec := &countRecorder{}
	h := NewHandler(testInjector(t), HandlerOptions{Recorder: rec})
	srv := httptest.NewServer(NewReviewHandler(h, ReviewOptions{Recorder: rec}))
	t.Cleanup(srv.Close)
	return srv, rec
}

// review builds the AdmissionReview JSON the API server sends.
func review(t testing.TB, op admissionv1.Operation, kind metav1.GroupVersionKind, namespace string, object string) []byte {
	t.Helper()
	ar := admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
		Request: &admissionv1.AdmissionRequest{
			UID:       "3f1c0d51-6f3c-4d0e-9b1e-1f6a0c1d2e3f",
			Kind:      kind,
			Resource:  metav1.GroupVersionResource{Version: "v1", Resource: "pods"},
			Namespace: namespace,
			Operation: op,
			Object:    runtime.RawExtension{Raw: []byte(object)},
		},
	}
	return []byte(mustJSON(t, ar))
}

func post(t *testing.T, url string, body []byte) *admissionv1.AdmissionResponse {
	t.Helper()
	resp, err := http.Post(url, "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("HTTP %d: %s", resp.StatusCode, raw)
	}
	var ar admissionv1.AdmissionReview
	if err := json.Unmarshal(raw, &ar); err != nil {
		t.Fatalf("decode response %s: %v", raw, err)
	}
	if ar.Response == nil {
		t.Fatalf("no response in %s", raw)
	}
	return ar.Response
}

const myappPod = `{"apiVersion":"v1","kind":"Pod","metadata":{"generateName":"myapp-","annotations":{"depends-on.dev/services":"myservice, mydb:5432"}},
"spec":{"containers":[{"name":"myapp-container","image":"busybox:1.28","command":["sh","-c","echo The app is running! && sleep 3600"]}]}}`

func TestHandlerPatches(t *testing.T) {
	srv, rec := newTestServer(t)
	resp := post(t, srv.URL, review(t, admissionv1.Create, podKind, "shop", myappPod))
	if !resp.Allowed || resp.PatchType == nil || *resp.PatchType != admissionv1.PatchTypeJSONPatch {
		t.Fatalf("response = %+v", resp)
	}
	if resp.UID != "3f1c0d51-6f3c-4d0e-9b1e-1f6a0c1d2e3f" {
		t.Errorf("UID not echoed: %q", resp.UID)
	}
	var ops []jsonpatch.Operation
	if err := json.Unmarshal(resp.Patch, &ops); err != nil {
		t.Fatal(err)
	}
	out := decodePod(t, applyPatch(t, []byte(myappPod), ops))
	if len(out.Spec.InitContainers) != 1 {
		t.Fatalf("init containers = %+v", out.Spec.InitContainers)
	}
	got := strings.Join(out.Spec.InitContainers[0].Args, " ")
	want := "dns:myservice.shop.svc.cluster.local. tcp:mydb.shop.svc.cluster.local.:5432"
	if got != want {
		t.Errorf("args = %q, want %q (namespace from the request)", got, want)
	}
	if rec.n[DecisionPatched] != 1 {
		t.Errorf("recorded %v", rec.n)
	}
}

func TestHandlerDenies(t *testing.T) {
	srv, rec := newTestServer(t)
	obj := `{"metadata":{"name":"p","annotations":{"depends-on.dev/services":"mydb:99999","depends-on.dev/sevrices":"x"}},"spec":{"containers":[{"name":"a","image":"a"}]}}`
	resp := post(t, srv.URL, review(t, admissionv1.Create, podKind, "shop", obj))
	if resp.Allowed || resp.Result == nil || resp.Result.Code != http.StatusUnprocessableEntity {
		t.Fatalf("response = %+v", resp)
	}
	for _, s := range []string{"2 problems", `depends-on.dev/sevrices`, "did you mean depends-on.dev/services?", `metadata.annotations[depends-on.dev/services]`, `"mydb:99999"`} {
		if !strings.Contains(resp.Result.Message, s) {
			t.Errorf("message %q does not contain %q", resp.Result.Message, s)
		}
	}
	if rec.n[DecisionDenied] != 1 {
		t.Errorf("recorded %v", rec.n)
	}
}

func TestHandlerAllowsWithoutPatch(t *testing.T) {
	srv, rec := newTestServer(t)
	unannotated := `{"metadata":{"name":"p","annotations":{"team":"a"}},"spec":{"containers":[{"name":"a","image":"a"}]}}`
	cases := map[string][]byte{
		"no annotation": review(t, admissionv1.Create, podKind, "shop", unannotated),
		"update":        review(t, admissionv1.Update, podKind, "shop", myappPod),
		"not a pod":     review(t, admissionv1.Create, metav1.GroupVersionKind{Group: "apps", Version: "v1", Kind: "Deployment"}, "shop", `{}`),
	}
	for name, body := range cases {
		t.Run(name, func(t *testing.T) {
			resp := post(t, srv.URL, body)
			if !resp.Allowed || len(resp.Patch) != 0 {
				t.Fatalf("response = %+v", resp)
			}
		})
	}
	if rec.n[DecisionAllowed] != len(cases) {
		t.Errorf("recorded %v", rec.n)
	}
}

func TestHandlerBadObject(t *testing.T) {
	srv, rec := newTestServer(t)
	for _, obj := range []string{`"a string"`, `[]`, `{"spec":{"containers":"x"}}`} {
		resp := post(t, srv.URL, review(t, admissionv1.Create, podKind, "shop", obj))
		if resp.Allowed || resp.Result == nil || resp.Result.Code != http.StatusBadRequest {
			t.Errorf("%s: response = %+v", obj, resp)
		}
	}
	if rec.n[DecisionErrored] != 3 {
		t.Errorf("recorded %v", rec.n)
	}
}

// The warnings come with the no-patch answer too: the reinvocation after a
// mesh's injection is when its shape is visible (issue 11).
func TestHandlerWarnsWithoutPatch(t *testing.T) {
	srv, rec := newTestServer(t)
	injected, err := os.ReadFile("testdata/istio-cni-classic.injected.yaml")
	if err != nil {
		t.Fatal(err)
	}
	doc, err := yaml.YAMLToJSON(injected)
	if err != nil {
		t.Fatal(err)
	}
	want, err := os.ReadFile("testdata/istio-cni-classic.warnings")
	if err != nil {
		t.Fatal(err)
	}
	resp := post(t, srv.URL, review(t, admissionv1.Create, podKind, "shop", string(doc)))
	if !resp.Allowed || len(resp.Patch) != 0 || strings.Join(resp.Warnings, "\n")+"\n" != string(want) {
		t.Fatalf("response = %+v, want allowed, no patch, the warnings of testdata/istio-cni-classic.warnings", resp)
	}
	if rec.n[DecisionAllowed] != 1 {
		t.Errorf("recorded %v", rec.n)
	}
}
