package webhook

import (
	"bytes"
	"encoding/json"
	"fmt"
	"unicode/utf8"

	jsonpatch "gomodules.xyz/jsonpatch/v2"
	corev1 "k8s.io/api/core/v1"
)

// The injected containers are the same for every Pod but for their args, and
// encoding a corev1.Container with encoding/json (reflection, the Quantity
// marshalers, and compaction of each nested marshaler's output) was the
// largest cost of a patch. So each is encoded once, at NewInjector, with a
// placeholder for its args, and a patch only encodes the args.

// containerTemplate is the JSON of a container around its "args" value.
type containerTemplate struct {
	prefix, suffix []byte
}

const argsPlaceholder = "depends-on-args-placeholder"

func (in *Injector) buildTemplates() error {
	in.templates = map[string]containerTemplate{}
	for _, c := range []corev1.Container{
		in.container(WaitContainerName, []string{argsPlaceholder}),
		in.fetchContainer([]string{argsPlaceholder}),
		in.readinessContainer(WaitContainerName, []string{argsPlaceholder}),
	} {
		raw, err := json.Marshal(c)
		if err != nil {
			return fmt.Errorf("encode the %s container: %w", c.Name, err)
		}
		hole := []byte(`"args":["` + argsPlaceholder + `"]`)
		if bytes.Count(raw, hole) != 1 {
			return fmt.Errorf("encode the %s container: no single args value in %s", c.Name, raw)
		}
		i := bytes.Index(raw, hole)
		in.templates[templateKey(&c)] = containerTemplate{
			prefix: raw[:i+len(`"args":`)],
			suffix: raw[i+len(hole):],
		}
	}
	return nil
}

// containerJSON returns the JSON of c, an injected container as apply builds
// it: byte for byte what json.Marshal(c) returns (TestContainerJSON), from the
// template of its name and its args.
func (in *Injector) containerJSON(c *corev1.Container) (json.RawMessage, error) {
	t, ok := in.templates[templateKey(c)]
	if !ok || len(c.Args) == 0 { // no args: the field is omitted
		return json.Marshal(c)
	}
	args, err := json.Marshal(c.Args)
	if err != nil {
		return nil, err
	}
	out := make([]byte, 0, len(t.prefix)+len(args)+len(t.suffix))
	out = append(append(append(out, t.prefix...), args...), t.suffix...)
	return out, nil
}

// templateKey names the template of c: its name, and for the wait container
// whether it has the readiness mount (readinessContainer).
func templateKey(c *corev1.Container) string {
	if len(c.VolumeMounts) > 0 && c.Name == WaitContainerName {
		return c.Name + "+readiness"
	}
	return c.Name
}

// containersJSON encodes a list of injected containers as a JSON array.
func (in *Injector) containersJSON(cs []corev1.Container) (json.RawMessage, error) {
	out := []byte{'['}
	for i := range cs {
		if i > 0 {
			out = append(out, ',')
		}
		c, err := in.containerJSON(&cs[i])
		if err != nil {
			return nil, err
		}
		out = append(out, c...)
	}
	return append(out, ']'), nil
}

// encodePatch encodes ops as json.Marshal(ops) does (TestEncodePatch), without
// gomodules.xyz/jsonpatch's MarshalJSON, which encodes each operation through
// a second json.Marshal and so validates and compacts every value twice more.
// json.RawMessage values are appended as they are: they come from
// containerJSON, i.e. from json.Marshal.
func encodePatch(ops []jsonpatch.Operation) ([]byte, error) {
	size := 2
	for _, op := range ops {
		size += 40 + len(op.Path)
		if raw, ok := op.Value.(json.RawMessage); ok {
			size += len(raw)
		}
	}
	buf := make([]byte, 0, size)
	buf = append(buf, '[')
	for i, op := range ops {
		if i > 0 {
			buf = append(buf, ',')
		}
		buf = append(buf, `{"op":`...)
		buf = appendJSONString(buf, op.Operation)
		buf = append(buf, `,"path":`...)
		buf = appendJSONString(buf, op.Path)
		// Like jsonpatch: add and replace always have a value, even null.
		if op.Value != nil || op.Operation == "add" || op.Operation == "replace" {
			buf = append(buf, `,"value":`...)
			if raw, ok := op.Value.(json.RawMessage); ok {
				buf = append(buf, raw...)
			} else {
				v, err := json.Marshal(op.Value)
				if err != nil {
					return nil, err
				}
				buf = append(buf, v...)
			}
		}
		buf = append(buf, '}')
	}
	return append(buf, ']'), nil
}

// appendJSONString appends s as a JSON string, as encoding/json writes it.
func appendJSONString(buf []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= utf8.RuneSelf || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			v, _ := json.Marshal(s) // a string always encodes
			return append(buf, v...)
		}
	}
	buf = append(buf, '"')
	buf = append(buf, s...)
	return append(buf, '"')
}
