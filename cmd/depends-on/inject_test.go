package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/depends-on/depends-on/test/testutil"
	"github.com/depends-on/depends-on/webhook"
)

const goldenDir = "../../webhook/testdata"

// runStdin runs the CLI with stdin as standard input.
func runStdin(t *testing.T, stdin string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code = runMain(context.Background(), &cmdEnv{
		stdin: strings.NewReader(stdin), stdout: &out, stderr: &errOut,
		getenv: func(string) string { return "" },
	}, args)
	return code, out.String(), errOut.String()
}

func readFile(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// object decodes YAML or JSON into a generic value, for semantic comparison.
func object(t *testing.T, doc string) any {
	t.Helper()
	var v any
	if err := yaml.Unmarshal([]byte(doc), &v); err != nil {
		t.Fatalf("decode %q: %v", doc, err)
	}
	return v
}

// TestInjectGoldens: for every golden of the webhook, inject gives the
// golden byte for byte, from a file and from standard input, and from the
// JSON form of the input the same object; injecting the output again
// changes nothing.
func TestInjectGoldens(t *testing.T) {
	for _, g := range testutil.Goldens(t, goldenDir) {
		t.Run(g.Name, func(t *testing.T) {
			want := readFile(t, g.Injected)
			code, got, stderr := runArgs(t, nil, append([]string{"inject", "-f", g.Input}, goldenFlags(t)...)...)
			if code != exitOK || got != want {
				t.Fatalf("inject -f %s: code %d, stderr %q, stdout differs from %s:\n%s", g.Input, code, stderr, g.Injected, got)
			}
			if code, got, _ := runStdin(t, readFile(t, g.Input), append([]string{"inject", "-f", "-"}, goldenFlags(t)...)...); code != exitOK || got != want {
				t.Errorf("inject -f - differs from the file's output:\n%s", got)
			}
			if code, again, stderr := runStdin(t, got, append([]string{"inject", "-f", "-"}, goldenFlags(t)...)...); code != exitOK || again != got {
				t.Errorf("inject of the output is not the output: code %d, stderr %q:\n%s", code, stderr, again)
			}
			asJSON, err := yaml.YAMLToJSON([]byte(readFile(t, g.Input)))
			if err != nil {
				t.Fatal(err)
			}
			code, gotJSON, stderr := runStdin(t, string(asJSON), append([]string{"inject", "-f", "-"}, goldenFlags(t)...)...)
			if code != exitOK || !json.Valid([]byte(gotJSON)) || !reflect.DeepEqual(object(t, gotJSON), object(t, want)) {
				t.Errorf("JSON input: code %d, stderr %q, got:\n%s", code, stderr, gotJSON)
			}
		})
	}
}

// wrap puts the Pod doc (JSON) into a kind's Pod template.
func wrap(t *testing.T, kind string, pod map[string]any) map[string]any {
	t.Helper()
	meta, _ := pod["metadata"].(map[string]any)
	ns, _ := meta["namespace"].(string)
	tmpl := map[string]any{"metadata": pod["metadata"], "spec": pod["spec"]}
	objMeta := map[string]any{"name": "w", "labels": map[string]any{"keep": "me"}}
	if ns != "" {
		objMeta["namespace"] = ns
	}
	obj := map[string]any{"kind": kind, "metadata": objMeta}
	switch kind {
	case "Job":
		obj["apiVersion"] = "batch/v1"
		obj["spec"] = map[string]any{"backoffLimit": 3, "template": tmpl}
	case "CronJob":
		obj["apiVersion"] = "batch/v1"
		obj["spec"] = map[string]any{"schedule": "*/5 * * * *",
			"jobTemplate": map[string]any{"spec": map[string]any{"template": tmpl}}}
	default:
		obj["apiVersion"] = "apps/v1"
		obj["spec"] = map[string]any{"replicas": 2, "selector": map[string]any{"matchLabels": map[string]any{"app": "w"}}, "template": tmpl}
	}
	return obj
}

func toYAML(t *testing.T, v any) string {
	t.Helper()
	b, err := yaml.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestInjectWorkloads: each golden Pod, as the template of every workload
// kind and as the items of a List, comes out with the golden's metadata and
// spec as its template, and nothing else of the object changed.
func TestInjectWorkloads(t *testing.T) {
	kinds := []string{"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job", "CronJob"}
	for _, g := range testutil.Goldens(t, goldenDir) {
		t.Run(g.Name, func(t *testing.T) {
			in, _ := object(t, readFile(t, g.Input)).(map[string]any)
			golden, _ := object(t, readFile(t, g.Injected)).(map[string]any)
			var docs, wants []string
			var items, wantItems []any
			for _, kind := range kinds {
				obj, want := wrap(t, kind, in), wrap(t, kind, golden)
				docs, wants = append(docs, toYAML(t, obj)), append(wants, toYAML(t, want))
				items, wantItems = append(items, obj), append(wantItems, want)
			}
			list := map[string]any{"apiVersion": "v1", "kind": "List", "items": items}
			docs = append(docs, toYAML(t, list))
			wants = append(wants, toYAML(t, map[string]any{"apiVersion": "v1", "kind": "List", "items": wantItems}))

			code, out, stderr := runStdin(t, strings.Join(docs, "---\n"), append([]string{"inject", "-f", "-"}, goldenFlags(t)...)...)
			if code != exitOK {
				t.Fatalf("code %d: %s", code, stderr)
			}
			got := docSeparator.Split(out, -1)
			if len(got) != len(wants) {
				t.Fatalf("%d documents out, want %d:\n%s", len(got), len(wants), out)
			}
			for i := range wants {
				if !reflect.DeepEqual(object(t, got[i]), object(t, wants[i])) {
					t.Errorf("document %d: got\n%s\nwant\n%s", i+1, got[i], wants[i])
				}
				// Changed documents are written as sigs.k8s.io/yaml writes them.
				if got[i] != wants[i] {
					t.Errorf("document %d is not in sigs.k8s.io/yaml's form:\n%s", i+1, got[i])
				}
			}
			if code, again, _ := runStdin(t, out, append([]string{"inject", "-f", "-"}, goldenFlags(t)...)...); code != exitOK || again != out {
				t.Errorf("inject of the output is not the output:\n%s", again)
			}
		})
	}
}

// TestInjectPassThrough: documents without depends-on annotations, and
// kinds without Pod templates, come out byte for byte, comments included.
func TestInjectPassThrough(t *testing.T) {
	in := `# a config map, in flow style
apiVersion: v1
kind: ConfigMap
metadata: {name: settings, namespace: shop}
data: {z: "1", a: "2"}
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: plain   # no annotations
  annotations:
    team: checkout
spec:
  replicas: 1
  template:
    metadata:
      annotations:
        prometheus.io/scrape: "true"
    spec:
      containers: [{name: app, image: nginx}]
---
apiVersion: batch/v1
kind: CronJob
metadata:
  name: nightly
  annotations:
    depends-on.dev/services: mydb  # on the CronJob, not its Pod template: the webhook never sees it
spec:
  schedule: "@daily"
  jobTemplate:
    spec:
      template:
        spec:
          containers: [{name: job, image: busybox}]
`
	code, out, stderr := runStdin(t, in, "inject", "-f", "-")
	if code != exitOK || out != in {
		t.Errorf("code %d, stderr %q; output differs from input:\n%s", code, stderr, out)
	}
	js := `{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p"},"spec":{"containers":[{"name":"a","image":"x"}]}}` + "\n"
	if code, out, _ := runStdin(t, js, "inject", "-f", "-"); code != exitOK || out != js {
		t.Errorf("JSON pass-through: code %d:\n%s", code, out)
	}
}

// badDeployment has two mistakes lint and inject must both report.
const badDeployment = `apiVersion: v1
kind: ConfigMap
metadata: {name: fine}
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: shop
spec:
  template:
    metadata:
      annotations:
        depends-on.dev/timout: 90s
        depends-on.dev/services: mydb:99999
    spec:
      containers: [{name: web, image: nginx}]
`

// webhookMessage is the webhook library's own denial for the bad template.
func webhookMessage(t *testing.T) string {
	t.Helper()
	in, err := webhook.NewInjector(webhook.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	pod := &webhook.Pod{}
	pod.Annotations = map[string]string{"depends-on.dev/timout": "90s", "depends-on.dev/services": "mydb:99999"}
	pod.Spec.Containers = []webhook.Container{{Name: "web"}}
	_, err = in.Patch(pod, "shop")
	if _, ok := err.(*webhook.InvalidError); !ok {
		t.Fatalf("the library does not deny the bad template: %v", err)
	}
	for _, s := range []string{"depends-on.dev/timout", "did you mean depends-on.dev/timeout", "99999"} {
		if !strings.Contains(err.Error(), s) {
			t.Fatalf("library message %q lacks %q", err, s)
		}
	}
	return err.Error()
}

func TestInjectDenied(t *testing.T) {
	p := writeFile(t, "bad.yaml", badDeployment)
	code, out, stderr := runArgs(t, nil, "inject", "-f", p)
	want := fmt.Sprintf("depends-on inject: %s:2 Deployment/web: %s\n", p, webhookMessage(t))
	if code != exitFailed || out != "" || stderr != want {
		t.Errorf("code %d, stdout %q, stderr\n%q\nwant code 1, no output, stderr\n%q", code, out, stderr, want)
	}
}

func TestLint(t *testing.T) {
	bad := writeFile(t, "bad.yaml", badDeployment)
	good := readFile(t, filepath.Join(goldenDir, "all-keys.yaml"))
	goodPath := writeFile(t, "good.yaml", good)

	code, out, stderr := runArgs(t, nil, "lint", goodPath, bad)
	want := lintWarnings(t, goodPath+":1 Pod/web", "all-keys") + fmt.Sprintf("%s:2 Deployment/web: %s\ndepends-on lint: 1 problem\n", bad, webhookMessage(t))
	if code != exitFailed || out != "" || stderr != want {
		t.Errorf("lint good bad: code %d, stdout %q, stderr\n%q\nwant code 1, stderr\n%q", code, out, stderr, want)
	}

	code, out, stderr = runArgs(t, nil, "lint", goodPath, filepath.Join(goldenDir, "init-demo.yaml"), writeFile(t, "plain.json", `{"kind":"Job","metadata":{"name":"j"},"spec":{"template":{"spec":{"containers":[]}}}}`+"\n"+`{"kind":"Service","metadata":{"name":"s"}}`))
	if code != exitOK || stderr != lintWarnings(t, goodPath+":1 Pod/web", "all-keys") ||
		out != "depends-on lint: 3 files, 4 documents, 3 pod templates (2 with depends-on annotations): ok, 1 warning\n" {
		t.Errorf("lint of clean files: code %d, stdout %q, stderr %q", code, out, stderr)
	}
	if code, out, _ := runStdin(t, good, "lint", "-"); code != exitOK || !strings.Contains(out, "1 pod template (1 with") {
		t.Errorf("lint -: code %d, %q", code, out)
	}

	for _, tc := range []struct {
		args   []string
		code   int
		stderr string
	}{
		{[]string{"lint"}, exitUsage, "no FILE given"},
		{[]string{"lint", "--cluster-domain=-bad-", goodPath}, exitUsage, "cluster domain"},
		{[]string{"lint", filepath.Join(t.TempDir(), "missing.yaml")}, exitFailed, "no such file"},
		{[]string{"lint", writeFile(t, "broken.yaml", "kind: Pod\nmetadata: [\n")}, exitFailed, "broken.yaml"},
		{[]string{"inject"}, exitUsage, "-f FILE"},
		{[]string{"inject", "-f", goodPath, "extra"}, exitUsage, "unexpected arguments"},
		{[]string{"inject", "-f", goodPath, "--wait-memory-limit=lots"}, exitUsage, "--wait-memory-limit"},
	} {
		if code, _, stderr := runArgs(t, nil, tc.args...); code != tc.code || !strings.Contains(stderr, tc.stderr) {
			t.Errorf("%q: code %d, stderr %q; want %d with %q", tc.args, code, stderr, tc.code, tc.stderr)
		}
	}
}

// lintWarnings is what lint prints for the warnings golden of name, each line
// prefixed with where.
func lintWarnings(t *testing.T, where, name string) string {
	t.Helper()
	var b strings.Builder
	for _, w := range strings.SplitAfter(readFile(t, filepath.Join(goldenDir, name+".warnings")), "\n") {
		if w != "" {
			b.WriteString(where + ": warning: " + w)
		}
	}
	return b.String()
}

// TestLintWarnings: lint prints the webhook's admission warnings (the goldens'),
// and they do not fail it.
func TestLintWarnings(t *testing.T) {
	for _, name := range []string{"istio-cni-classic", "linkerd-cni-classic", "own-service", "after-pending"} {
		path := filepath.Join(goldenDir, name+".yaml")
		code, out, stderr := runArgs(t, nil, append(append([]string{"lint"}, goldenFlags(t)...), path)...)
		n := strings.Count(readFile(t, filepath.Join(goldenDir, name+".warnings")), "\n")
		meta := object(t, readFile(t, path)).(map[string]any)["metadata"].(map[string]any)
		ref := fmt.Sprintf("Pod/%v", meta["name"])
		if meta["name"] == nil {
			ref = fmt.Sprintf("Pod/%v*", meta["generateName"]) // the generateName only
		}
		if want := lintWarnings(t, path+":1 "+ref, name); code != exitOK || stderr != want || !strings.HasSuffix(out, fmt.Sprintf("ok, %d %s\n", n, plural(n, "warning"))) {
			t.Errorf("lint %s: code %d, stdout %q, stderr\n%s\nwant code 0, stderr\n%s", name, code, out, stderr, want)
		}
	}
}

// TestInjectFlags: the webhook's flags change the output as they change the webhook's.
func TestInjectFlags(t *testing.T) {
	in := filepath.Join(goldenDir, "myapp-pod.yaml")
	code, out, stderr := runArgs(t, nil, "inject", "-f", in, "--wait-image=reg.example/wfs:1", "--cluster-domain=corp.example", "--namespace=other")
	if code != exitOK {
		t.Fatalf("code %d: %s", code, stderr)
	}
	for _, s := range []string{"image: reg.example/wfs:1", ".other.svc.corp.example."} {
		if !strings.Contains(out, s) {
			t.Errorf("output lacks %q:\n%s", s, out)
		}
	}
	if code, _, stderr := runArgs(t, nil, "inject", "--help"); code != exitOK ||
		!strings.Contains(stderr, "-fetch-size-limit") || !strings.Contains(stderr, "Exit codes:") {
		t.Errorf("inject --help: %d %q", code, stderr)
	}
}

// goldenFlags are the readiness settings webhook/testdata was generated with,
// as flags: the goldens of object keys need them.
func goldenFlags(t *testing.T) []string {
	t.Helper()
	ca := filepath.Join(t.TempDir(), "ca.crt")
	if err := os.WriteFile(ca, []byte(testutil.GoldenReadinessCA), 0o600); err != nil {
		t.Fatal(err)
	}
	return []string{"--readiness-url=" + testutil.GoldenReadinessURL, "--readiness-ca-file=" + ca}
}

// docSeparator is a YAML document separator line (not "---" inside a value,
// such as the end of a PEM block).
var docSeparator = regexp.MustCompile(`(?m)^---\n`)
