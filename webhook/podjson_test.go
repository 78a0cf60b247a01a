package webhook

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"
)

// readPodSeeds are documents that exercise the fast path and each reason to
// leave it: every golden Pod, the benchmark Pod, and odd JSON.
func readPodSeeds(t testing.TB) [][]byte {
	t.Helper()
	var seeds [][]byte
	inputs, _ := filepath.Glob("testdata/*.yaml")
	for _, in := range inputs {
		src, err := os.ReadFile(in)
		if err != nil {
			t.Fatal(err)
		}
		doc, err := yaml.YAMLToJSON(src)
		if err != nil {
			t.Fatal(err)
		}
		seeds = append(seeds, doc)
	}
	seeds = append(seeds, benchPodJSON(t, true), benchPodJSON(t, false))
	for _, s := range []string{
		`{}`, `null`, `[]`, `"a string"`, ` { } `, `{}x`, `{"a":1}}`, `{"a" 1}`, `{"a":1,}`, `{,}`, `[1,]`,
		`{"spec":{"containers":"x"}}`, `{"spec":{"containers":[null]}}`, `{"spec":{"containers":[1]}}`,
		`{"spec":{"containers":[]}}`, `{"spec":{"initContainers":[],"volumes":null,"containers":null}}`,
		`{"spec":{"restartPolicy":5},"metadata":{"labels":{"a":1}}}`,
		`{"Metadata":{"annotations":{"depends-on.dev/services":"a"}}}`,
		`{"metadata":{"ANNOTATIONS":{"depends-on.dev/services":"a"}}}`,
		`{"metadata":{"annotations":{"depends-on.dev/services":"a"}},"metadata":{}}`,
		`{"metadata":{"annotations":{"depends-on.dev/services":"a"},"annotations":{"b":"c"}}}`,
		`{"metadata":{"\u006eame":"x","annotations":{"depends-on.dev/services":"a"}}}`,
		`{"metadata":{"name":"\u00e9\ud83d\ude00\n","annotations":{"depends-on.dev/services":"a\u002c b"}},"spec":{"containers":[{"name":"c","Name":"d"}]}}`,
		`{"metadata":{"name":5}}`, `{"metadata":{"annotations":{"a":1}}}`, `{"metadata":null,"spec":null}`, `{"metadata":[]}`,
		`{"metadata":{"annotations":{"depends-on.dev/services":"a"}},"spec":{"containers":[{"name":"c","volumeMounts":[{"name":"depends-on-fetch","mountPath":"/x"}]}]}}`,
		"{\"a\":\"\x01\"}", `{"a":01}`, `{"a":-}`, `{"a":1e}`, `{"a":1.}`, `{"a":-0.5e+7}`, `{"a":"\uZZZZ"}`, `{"a":"\x"}`, `{"a":tru}`, `{"a":nul}`,
		"{\"a\":\"\xff\xfe\"}", `{"a":[[[[[[[[[[]]]]]]]]]]}`, strings.Repeat("[", 1200) + strings.Repeat("]", 1200),
		`{"a":{"b":[true,false,null,"x",{"c":[]}]}}`,
		`{"metadata":{"annotations":{"depends-on.dev/fetch":"/a=http://x/","depends-on.dev/injected":"{\"version\":1,\"initContainers\":[\"fetch\"],\"volumes\":[\"depends-on-fetch\"]}"}},"spec":{"volumes":[{"name":"a","emptyDir":{}},{"name":"depends-on-fetch","emptyDir":{"sizeLimit":"32Mi"}},{"name":"a","hostPath":{"path":"/"}}],"containers":[{"name":"c","volumeMounts":[{"name":"depends-on-fetch","mountPath":"/a","subPath":"0-a"}]}],"initContainers":[{"name":"fetch"}]}}`,
		`{"metadata":{"annotations":{"depends-on.dev/services":"a","depends-on.dev/injected":"{\"version\":1,\"initContainers\":[\"wait-for-service\"]}"}},"spec":{"volumes":[{"name":"a","emptyDir":{}},{"name":"a"}],"containers":[{"name":"c"}]}}`,
		`{"spec":{"volumes":[null]}}`, `{"spec":{"volumes":[{"name":"depends-on-fetch","emptyDir":5}]}}`, `{"spec":{"volumes":[{"name":"x","emptyDir":5}]}}`,
		`{"spec":{"volumes":[{"name":"a","name":"b"}]}}`, `{"spec":{"containers":[{"name":"a","Name":"b"}]}}`,
		`{"metadata":{"annotations":{"depends-on.dev/services":"a","k\u00e9":"v","x":null}}}`, "{\"metadata\":{\"annotations\":{\"depends-on.dev/services\":\"a\xff\"}}}", "\t{\"metadata\"\n:\r{}}\n",
	} {
		seeds = append(seeds, []byte(s))
	}
	return seeds
}

// injectionView is what readPod promises to decode of a Pod: metadata names
// and annotations, init containers, the name and volumeMounts of containers,
// the name of volumes (the whole one for the injected volume).
func injectionView(pod *corev1.Pod) *corev1.Pod {
	v := &corev1.Pod{}
	v.Name, v.GenerateName, v.Namespace, v.Annotations = pod.Name, pod.GenerateName, pod.Namespace, pod.Annotations
	v.Spec.InitContainers = pod.Spec.InitContainers
	if pod.Spec.Volumes != nil {
		v.Spec.Volumes = []corev1.Volume{}
	}
	for _, vol := range pod.Spec.Volumes {
		if vol.Name != FetchVolumeName {
			vol = corev1.Volume{Name: vol.Name}
		}
		v.Spec.Volumes = append(v.Spec.Volumes, vol)
	}
	if pod.Spec.Containers != nil {
		v.Spec.Containers = []corev1.Container{}
	}
	for _, c := range pod.Spec.Containers {
		v.Spec.Containers = append(v.Spec.Containers, corev1.Container{Name: c.Name, VolumeMounts: c.VolumeMounts})
	}
	return v
}

