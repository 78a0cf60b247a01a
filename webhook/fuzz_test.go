package webhook

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	jsonpatchapply "github.com/evanphx/json-patch/v5"
	corev1 "k8s.io/api/core/v1"
)

// FuzzParse feeds arbitrary values to every key: Parse must not panic, must
// return either targets or errors naming the annotation, and never drop an entry
// silently (every non-empty entry is a target, a duplicate, or an error).
func FuzzParse(f *testing.F) {
	for _, s := range []string{"myservice, mydb", "mydb:5432\ncache.shared:6379,", "a:0", "[::1]:80", "http://x/",
		"/a=http://x/", "90s", "", ",,,", "a.b.c", "x:65536", "/a/../b=http://x", "https://u:p@h/", "héllo:1"} {
		for k := range len(userKeys) {
			f.Add(uint8(k), s)
		}
	}
	f.Fuzz(func(t *testing.T, k uint8, value string) {
		key := userKeys[int(k)%len(userKeys)]
		ann := map[string]string{key: value}
		if key == AnnotationTimeout {
			ann[AnnotationServices] = "s"
		}
		spec, errs := Parse(ann, parseOpts)
		for _, e := range errs {
			if !strings.Contains(e.Error(), key) {
				t.Fatalf("error %q does not name %s", e, key)
			}
		}
		if key == AnnotationTimeout || len(errs) > 0 {
			return
		}
		entries := SplitList(value)
		accounted := len(spec.Waits) + len(spec.Fetches)
		if accounted == 0 || accounted > len(entries) {
			t.Fatalf("%d entries became %d targets", len(entries), accounted)
		}
	})
}

// FuzzPatch feeds arbitrary Pod JSON through Patch. It must not panic; a patch it
// returns must apply to the document and leave a Pod that needs no further patch.
func FuzzPatch(f *testing.F) {
	for _, g := range goldenDocs(f) {
		f.Add(g.doc)
	}
	f.Add([]byte(myappPod))
	f.Add([]byte(`{"metadata":{"annotations":{"depends-on.dev/injected":"{\"version\":1,\"initContainers\":[\"a\",\"a\"],\"volumes\":[\"v\"]}","depends-on.dev/tcp":"a:1"}},"spec":{"initContainers":[{"name":"a"},{"name":"a","volumeMounts":[{"name":"v"}]}],"containers":[{"name":"c","volumeMounts":[{"name":"v"},{"name":"w"},{"name":"v"}]}],"volumes":[{"name":"v"},{"name":"v"}]}}`))
	in := testInjector(f)
	f.Fuzz(func(t *testing.T, doc []byte) {
		var pod corev1.Pod
		if json.Unmarshal(doc, &pod) != nil {
			return
		}
		// The API server sends its own serialization of the object, never the
		// client's bytes: canonical field names, and spec always present.
		doc, err := json.Marshal(&pod)
		if err != nil {
			t.Fatal(err)
		}
		ops, err := in.Patch(PodFrom(&pod), "fuzz")
		if err != nil {
			var invalid *InvalidError
			if !errors.As(err, &invalid) || len(invalid.Errs) == 0 {
				t.Fatalf("error is not an InvalidError listing problems: %v", err)
			}
			return
		}
		if len(ops) == 0 {
			return
		}
		raw, _ := json.Marshal(ops)
		p, err := jsonpatchapply.DecodePatch(raw)
		if err != nil {
			t.Fatalf("patch does not decode: %v", err)
		}
		out, err := p.Apply(doc)
		if err != nil {
			t.Fatalf("patch %s does not apply to %s: %v", raw, doc, err)
		}
		var res corev1.Pod
		if err := json.Unmarshal(out, &res); err != nil {
			t.Fatalf("patched document is not a Pod: %v", err)
		}
		again, err := in.Patch(PodFrom(&res), "fuzz")
		if err != nil || len(again) != 0 {
			raw2, _ := json.Marshal(again)
			t.Fatalf("output is not a fixed point: err=%v patch=%s\ninput: %s", err, raw2, doc)
		}
	})
}
