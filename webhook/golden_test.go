package webhook

import (
	"encoding/json"
	"flag"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	jsonpatchapply "github.com/evanphx/json-patch/v5"
	jsonpatch "gomodules.xyz/jsonpatch/v2"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	"sigs.k8s.io/yaml"

	"github.com/depends-on/depends-on/test/testutil"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// requestNamespace is the admission request's namespace for golden Pods that set none.
const requestNamespace = "default"

// goldenConfig is DefaultConfig with the readiness service installed.
func goldenConfig() Config {
	cfg := DefaultConfig()
	cfg.ReadinessURL = testutil.GoldenReadinessURL
	cfg.ReadinessCA = testutil.GoldenReadinessCA
	return cfg
}

func testInjector(t testing.TB) *Injector {
	t.Helper()
	in, err := NewInjector(goldenConfig())
	if err != nil {
		t.Fatal(err)
	}
	return in
}

// applyPatch applies ops to the JSON document doc, as the API server does.
func applyPatch(t testing.TB, doc []byte, ops []jsonpatch.Operation) []byte {
	t.Helper()
	raw, err := json.Marshal(ops)
	if err != nil {
		t.Fatalf("marshal patch: %v", err)
	}
	p, err := jsonpatchapply.DecodePatch(raw)
	if err != nil {
		t.Fatalf("decode patch %s: %v", raw, err)
	}
	out, err := p.Apply(doc)
	if err != nil {
		t.Fatalf("apply patch %s: %v", raw, err)
	}
	return out
}

func decodePod(t testing.TB, doc []byte) *corev1.Pod {
	t.Helper()
	var pod corev1.Pod
	if err := json.Unmarshal(doc, &pod); err != nil {
		t.Fatalf("decode pod: %v", err)
	}
	return &pod
}

func namespaceOf(pod *corev1.Pod) string {
	if pod.Namespace != "" {
		return pod.Namespace
	}
	return requestNamespace
}

// goldenDoc is one YAML file of testdata/, as JSON.
type goldenDoc struct {
	path string // testdata/x.yaml or testdata/x.injected.yaml
	doc  []byte
}

// goldenDocs loads every testdata/*.yaml (inputs and goldens) as JSON: the
// one loader of the golden tests, the fuzz seeds and the ReadPod seeds.
func goldenDocs(t testing.TB) []goldenDoc {
	t.Helper()
	paths, err := filepath.Glob("testdata/*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var out []goldenDoc
	for _, p := range paths {
		src, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		doc, err := yaml.YAMLToJSON(src)
		if err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		out = append(out, goldenDoc{path: p, doc: doc})
	}
	return out
}

// TestGolden injects every testdata/x.yaml and compares the patched Pod with
// testdata/x.injected.yaml; -update rewrites the goldens. Each input also goes
// through the HTTP handler (an AdmissionReview in, the patch out) and must
// give the same Pod; each output is injected again and must come back
// unchanged with an empty patch. A golden without its input fails.
func TestGolden(t *testing.T) {
	in := testInjector(t)
	srv := httptest.NewServer(NewReviewHandler(NewHandler(in, HandlerOptions{}), ReviewOptions{}))
	t.Cleanup(srv.Close)
	docs := goldenDocs(t)
	inputs := map[string]bool{}
	for _, g := range docs {
		if !strings.HasSuffix(g.path, ".injected.yaml") {
			inputs[strings.TrimSuffix(g.path, ".yaml")] = true
		}
	}
	seen := 0
	warnings, err := filepath.Glob("testdata/*.warnings")
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range warnings {
		if base := strings.TrimSuffix(w, ".warnings"); !inputs[base] {
			t.Errorf("%s has no input %s.yaml: remove it, or restore the input", w, base)
		}
	}
	for _, g := range docs {
		if base, ok := strings.CutSuffix(g.path, ".injected.yaml"); ok {
			if !inputs[base] {
				t.Errorf("%s has no input %s.yaml: remove it, or restore the input", g.path, base)
			}
			continue
		}
		seen++
		input, doc := g.path, g.doc
		name := strings.TrimSuffix(filepath.Base(input), ".yaml")
		t.Run(name, func(t *testing.T) {
			full := decodePod(t, doc)
			pod := PodFrom(full)
			m, err := in.Mutate(pod, namespaceOf(full))
			if err != nil {
				t.Fatalf("Mutate: %v", err)
			}
			ops := m.Ops
			checkWarningsGolden(t, name, m.Warnings)
			if len(ops) == 0 {
				t.Fatalf("no patch for %s", input)
			}
			checkOpsOnlyTouchOurs(t, full, ops)
			patched := applyPatch(t, doc, ops)
			got, err := yaml.JSONToYAML(patched)
			if err != nil {
				t.Fatal(err)
			}
			golden := filepath.Join("testdata", name+".injected.yaml")
			if *update {
				if err := os.WriteFile(golden, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test ./webhook -run TestGolden -update)", err)
			}
			if string(got) != string(want) {
				t.Errorf("%s is stale (run go test ./webhook -run TestGolden -update); got:\n%s", golden, got)
			}

			// The production path: the same Pod out of the HTTP handler.
			resp := post(t, srv.URL, review(t, admissionv1.Create, podKind, namespaceOf(full), string(doc)))
			if !resp.Allowed || resp.PatchType == nil {
				t.Fatalf("handler: %+v", resp)
			}
			if !slices.Equal(resp.Warnings, m.Warnings) {
				t.Errorf("handler warnings %q, want %q", resp.Warnings, m.Warnings)
			}
			var served []jsonpatch.Operation
			if err := json.Unmarshal(resp.Patch, &served); err != nil {
				t.Fatal(err)
			}
			viaHTTP, err := yaml.JSONToYAML(applyPatch(t, doc, served))
			if err != nil {
				t.Fatal(err)
			}
			if string(viaHTTP) != string(want) {
				t.Errorf("through the handler, %s is not %s; got:\n%s", input, golden, viaHTTP)
			}

			// Inject must describe the same Pod the patch produces.
			outFull := decodePod(t, patched)
			out := PodFrom(outFull)
			injected, err := in.Inject(pod, namespaceOf(full))
			if err != nil {
				t.Fatalf("Inject: %v", err)
			}
			if !apiequality.Semantic.DeepEqual(injected, out) {
				t.Errorf("Inject and Patch disagree:\nInject: %+v\nPatch:  %+v", injected.Spec, out.Spec)
			}

			// Idempotency: the output needs no further patch.
			// Idempotency: the output needs no further patch, and gets the same
			// warnings (a reinvocation is when a mesh injected after us shows).
			again, err := in.Mutate(out, namespaceOf(outFull))
			if err != nil {
				t.Fatalf("Mutate of output: %v", err)
			}
			if len(again.Ops) != 0 {
				raw, _ := json.Marshal(again.Ops)
				t.Errorf("output is not a fixed point; second patch: %s", raw)
			}
			if !slices.Equal(again.Warnings, m.Warnings) {
				t.Errorf("warnings on the output %q, want those of the input %q", again.Warnings, m.Warnings)
			}
		})
	}
	if seen < 5 {
		t.Fatalf("found only %d golden inputs in testdata/", seen)
	}
}

// checkWarningsGolden compares the admission warnings for testdata/name.yaml,
// one a line, with testdata/name.warnings, which exists only when there are
// some; -update rewrites it.
func checkWarningsGolden(t *testing.T, name string, warnings []string) {
	t.Helper()
	golden := filepath.Join("testdata", name+".warnings")
	got := ""
	if len(warnings) > 0 {
		got = strings.Join(warnings, "\n") + "\n"
	}
	for _, w := range warnings {
		if len(w) > 256 || strings.Contains(w, "\n") {
			t.Errorf("warning of %d bytes (or with a newline): %q", len(w), w)
		}
	}
	if len(warnings) > 8 {
		t.Errorf("%d warnings, at most 8", len(warnings))
	}
	if *update {
		if got == "" {
			if err := os.Remove(golden); err != nil && !os.IsNotExist(err) {
				t.Fatal(err)
			}
		} else if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	if string(want) != got {
		t.Errorf("%s is stale (run go test ./webhook -run TestGolden -update); got:\n%s", golden, got)
	}
}

// checkOpsOnlyTouchOurs asserts the patch never rewrites the user's containers or
// volumes: it inserts into initContainers, appends to volumes and mounts, sets
// our annotation, sets fields only of depends-on's own containers, and removes
// only what the record says we injected.
func checkOpsOnlyTouchOurs(t *testing.T, pod *corev1.Pod, ops []jsonpatch.Operation) {
	t.Helper()
	ours := func(p string) bool { // /spec/initContainers/<i>/<field> of a container of ours
		rest, ok := strings.CutPrefix(p, "/spec/initContainers/")
		idx, field, ok2 := strings.Cut(rest, "/")
		i, err := strconv.Atoi(idx)
		if !ok || !ok2 || err != nil || i >= len(pod.Spec.InitContainers) || strings.Contains(field, "/") {
			return false
		}
		_, had := pod.Annotations[AnnotationInjected]
		return had && oursContainer(&pod.Spec.InitContainers[i])
	}
	for _, op := range ops {
		p := op.Path
		ok := ours(p)
		switch op.Operation {
		case "add":
			ok = ok || p == "/spec/initContainers" || strings.HasPrefix(p, "/spec/initContainers/") && !strings.Contains(strings.TrimPrefix(p, "/spec/initContainers/"), "/") ||
				p == "/spec/volumes" || p == "/spec/volumes/-" ||
				strings.HasPrefix(p, "/spec/containers/") && (strings.HasSuffix(p, "/volumeMounts") || strings.HasSuffix(p, "/volumeMounts/-")) ||
				p == "/metadata/annotations/depends-on.dev~1injected"
		case "remove":
			_, had := pod.Annotations[AnnotationInjected]
			ok = ok || had
		}
		if !ok {
			t.Errorf("patch operation %s %s touches more than the injection", op.Operation, p)
		}
	}
}
