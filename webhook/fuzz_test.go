package webhook

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	jsonpatchapply "github.com/evanphx/json-patch/v5"
	corev1 "k8s.io/api/core/v1"

	"github.com/depends-on/depends-on/webhook/target"
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

// FuzzArgs: for every Pod the webhook patches, every argument of the injected
// containers is accepted by wait-for-service's own grammar (webhook/target):
// flags first, then targets that target.ParseAll takes as a whole. Seeded with
// the annotations that used to be admitted and then rejected by the binary.
func FuzzArgs(f *testing.F) {
	for _, s := range []string{"mydb:5432, myservice", "db.example.com:1, [::1]:2, 10.0.0.1:3", "http://myapi:/healthz",
		"http://b:?", "/a=http://h:/", "/aab=https://a:?0", "http://h:8080/x?a=b", "/etc/a=https://h/?x=1, /b/c=http://h/",
		"a:+80", "a:080", "256.1.1.1:80", "1.2.3:4", "s.ns", "HTTP://H/", "migrate, db.migrate.x", "Deployment/api, sts/x",
		"db:5432, dns.kube-system:dns-tcp", "db:05432"} {
		for k := range len(userKeys) - 1 { // not the timeout
			f.Add(uint8(k), s, "shop", "cluster.local")
		}
	}
	f.Add(uint8(0), "s", strings.Repeat("n", 63), strings.Repeat("d", 61)+"."+strings.Repeat("e", 61))
	f.Fuzz(func(t *testing.T, k uint8, value, namespace, domain string) {
		cfg := goldenConfig()
		cfg.ClusterDomain = domain
		in, err := NewInjector(cfg)
		if err != nil {
			return // Config.Validate refuses the domain
		}
		key := userKeys[int(k)%(len(userKeys)-1)]
		p := &corev1.Pod{Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app"}}}}
		p.Annotations = map[string]string{key: value, AnnotationTimeout: "90s"}
		out, err := in.Inject(PodFrom(p), namespace)
		if err != nil {
			return
		}
		checked := 0
		for _, c := range out.Spec.InitContainers {
			if c.Name != WaitContainerName && c.Name != FetchContainerName {
				continue
			}
			args := c.Args
			for len(args) > 0 && strings.HasPrefix(args[0], "--") {
				if !strings.HasPrefix(args[0], "--timeout=") && !strings.HasPrefix(args[0], "--max-bytes=") &&
					args[0] != "--readiness-url="+cfg.ReadinessURL && args[0] != "--readiness-token-file="+ReadinessTokenDir+"/token" {
					t.Fatalf("unexpected flag %q", args[0])
				}
				args = args[1:]
			}
			if len(args) == 0 {
				t.Fatalf("container %s has no targets: %q", c.Name, c.Args)
			}
			for _, a := range args {
				if _, err := target.Parse(a); err != nil {
					t.Fatalf("%s=%q: injected argument %q is rejected by wait-for-service: %v", key, value, a, err)
				}
			}
			if _, err := target.ParseAll(args); err != nil {
				t.Fatalf("%s=%q: injected arguments rejected by wait-for-service: %v", key, value, err)
			}
			checked++
		}
		if checked == 0 {
			t.Fatalf("%s=%q was admitted but injected nothing", key, value)
		}
	})
}
