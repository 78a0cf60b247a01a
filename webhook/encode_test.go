package webhook

import (
	"bytes"
	"encoding/json"
	"testing"

	jsonpatch "gomodules.xyz/jsonpatch/v2"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
)

// TestContainerJSON: the templates give exactly json.Marshal's bytes, whatever
// the args and the configuration.
func TestContainerJSON(t *testing.T) {
	noCPULimit := DefaultConfig()
	noCPULimit.WaitImage = `registry.example.com:5000/a&b/<wfs>:"1"`
	delete(noCPULimit.Resources.Limits, corev1.ResourceCPU)
	noCPULimit.FetchSizeLimit = resource.MustParse("1Gi")
	noCA := goldenConfig()
	noCA.ReadinessCA = ""
	for _, cfg := range []Config{DefaultConfig(), noCPULimit, goldenConfig(), noCA} {
		in, err := NewInjector(cfg)
		if err != nil {
			t.Fatal(err)
		}
		for _, args := range [][]string{
			nil, {}, {"dns:a."}, {"--timeout=1m30s", "tcp:mydb.shop.svc.cluster.local.:5432", "http://x/?a=1&b=<2>"},
			{`"quoted"`, "é\u2028\x00", argsPlaceholder, `"args":["x"]`},
		} {
			for _, c := range []corev1.Container{in.container(WaitContainerName, args), in.fetchContainer(args), in.readinessContainer(WaitContainerName, args)} {
				want, err := json.Marshal(c)
				if err != nil {
					t.Fatal(err)
				}
				got, err := in.containerJSON(&c)
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(got, want) {
					t.Errorf("%s %q:\n got %s\nwant %s", c.Name, args, got, want)
				}
			}
		}
		cs := []corev1.Container{in.container(WaitContainerName, []string{"dns:a."}), in.fetchContainer([]string{"fetch:/a=http://x/"})}
		want, _ := json.Marshal(cs)
		if got, err := in.containersJSON(cs); err != nil || !bytes.Equal(got, want) {
			t.Errorf("list:\n got %s, %v\nwant %s", got, err, want)
		}
	}
}

// TestEncodePatch: encodePatch gives json.Marshal's bytes for the patches of
// every golden Pod, the benchmark Pod and odd operations.
func TestEncodePatch(t *testing.T) {
	in := testInjector(t)
	var cases [][]jsonpatch.Operation
	for _, doc := range readPodSeeds(t) {
		pod, err := ReadPod(doc)
		if err != nil {
			continue
		}
		if ops, err := in.Patch(pod, "default"); err == nil && len(ops) > 0 {
			cases = append(cases, ops)
		}
	}
	if len(cases) < 5 {
		t.Fatalf("only %d patches", len(cases))
	}
	cases = append(cases, []jsonpatch.Operation{
		{Operation: "add", Path: "/a"},
		{Operation: "replace", Path: "/a~1b/<&>", Value: nil},
		{Operation: "remove", Path: "/metadata/annotations/é\"x\""},
		{Operation: "add", Path: "/b", Value: map[string]any{"x": []int{1}, "y": "\u2028<"}},
		{Operation: "add", Path: "/c", Value: json.RawMessage(`{"a":1}`)},
	})
	for _, ops := range cases {
		want, err := json.Marshal(ops)
		if err != nil {
			t.Fatal(err)
		}
		got, err := encodePatch(ops)
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("encodePatch:\n got %s, %v\nwant %s", got, err, want)
		}
	}
}
