package main

// The grammar of object targets, the arguments answered by the depends-on
// readiness service. Self-contained (standard library only) so that it can
// move into the shared target package as it is.

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// objectKinds are the object target prefixes, as the readiness service's
// /v1/wait takes them.
var objectKinds = []string{"job", "deployment", "statefulset", "daemonset", "endpoints"}

// objectTarget is one parsed object target argument.
type objectTarget struct {
	Kind      string // one of objectKinds
	Namespace string // a DNS-1123 label
	Name      string // a DNS-1123 subdomain; a DNS-1035 label for endpoints
	Port      string // endpoints only, optional: a number 1-65535 or a port name
}

// String is the canonical argument, which is also what /v1/wait is asked.
func (o objectTarget) String() string {
	s := o.Kind + ":" + o.Namespace + "/" + o.Name
	if o.Port != "" {
		s += ":" + o.Port
	}
	return s
}

// parseObjectTarget parses
//
//	job:NAMESPACE/NAME
//	deployment:NAMESPACE/NAME
//	statefulset:NAMESPACE/NAME
//	daemonset:NAMESPACE/NAME
//	endpoints:NAMESPACE/NAME[:PORT]
//
// ok reports whether arg is an object target at all (its prefix is one of
// the kinds, in any case); err is set when it is one but malformed. The kind
// is matched case-insensitively and normalised to lower case; namespace, name
// and port are taken as written (Kubernetes names are lower case).
func parseObjectTarget(arg string) (o objectTarget, ok bool, err error) {
	prefix, rest, found := strings.Cut(arg, ":")
	if !found {
		return objectTarget{}, false, nil
	}
	kind := strings.ToLower(prefix)
	known := false
	for _, k := range objectKinds {
		if kind == k {
			known = true
			break
		}
	}
	if !known {
		return objectTarget{}, false, nil
	}
	want := "want " + kind + ":NAMESPACE/NAME"
	if kind == "endpoints" {
		want += "[:PORT]"
	}
	namespace, name, found := strings.Cut(rest, "/")
	if !found {
		return objectTarget{}, true, errors.New(want)
	}
	o = objectTarget{Kind: kind, Namespace: namespace}
	if kind == "endpoints" {
		name, o.Port, found = strings.Cut(name, ":")
		if found {
			if err := checkObjectPort(o.Port); err != nil {
				return objectTarget{}, true, err
			}
		}
	}
	o.Name = name
	if namespace == "" {
		return objectTarget{}, true, fmt.Errorf("missing namespace: %s", want)
	}
	if msg := dns1123Label(namespace); msg != "" {
		return objectTarget{}, true, fmt.Errorf("namespace %q is not valid: %s", namespace, msg)
	}
	if name == "" {
		return objectTarget{}, true, fmt.Errorf("missing name: %s", want)
	}
	if kind == "endpoints" {
		if msg := dns1035Label(name); msg != "" {
			return objectTarget{}, true, fmt.Errorf("service name %q is not valid: %s", name, msg)
		}
	} else if msg := dns1123Subdomain(name); msg != "" {
		return objectTarget{}, true, fmt.Errorf("%s name %q is not valid: %s", kind, name, msg)
	}
	return o, true, nil
}

// checkObjectPort accepts a port number 1-65535 (written without leading
// zeros, so that one port has one spelling) or a port name: a DNS-1123 label,
// as Service port names (and so EndpointSlice port names) are.
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
// restated here to keep wait-for-service free of that module; the tests check
// them against apimachinery. Each returns "" when s is valid, else why not.

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