// checkReadPod compares the fast path with json.Unmarshal on doc.
func checkReadPod(t *testing.T, in *Injector, doc []byte) {
	t.Helper()
	fast, ok := readPodFast(doc)
	var full corev1.Pod
	fullErr := json.Unmarshal(doc, &full)
	if !ok {
		// The fallback is json.Unmarshal itself.
		return
	}
	if !json.Valid(doc) {
		t.Fatalf("fast path accepted invalid JSON %q", doc)
	}
	if fullErr != nil {
		// Only a type error in a field injection does not read may pass.
		var te *json.UnmarshalTypeError
		if !errors.As(fullErr, &te) {
			t.Fatalf("fast path accepted %q, json.Unmarshal: %v", doc, fullErr)
		}
		switch te.Field {
		case "", "metadata", "spec", "spec.containers", "spec.volumes":
			t.Fatalf("fast path accepted %q, json.Unmarshal: %v", doc, fullErr)
		}
		read := []string{"metadata.name", "metadata.generateName", "metadata.namespace", "metadata.annotations",
			"spec.initContainers", "spec.containers.name", "spec.containers.volumeMounts", "spec.volumes.name"}
		if bytes.Contains(doc, []byte(FetchVolumeName)) {
			read = append(read, "spec.volumes") // that volume is read whole
		}
		for _, f := range read {
			if te.Field == f || strings.HasPrefix(te.Field, f+".") {
				t.Fatalf("fast path accepted %q, whose %s is invalid: %v", doc, f, fullErr)
			}
		}
		return
	}
	want := injectionView(&full)
	if !reflect.DeepEqual(fast, want) {
		g, _ := json.Marshal(fast)
		w, _ := json.Marshal(want)
		t.Fatalf("readPodFast(%.200q):\n got %s\nwant %s", doc, g, w)
	}
	fastOps, fastErr := in.Patch(fast, "default")
	fullOps, fullPatchErr := in.Patch(&full, "default")
	if (fastErr == nil) != (fullPatchErr == nil) || fastErr != nil && fastErr.Error() != fullPatchErr.Error() {
		t.Fatalf("Patch errors differ on %.200q: partial %v, whole %v", doc, fastErr, fullPatchErr)
	}
	a, _ := json.Marshal(fastOps)
	b, _ := json.Marshal(fullOps)
	if !bytes.Equal(a, b) {
		t.Fatalf("Patch differs on %.200q:\npartial Pod: %s\nwhole Pod:   %s", doc, a, b)
	}
}

func TestReadPod(t *testing.T) {
	in := testInjector(t)
	for _, doc := range readPodSeeds(t) {
		checkReadPod(t, in, doc)
	}
	// The golden and benchmark Pods take the fast path.
	for _, doc := range readPodSeeds(t)[:3] {
		if _, ok := readPodFast(doc); !ok {
			t.Errorf("fast path refused %s", doc)
		}
	}
	if _, ok := readPodFast(benchPodJSON(t, true)); !ok {
		t.Error("fast path refused the benchmark Pod")
	}
	// readPod falls back to json.Unmarshal, errors included.
	for _, doc := range []string{`[]`, `{"spec":{"containers":"x"}}`, `{"metadata":{"name":5}}`, `{"a":01}`} {
		if _, err := readPod([]byte(doc)); err == nil {
			t.Errorf("readPod(%s): no error", doc)
		}
	}
	pod, err := readPod([]byte(`{"Metadata":{"annotations":{"depends-on.dev/services":"a"}}}`))
	if err != nil || pod.Annotations[AnnotationServices] != "a" {
		t.Errorf("case-folded key: %+v, %v", pod, err)
	}
}

// FuzzReadPod: the fast path accepts only valid JSON, and where json.Unmarshal
// also succeeds it decodes the same fields and Patch returns the same operations.
func FuzzReadPod(f *testing.F) {
	for _, doc := range readPodSeeds(f) {
		f.Add(doc)
	}
	in := testInjector(f)
	f.Fuzz(func(t *testing.T, doc []byte) {
		checkReadPod(t, in, doc)
	})
}

// FuzzScanner: the scanner's verdict is json.Valid's (it may only refuse more
// when nesting exceeds its depth limit).
func FuzzScanner(f *testing.F) {
	for _, doc := range readPodSeeds(f) {
		f.Add(doc)
	}
	f.Fuzz(func(t *testing.T, doc []byte) {
		s := &scanner{d: doc}
		s.ws()
		ok := s.skip(1)
		if ok {
			s.ws()
			ok = s.i == len(doc)
		}
		valid := json.Valid(doc)
		if ok && !valid {
			t.Fatalf("scanner accepted invalid %q", doc)
		}
		if !ok && valid && bytes.Count(doc, []byte("["))+bytes.Count(doc, []byte("{")) < maxDepth {
			t.Fatalf("scanner refused valid %q", doc)
		}
	})
}
