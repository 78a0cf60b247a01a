package target

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// MaxObjectLen bounds an object target argument: a namespace (63), a name
// (253), a port (63) and the separators fit well below it.
const MaxObjectLen = 400

// objectKind is the kinds table entry of an object kind.
func objectKind(k Kind, name, help string) kindDef {
	syntax := name + ":NS/NAME"
	if k == Endpoints {
		syntax += "\n" + name + ":NS/NAME:PORT"
	}
	return kindDef{
		kind: k, name: name, prefixes: []string{name + ":"},
		syntax: syntax, help: help,
		parse: func(arg, rest string) (*Target, error) { return parseObject(k, name, arg, rest) },
	}
}

// parseObject parses NAMESPACE/NAME (and, for Endpoints, an optional :PORT).
// Namespace, name and port are taken as written (Kubernetes names are lower case).
func parseObject(k Kind, kind, arg, rest string) (*Target, error) {
	if len(arg) > MaxObjectLen {
		return nil, fmt.Errorf("target is %d characters long, at most %d allowed", len(arg), MaxObjectLen)
	}
	want := "want " + kind + ":NAMESPACE/NAME"
	if k == Endpoints {
		want += "[:PORT]"
	}
	namespace, name, found := strings.Cut(rest, "/")
	if !found {
		return nil, errors.New(want)
	}
	t := &Target{Kind: k, Arg: arg, Namespace: namespace}
	if k == Endpoints {
		if n, port, found := strings.Cut(name, ":"); found {
			if err := checkObjectPort(port); err != nil {
				return nil, err
			}
			name, t.ObjectPort = n, port
		}
	}
	t.Object = name
	if namespace == "" {
		return nil, fmt.Errorf("missing namespace: %s", want)
	}
	if msg := dns1123Label(namespace); msg != "" {
		return nil, fmt.Errorf("namespace %q is not valid: %s", namespace, msg)
	}
	if name == "" {
		return nil, fmt.Errorf("missing name: %s", want)
	}
	if k == Endpoints {
		if msg := dns1035Label(name); msg != "" {
			return nil, fmt.Errorf("service name %q is not valid: %s", name, msg)
		}
	} else if msg := dns1123Subdomain(name); msg != "" {
		return nil, fmt.Errorf("%s name %q is not valid: %s", kind, name, msg)
	}
	t.Name = kind + ":" + namespace + "/" + name
	if t.ObjectPort != "" {
		t.Name += ":" + t.ObjectPort
	}
	return t, nil
}

// checkObjectPort accepts a port number 1-65535 (without leading zeros, so
// that one port has one spelling) or a port name: a DNS-1123 label, as Service
// port names (and so EndpointSlice port names) are.
func checkObjectPort(p string) error {
	if p == "" {
		return errors.New("missing port after ':'")
	}
	if isDigits(p) {
		n, err := strconv.ParseUint(p, 10, 16)
		if err != nil || n == 0 || p[0] == '0' {
			return fmt.Errorf("bad port %q (want 1-65535 or a port name)", p)
		}
		return nil
	}
	if msg := dns1123Label(p); msg != "" {
		return fmt.Errorf("port name %q is not valid: %s", p, msg)
	}
	return nil
}

func isDigits(s string) bool {
	for _, c := range []byte(s) {
		if c < '0' || c > '9' {
			return false
		}
	}
	return s != ""
}

// The three name rules of Kubernetes (k8s.io/apimachinery/pkg/util/validation),
// restated to keep wait-for-service free of that module; the tests check them
// against apimachinery. Each returns "" when s is valid, else why not.

func dns1123Label(s string) string {
	if len(s) > 63 {
		return "must be no more than 63 characters"
	}
	if !isLabel(s, false) {
		return "must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character"
	}
	return ""
}

func dns1035Label(s string) string {
	if len(s) > 63 {
		return "must be no more than 63 characters"
	}
	if !isLabel(s, true) {
		return "must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character"
	}
	return ""
}

func dns1123Subdomain(s string) string {
	if len(s) > 253 {
		return "must be no more than 253 characters"
	}
	for label := range strings.SplitSeq(s, ".") {
		if !isLabel(label, false) {
			return "must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character"
		}
	}
	return ""
}

// isLabel reports whether s is [a-z0-9]([-a-z0-9]*[a-z0-9])?, starting with a
// letter if letterFirst. (Length is checked by the callers.)
func isLabel(s string, letterFirst bool) bool {
	if s == "" {
		return false
	}
	for i, c := range []byte(s) {
		alnum := c >= 'a' && c <= 'z' || c >= '0' && c <= '9'
		switch {
		case i == 0 && letterFirst && !(c >= 'a' && c <= 'z'):
			return false
		case (i == 0 || i == len(s)-1) && !alnum:
			return false
		case !alnum && c != '-':
			return false
		}
	}
	return true
}
