package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	jsonpatchapply "github.com/evanphx/json-patch/v5"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"

	"github.com/depends-on/depends-on/webhook"
)

// maxInputBytes bounds what one input may hold, so a runaway pipe cannot
// exhaust memory (the API server's own request limit is 3 MiB per object).
const maxInputBytes = 64 << 20

// templatePaths says where each kind keeps its Pod template: the Pod itself
// (an empty path) or the path of its spec.template.
var templatePaths = map[string][]string{
	"Pod":                   {},
	"Deployment":            {"spec", "template"},
	"StatefulSet":           {"spec", "template"},
	"DaemonSet":             {"spec", "template"},
	"ReplicaSet":            {"spec", "template"},
	"ReplicationController": {"spec", "template"},
	"Job":                   {"spec", "template"},
	"PodTemplate":           {"template"},
	"CronJob":               {"spec", "jobTemplate", "spec", "template"},
}

// document is one manifest of an input: its source bytes (YAML or JSON) and
// its JSON form.
type document struct {
	index int // 1-based, in its input
	src   []byte
	json  []byte
}

// header is what a document says about itself.
type header struct {
	Kind     string `json:"kind"`
	Metadata struct {
		Name         string `json:"name"`
		GenerateName string `json:"generateName"`
		Namespace    string `json:"namespace"`
	} `json:"metadata"`
}

func (h *header) ref() string {
	name := h.Metadata.Name
	if name == "" && h.Metadata.GenerateName != "" {
		name = h.Metadata.GenerateName + "*"
	}
	kind := h.Kind
	if kind == "" {
		kind = "(no kind)"
	}
	return kind + "/" + name
}

// readDocuments splits r into documents: a stream of JSON values when it
// starts with '{' or '[', multi-document YAML otherwise. Indexes count the
// documents the YAML reader returns (it skips empty ones, as kubectl does);
// a comment-only document is kept, as JSON null, and passes through.
func readDocuments(r io.Reader) (docs []document, isJSON bool, err error) {
	data, err := io.ReadAll(io.LimitReader(r, maxInputBytes+1))
	if err != nil {
		return nil, false, err
	}
	if len(data) > maxInputBytes {
		return nil, false, fmt.Errorf("input larger than %d bytes", maxInputBytes)
	}
	if t := bytes.TrimLeft(data, " \t\r\n"); len(t) > 0 && (t[0] == '{' || t[0] == '[') {
		dec := json.NewDecoder(bytes.NewReader(data))
		for i := 1; ; i++ {
			var raw json.RawMessage
			if err := dec.Decode(&raw); errors.Is(err, io.EOF) {
				return docs, true, nil
			} else if err != nil {
				return nil, true, fmt.Errorf("document %d: %w", i, err)
			}
			docs = append(docs, document{index: i, src: raw, json: raw})
		}
	}
	yr := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	for i := 1; ; i++ {
		src, err := yr.Read()
		if errors.Is(err, io.EOF) {
			return docs, false, nil
		}
		if err != nil {
			return nil, false, fmt.Errorf("document %d: %w", i, err)
		}
		j, err := yaml.YAMLToJSON(src)
		if err != nil {
			return nil, false, fmt.Errorf("document %d: %w", i, err)
		}
		docs = append(docs, document{index: i, src: src, json: j})
	}
}

// podTemplate is one Pod template found in a document.
type podTemplate struct {
	ref       string // kind/name of the object holding it
	namespace string // the object's, "" if it sets none
	raw       []byte // JSON of the Pod, or of the template (metadata and spec)
}

// visit calls f on every Pod template of the JSON object doc (the object
// itself for a Pod, each item of a List) and returns doc with each template
// replaced by what f returned; changed is false, and doc is returned as is,
// when f changed nothing. Kinds without a Pod template pass through.
func visit(doc []byte, f func(t podTemplate) ([]byte, error)) (out []byte, changed bool, err error) {
	if bytes.Equal(bytes.TrimSpace(doc), []byte("null")) {
		return doc, false, nil
	}
	var h header
	if err := json.Unmarshal(doc, &h); err != nil {
		return nil, false, fmt.Errorf("not a Kubernetes object: %w", err)
	}
	if h.Kind == "List" || (len(h.Kind) > 4 && h.Kind[len(h.Kind)-4:] == "List" && templatePaths[h.Kind[:len(h.Kind)-4]] != nil) {
		return replaceAt(doc, []string{"items"}, func(items []byte) ([]byte, bool, error) {
			var list []json.RawMessage
			if err := json.Unmarshal(items, &list); err != nil {
				return nil, false, fmt.Errorf("%s items: %w", h.ref(), err)
			}
			anyChanged := false
			for i, item := range list {
				out, changed, err := visit(item, f)
				if err != nil {
					return nil, false, err
				}
				if changed {
					list[i], anyChanged = out, true
				}
			}
			if !anyChanged {
				return items, false, nil
			}
			out, err := json.Marshal(list)
			return out, true, err
		})
	}
	p, ok := templatePaths[h.Kind]
	if !ok {
		return doc, false, nil
	}
	return replaceAt(doc, p, func(raw []byte) ([]byte, bool, error) {
		out, err := f(podTemplate{ref: h.ref(), namespace: h.Metadata.Namespace, raw: raw})
		if err != nil {
			return nil, false, err
		}
		if out == nil {
			return raw, false, nil
		}
		return out, true, nil
	})
}

// replaceAt replaces the value at path in the JSON object doc by what f
// returns; a missing path leaves doc unchanged.
func replaceAt(doc []byte, path []string, f func([]byte) ([]byte, bool, error)) ([]byte, bool, error) {
	if len(path) == 0 {
		return f(doc)
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(doc, &obj); err != nil {
		return nil, false, fmt.Errorf("at %s: %w", path[0], err)
	}
	child, ok := obj[path[0]]
	if !ok || bytes.Equal(child, []byte("null")) {
		return doc, false, nil
	}
	out, changed, err := replaceAt(child, path[1:], f)
	if err != nil || !changed {
		return doc, false, err
	}
	obj[path[0]] = out
	doc, err = json.Marshal(obj)
	return doc, true, err
}

// injectTemplate returns the template raw as the webhook would leave it, or
// nil when the webhook would not change it. A denial is an *webhook.InvalidError.
func injectTemplate(in *webhook.Injector, t podTemplate, defaultNamespace string) ([]byte, error) {
	pod, err := webhook.ReadPod(t.raw)
	if err != nil {
		return nil, err
	}
	// As the webhook's handler: no annotations, no patch.
	if !webhook.HasAnnotations(pod.Annotations) {
		return nil, nil
	}
	ns := t.namespace
	if ns == "" {
		ns = defaultNamespace
	}
	ops, err := in.Patch(pod, ns)
	if err != nil || len(ops) == 0 {
		return nil, err
	}
	patch, err := json.Marshal(ops)
	if err != nil {
		return nil, err
	}
	p, err := jsonpatchapply.DecodePatch(patch)
	if err != nil {
		return nil, fmt.Errorf("decode patch: %w", err)
	}
	out, err := p.Apply(t.raw)
	if err != nil {
		return nil, fmt.Errorf("apply patch %s: %w", patch, err)
	}
	return out, nil
}
