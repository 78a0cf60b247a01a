package webhook

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	goruntime "runtime"
	"slices"
	"sort"
	"sync"
	"syscall"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"
)

// Benchmarks on a Pod as the API server sends it to a mutating webhook
// (testdata/bench-pod.json: created by a ReplicaSet, defaults and the
// ServiceAccount volume applied, managedFields, three containers, three
// dependencies). Run with `make bench`. There are no timing assertions here:
// BenchmarkHandlerVsFloor reports the ratio as a metric.

const benchNamespace = "shop"

// benchPodJSON returns the fixture, compacted as the API server encodes it;
// annotated=false drops the depends-on.dev/ annotations (a Pod the webhook
// sees but has nothing to do for).
func benchPodJSON(b testing.TB, annotated bool) []byte {
	b.Helper()
	src, err := os.ReadFile("testdata/bench-pod.json")
	if err != nil {
		b.Fatal(err)
	}
	if !annotated {
		var doc map[string]any
		if err := json.Unmarshal(src, &doc); err != nil {
			b.Fatal(err)
		}
		ann := doc["metadata"].(map[string]any)["annotations"].(map[string]any)
		for k := range ann {
			if len(k) > len(Prefix) && k[:len(Prefix)] == Prefix {
				delete(ann, k)
			}
		}
		if src, err = json.Marshal(doc); err != nil {
			b.Fatal(err)
		}
	}
	var buf bytes.Buffer
	if err := json.Compact(&buf, src); err != nil {
		b.Fatal(err)
	}
	return buf.Bytes()
}

// benchReview wraps a Pod in the AdmissionReview the API server posts for its
// creation by the ReplicaSet controller.
func benchReview(b testing.TB, pod []byte) []byte {
	b.Helper()
	podGVR := metav1.GroupVersionResource{Version: "v1", Resource: "pods"}
	ar := admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
		Request: &admissionv1.AdmissionRequest{
			UID:             "0b8e3c43-8f55-4c8e-a0f4-3f7d2b1c9e6a",
			Kind:            podKind,
			Resource:        podGVR,
			RequestKind:     &podKind,
			RequestResource: &podGVR,
			Namespace:       benchNamespace,
			Operation:       admissionv1.Create,
			UserInfo: authenticationv1.UserInfo{
				Username: "system:serviceaccount:kube-system:replicaset-controller",
				UID:      "8d1f0e2c-7a4b-4f6e-9c3d-2b1a0f9e8d7c",
				Groups:   []string{"system:serviceaccounts", "system:serviceaccounts:kube-system", "system:authenticated"},
			},
			Object:  runtime.RawExtension{Raw: pod},
			DryRun:  new(false),
			Options: runtime.RawExtension{Raw: []byte(`{"kind":"CreateOptions","apiVersion":"meta.k8s.io/v1"}`)},
		},
	}
	raw, err := json.Marshal(ar)
	if err != nil {
		b.Fatal(err)
	}
	return raw
}

func benchPod(b testing.TB) *Pod {
	b.Helper()
	return PodFrom(decodePod(b, benchPodJSON(b, true)))
}

func BenchmarkParse(b *testing.B) {
	pod := benchPod(b)
	opts := ParseOptions{Namespace: benchNamespace, ClusterDomain: "cluster.local"}
	b.ReportAllocs()
	for b.Loop() {
		spec, errs := Parse(pod.Annotations, opts)
		if len(errs) > 0 || len(spec.Waits) != 3 {
			b.Fatalf("Parse = %+v, %v", spec, errs)
		}
	}
}

func BenchmarkDecodePod(b *testing.B) {
	raw := benchPodJSON(b, true)
	b.ReportAllocs()
	b.SetBytes(int64(len(raw)))
	for b.Loop() {
		var pod corev1.Pod
		if err := json.Unmarshal(raw, &pod); err != nil {
			b.Fatal(err)
		}
	}
}

