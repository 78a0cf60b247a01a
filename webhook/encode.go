package webhook

import (
	"bytes"
	"encoding/json"
	"fmt"

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
		in.templates[c.Name] = containerTemplate{
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
	t, ok := in.templates[c.Name]
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
