package webhook

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
)

// readPodSeeds are documents that exercise the fast path and each reason to
// leave it: every golden Pod, the benchmark Pod, and odd JSON.
func readPodSeeds(t testing.TB) [][]byte {
	t.Helper()
	var seeds [][]byte
	for _, g := range goldenDocs(t) {
		seeds = append(seeds, g.doc)
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
		`{"spec":{"volumes":[{"name":"a","name":"b"}]}}`, `{"metadata":{"annotations":{"depends-on.dev/services":"a"}},"spec":{"os":{"name":"windows"}}}`,
		`{"metadata":{"annotations":{"depends-on.dev/services":"a"}},"spec":{"os":{"name":5}}}`, `{"spec":{"containers":[{"volumeMounts":[{"name":"a","readOnly":"x"}]}]}}`, `{"spec":{"containers":[{"name":"a","Name":"b"}]}}`,
		`{"metadata":{"annotations":{"depends-on.dev/services":"a","k\u00e9":"v","x":null}}}`, "{\"metadata\":{\"annotations\":{\"depends-on.dev/services\":\"a\xff\"}}}", "\t{\"metadata\"\n:\r{}}\n",
	} {
		seeds = append(seeds, []byte(s))
	}
	return seeds
}

// checkReadPod compares the fast path with json.Unmarshal on doc.
func checkReadPod(t *testing.T, doc []byte) {
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
		case "", "metadata", "spec", "spec.containers", "spec.volumes", "spec.containers.volumeMounts":
			t.Fatalf("fast path accepted %q, json.Unmarshal: %v", doc, fullErr)
		}
		read := []string{"metadata.name", "metadata.generateName", "metadata.namespace", "metadata.annotations",
			"spec.initContainers", "spec.os", "spec.containers.name", "spec.containers.volumeMounts", "spec.volumes.name"}
		if bytes.Contains(doc, []byte(FetchVolumeName)) {
			// That volume is read whole.
			read = append(read, "spec.volumes")
		}
		for _, f := range read {
			if te.Field == f || strings.HasPrefix(te.Field, f+".") {
				t.Fatalf("fast path accepted %q, whose %s is invalid: %v", doc, f, fullErr)
			}
		}
		return
	}
	// The compiler keeps injection to Pod; this keeps the scan equal to
	// json.Unmarshal on what Pod holds.
	if want := PodFrom(&full); !reflect.DeepEqual(fast, want) {
		g, _ := json.Marshal(fast)
		w, _ := json.Marshal(want)
		t.Fatalf("readPodFast(%.200q):\n got %s\nwant %s", doc, g, w)
	}
}