// narrowPod is the shape of Pod for encoding/json: what a plain decode into
// the narrow type costs (compare BenchmarkReadPod).
type narrowPod struct {
	Metadata struct {
		Name, GenerateName, Namespace string
		Annotations                   map[string]string
	}
	Spec struct {
		InitContainers []corev1.Container
		Containers     []struct {
			Name         string
			VolumeMounts []corev1.VolumeMount
		}
		Volumes []struct{ Name string }
		OS      *corev1.PodOS
	}
}

func BenchmarkDecodeNarrow(b *testing.B) {
	raw := benchPodJSON(b, true)
	b.ReportAllocs()
	b.SetBytes(int64(len(raw)))
	for b.Loop() {
		var pod narrowPod
		if err := json.Unmarshal(raw, &pod); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkInject(b *testing.B) {
	in, pod := testInjector(b), benchPod(b)
	b.ReportAllocs()
	for b.Loop() {
		out, err := in.Inject(pod, benchNamespace)
		if err != nil || len(out.Spec.InitContainers) != 1 {
			b.Fatalf("Inject: %v", err)
		}
	}
}

func BenchmarkPatch(b *testing.B) {
	in, pod := testInjector(b), benchPod(b)
	b.ReportAllocs()
	for b.Loop() {
		ops, err := in.Patch(pod, benchNamespace)
		if err != nil || len(ops) != 2 {
			b.Fatalf("Patch = %d ops, %v", len(ops), err)
		}
	}
}

// floorHandler decodes nothing and changes nothing: the cost of the
// ReviewHandler path itself (read the body, decode the AdmissionReview,
// encode the answer).
var floorHandler = admission.HandlerFunc(func(context.Context, admission.Request) admission.Response {
	return admission.Allowed("")
})

var serverLogger sync.Once

// useServerLogger logs as cmd/webhook does by default (zap, JSON, info level),
// into io.Discard. Without a logger, controller-runtime's delegating logger
// keeps every per-request logger it hands out until one is set: the heap
// grows all along the benchmark, and so does the GC's work.
func useServerLogger() {
	serverLogger.Do(func() { logf.SetLogger(zap.New(zap.WriteTo(io.Discard))) })
}

// serveOnce posts body to wh, as the server does after TLS.
func serveOnce(b testing.TB, wh http.Handler, body []byte) *httptest.ResponseRecorder {
	req, err := http.NewRequest(http.MethodPost, "/mutate", bytes.NewReader(body))
	if err != nil {
		b.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	rec := httptest.NewRecorder()
	wh.ServeHTTP(rec, req)
	return rec
}

// checkResponse asserts the answer is allowed, with a patch or without.
func checkResponse(b testing.TB, rec *httptest.ResponseRecorder, wantPatch bool) {
	b.Helper()
	var ar admissionv1.AdmissionReview
	if err := json.Unmarshal(rec.Body.Bytes(), &ar); err != nil || ar.Response == nil || !ar.Response.Allowed {
		b.Fatalf("response %s: %v", rec.Body.Bytes(), err)
	}
	if got := len(ar.Response.Patch) > 0; got != wantPatch {
		b.Fatalf("patch present = %v, want %v: %s", got, wantPatch, rec.Body.Bytes())
	}
}

// serving wraps h as the server serves it.
func serving(h admission.Handler) http.Handler {
	return NewReviewHandler(h, ReviewOptions{Logger: logf.Log.WithName("admission")})
}

func serveBench(b *testing.B, h admission.Handler, body []byte, wantPatch bool) {
	useServerLogger()
	wh := serving(h)
	checkResponse(b, serveOnce(b, wh, body), wantPatch)
	b.ReportAllocs()
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		serveOnce(b, wh, body)
	}
}

func BenchmarkHandler(b *testing.B) {
	h := NewHandler(testInjector(b), HandlerOptions{})
	b.Run("annotated", func(b *testing.B) { serveBench(b, h, benchReview(b, benchPodJSON(b, true)), true) })
	b.Run("unannotated", func(b *testing.B) { serveBench(b, h, benchReview(b, benchPodJSON(b, false)), false) })
}

func BenchmarkFloor(b *testing.B) {
	b.Run("annotated", func(b *testing.B) { serveBench(b, floorHandler, benchReview(b, benchPodJSON(b, true)), false) })
	b.Run("unannotated", func(b *testing.B) { serveBench(b, floorHandler, benchReview(b, benchPodJSON(b, false)), false) })
}

// cost is what a chunk of operations took: wall time and the process's CPU
// time (user+system, from getrusage), per operation.
type cost struct{ wall, cpu float64 }

func cpuNow() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		panic(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// timeOps runs f n times after a GC (so that no chunk pays for the garbage of
// the one before) and returns the cost per operation and allocations per op.
func timeOps(n int, f func()) (c cost, allocsPerOp float64) {
	var before, after goruntime.MemStats
	goruntime.GC()
	goruntime.ReadMemStats(&before)
	start, cpu := time.Now(), cpuNow()
	for range n {
		f()
	}
	c.cpu = float64((cpuNow() - cpu).Nanoseconds()) / float64(n)
	c.wall = float64(time.Since(start).Nanoseconds()) / float64(n)
	goruntime.ReadMemStats(&after)
	return c, float64(after.Mallocs-before.Mallocs) / float64(n)
}

// BenchmarkHandlerVsFloor measures the full handler and the decode-and-allow
// floor on the same AdmissionReview in the same process, in alternating chunks
// (handler then floor, then floor then handler, ...) so that a change in the
// machine's load hits both, and reports handler/floor: the median over the
// pairs of the ratio of the process's CPU time (robust to a loaded machine:
// time spent waiting for a CPU is not counted, and a burst of load spoils only
// a few pairs). It also logs "handler/floor = 1.21x" with the quartiles and
// the ratios of the totals (CPU and wall). Its work does not depend on b.N: run it with
// the default -benchtime. (testing.Benchmark cannot be nested in a benchmark:
// it would deadlock on the benchmark lock, hence the hand-made loop.)
func BenchmarkHandlerVsFloor(b *testing.B) {
	const (
		pairs    = 30
		perChunk = 60 * time.Millisecond
	)
	useServerLogger()
	h := NewHandler(testInjector(b), HandlerOptions{})
	for _, c := range []struct {
		name      string
		annotated bool
	}{{"annotated", true}, {"unannotated", false}} {
		b.Run(c.name, func(b *testing.B) {
			body := benchReview(b, benchPodJSON(b, c.annotated))
			hw, fw := serving(h), serving(floorHandler)
			checkResponse(b, serveOnce(b, hw, body), c.annotated)
			checkResponse(b, serveOnce(b, fw, body), false)
			handler := func() { serveOnce(b, hw, body) }
			floor := func() { serveOnce(b, fw, body) }
			// Size the chunks from a short calibration of the slower one.
			warm, _ := timeOps(100, handler)
			n := max(20, int(float64(perChunk.Nanoseconds())/warm.wall))
			var hTotal, fTotal cost
			var pairRatios []float64
			var hAllocs, fAllocs float64
			for i := range pairs {
				var hc, fc cost
				if i%2 == 0 {
					hc, hAllocs = timeOps(n, handler)
					fc, fAllocs = timeOps(n, floor)
				} else {
					fc, fAllocs = timeOps(n, floor)
					hc, hAllocs = timeOps(n, handler)
				}
				hTotal.wall, hTotal.cpu = hTotal.wall+hc.wall, hTotal.cpu+hc.cpu
				fTotal.wall, fTotal.cpu = fTotal.wall+fc.wall, fTotal.cpu+fc.cpu
				pairRatios = append(pairRatios, hc.cpu/fc.cpu)
			}
			hCPU, fCPU := hTotal.cpu/pairs, fTotal.cpu/pairs
			ratio := median(pairRatios)
			b.ReportMetric(hCPU, "handler-cpu-ns/op")
			b.ReportMetric(fCPU, "floor-cpu-ns/op")
			b.ReportMetric(ratio, "handler/floor")
			b.ReportMetric(hTotal.wall/fTotal.wall, "handler/floor-wall")
			b.Logf("%s: handler %.1f µs CPU/op (%.0f allocs/op), floor %.1f µs CPU/op (%.0f allocs/op): handler/floor = %.2fx (median of %d alternating pairs of %d ops, by CPU time; quartiles %.2f-%.2fx; ratio of totals %.2fx CPU, %.2fx wall)",
				c.name, hCPU/1e3, hAllocs, fCPU/1e3, fAllocs, ratio, pairs, n,
				quantile(pairRatios, 0.25), quantile(pairRatios, 0.75), hCPU/fCPU, hTotal.wall/fTotal.wall)
			for b.Loop() {
			}
		})
	}
}

// quantile returns the q-quantile of xs (nearest rank).
func quantile(xs []float64, q float64) float64 {
	s := slices.Sorted(slices.Values(xs))
	return s[min(len(s)-1, int(q*float64(len(s))))]
}

func median(xs []float64) float64 {
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	if n := len(s); n%2 == 1 {
		return s[n/2]
	} else {
		return (s[n/2-1] + s[n/2]) / 2
	}
}

// BenchmarkReadPod is the handler's partial decode (compare BenchmarkDecodePod
// and BenchmarkDecodeNarrow).
func BenchmarkReadPod(b *testing.B) {
	raw := benchPodJSON(b, true)
	b.ReportAllocs()
	b.SetBytes(int64(len(raw)))
	for b.Loop() {
		if _, ok := readPodFast(raw); !ok {
			b.Fatal("fast path refused the Pod")
		}
	}
}

// BenchmarkHandlerParts logs what the handler's own steps cost next to the
// floor, measured like BenchmarkHandlerVsFloor (alternating chunks, process
// CPU time, medians): where the handler's time beyond the floor goes.
func BenchmarkHandlerParts(b *testing.B) {
	useServerLogger()
	in := testInjector(b)
	h := NewHandler(in, HandlerOptions{})
	body := benchReview(b, benchPodJSON(b, true))
	raw := benchPodJSON(b, true)
	hw, fw := serving(h), serving(floorHandler)
	pod, ok := readPodFast(raw)
	if !ok {
		b.Fatal("fast path refused the Pod")
	}
	ops, err := in.Patch(pod, benchNamespace)
	if err != nil {
		b.Fatal(err)
	}
	var ar admissionv1.AdmissionReview
	if err := json.Unmarshal(body, &ar); err != nil {
		b.Fatal(err)
	}
	req := admission.Request{AdmissionRequest: *ar.Request}
	ctx := context.Background()
	parts := []struct {
		name string
		f    func()
	}{
		{"floor: ServeHTTP, handler allows", func() { serveOnce(b, fw, body) }},
		{"handler: ServeHTTP", func() { serveOnce(b, hw, body) }},
		{"Handler.Handle", func() { h.Handle(ctx, req) }},
		{"  ReadPod", func() { readPodFast(raw) }},
		{"  Injector.Patch", func() { _, _ = in.Patch(pod, benchNamespace) }},
		{"    Parse", func() { Parse(pod.Annotations, parseOpts) }},
		{"  encodePatch", func() { _, _ = encodePatch(ops) }},
	}
	res := make([][]float64, len(parts))
	for range 15 {
		for i, p := range parts {
			c, _ := timeOps(100, p.f)
			res[i] = append(res[i], c.cpu)
		}
	}
	floor := median(res[0])
	for i, p := range parts {
		b.Logf("%-34s %7.1f µs CPU  %.3f of the floor", p.name, median(res[i])/1e3, median(res[i])/floor)
	}
	for b.Loop() {
	}
}