func TestReadPod(t *testing.T) {
	for _, doc := range readPodSeeds(t) {
		checkReadPod(t, doc)
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
		if _, err := ReadPod([]byte(doc)); err == nil {
			t.Errorf("readPod(%s): no error", doc)
		}
	}
	pod, err := ReadPod([]byte(`{"Metadata":{"annotations":{"depends-on.dev/services":"a"}}}`))
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
	f.Fuzz(func(t *testing.T, doc []byte) {
		checkReadPod(t, doc)
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

// TestReadPodRandomPods fills every field of Pods at random (strings from a
// pool that includes the names and values injection cares about), with
// annotations that ask for injection, and checks that the scan decodes the
// same Pod as json.Unmarshal and PodFrom, and that Patch answers the same on
// both.
func TestReadPodRandomPods(t *testing.T) {
	in := testInjector(t)
	r := rand.New(rand.NewPCG(1, 2))
	annotations := []map[string]string{
		{AnnotationServices: "mydb:5432, cache"},
		{AnnotationHTTP: "http://config:8080/healthz", AnnotationTimeout: "30s"},
		{AnnotationFetch: "/etc/app/config.json=http://config/app.json", AnnotationServices: "db"},
		{AnnotationServices: "db", AnnotationInjected: `{"version":1,"initContainers":["wait-for-service"]}`},
		{AnnotationFetch: "/data/x=http://x/", AnnotationInjected: `{"version":1,"initContainers":["fetch"],"volumes":["depends-on-fetch"]}`},
	}
	n, fast, patched := 400, 0, 0
	if testing.Short() {
		n = 100
	}
	for i := range n {
		var pod corev1.Pod
		randomFill(reflect.ValueOf(&pod).Elem(), r, 0)
		pod.Annotations = maps.Clone(annotations[i%len(annotations)])
		if r.IntN(2) == 0 {
			pod.Annotations["team"] = "a"
		}
		doc, err := json.Marshal(&pod)
		if err != nil {
			t.Fatal(err)
		}
		var whole corev1.Pod
		if err := json.Unmarshal(doc, &whole); err != nil {
			t.Fatal(err)
		}
		partial, ok := readPodFast(doc)
		if !ok {
			continue
		}
		fast++
		if want := PodFrom(&whole); !reflect.DeepEqual(partial, want) {
			g, _ := json.Marshal(partial)
			w, _ := json.Marshal(want)
			t.Fatalf("Pod %d: readPodFast:\n got %s\nwant %s", i, g, w)
		}
		wantOps, wantErr := in.Patch(PodFrom(&whole), "default")
		gotOps, gotErr := in.Patch(partial, "default")
		if fmt.Sprint(gotErr) != fmt.Sprint(wantErr) {
			t.Fatalf("Pod %d: Patch error on the partial Pod %v, on the whole Pod %v\n%s", i, gotErr, wantErr, doc)
		}
		if len(wantOps) > 0 {
			patched++
		}
		a, _ := json.Marshal(gotOps)
		b, _ := json.Marshal(wantOps)
		if !bytes.Equal(a, b) {
			t.Fatalf("Pod %d: Patch differs\npartial Pod: %s\nwhole Pod:   %s\n%s", i, a, b, doc)
		}
	}
	if fast < n*9/10 || patched < n/10 {
		t.Errorf("of %d random Pods, %d took the fast path and %d were patched", n, fast, patched)
	}
	t.Logf("of %d random Pods, %d took the fast path and %d were patched", n, fast, patched)
}

var marshalerType = reflect.TypeFor[json.Marshaler]()

// randomFill sets the exported fields of v at random, down to a few levels.
// Types with their own JSON encoding (Quantity, Time, IntOrString) stay zero.
func randomFill(v reflect.Value, r *rand.Rand, depth int) {
	pool := []string{"", "a", "b", "linux", "windows", WaitContainerName, FetchContainerName, FetchVolumeName,
		"/data", "/etc/app", "/etc/app/config.json", FetchDir, "Always"}
	if reflect.PointerTo(v.Type()).Implements(marshalerType) {
		return
	}
	switch v.Kind() {
	case reflect.String:
		v.SetString(pool[r.IntN(len(pool))])
	case reflect.Bool:
		v.SetBool(r.IntN(2) == 0)
	case reflect.Int, reflect.Int32, reflect.Int64:
		v.SetInt(int64(r.IntN(3)))
	case reflect.Pointer:
		if depth < 6 && r.IntN(3) > 0 {
			v.Set(reflect.New(v.Type().Elem()))
			randomFill(v.Elem(), r, depth+1)
		}
	case reflect.Slice:
		if depth < 6 && v.Type().Elem().Kind() != reflect.Uint8 {
			n := r.IntN(3)
			v.Set(reflect.MakeSlice(v.Type(), n, n))
			for i := range n {
				randomFill(v.Index(i), r, depth+1)
			}
		}
	case reflect.Map:
		if depth < 6 && v.Type().Key().Kind() == reflect.String {
			v.Set(reflect.MakeMap(v.Type()))
			for range r.IntN(3) {
				k, e := reflect.New(v.Type().Key()).Elem(), reflect.New(v.Type().Elem()).Elem()
				randomFill(k, r, depth+1)
				randomFill(e, r, depth+1)
				v.SetMapIndex(k, e)
			}
		}
	case reflect.Struct:
		for i := range v.NumField() {
			if v.Type().Field(i).IsExported() {
				randomFill(v.Field(i), r, depth+1)
			}
		}
	}
}
