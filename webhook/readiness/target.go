// Package readiness is the readiness service of depends-on (issue 9): it tells
// injected wait-for-service containers whether a Kubernetes object they depend
// on (a Job, a Deployment, a StatefulSet, a DaemonSet, a Service's endpoints)
// is ready, so the workload itself needs no RBAC.
//
// The pieces are small and separately testable:
//
//   - ParseTarget: the wire grammar of a target (`job:app/migrate`).
//   - EvaluateJob, EvaluateDeployment, ...: pure readiness rules over typed objects.
//   - TokenReviewAuthenticator: projected ServiceAccount tokens checked with TokenReview.
//   - NamespaceAuthorizer: own namespace, or a namespace labelled depends-on.dev/shared=true.
//   - Watches: one on-demand, shared, ref-counted API watch per target.
//   - ConfigMapCompletions: Job completions remembered across restarts.
//   - EventNotifier: rate-limited Events on the waiting Pod.
//   - Handler: the HTTP API (GET /v1/wait), tying them together.
package readiness

import (
	"fmt"
	"strconv"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation"
)

// Kind is the kind of object a target names, as spelled on the wire.
type Kind string

// The kinds a target may name.
const (
	KindJob         Kind = "job"
	KindDeployment  Kind = "deployment"
	KindStatefulSet Kind = "statefulset"
	KindDaemonSet   Kind = "daemonset"
	KindEndpoints   Kind = "endpoints"
)

// Kinds lists every Kind in the order used by messages.
var Kinds = []Kind{KindJob, KindDeployment, KindStatefulSet, KindDaemonSet, KindEndpoints}

// maxTargetLen bounds the work done on a target string: a namespace (63), a
// name (253), a port name (15) and separators fit well below it.
const maxTargetLen = 400

// Target is one object a Pod waits for.
type Target struct {
	Kind      Kind
	Namespace string
	Name      string
	// Port is only set for KindEndpoints: a port number or an EndpointSlice port name.
	Port string
}

// String returns the wire form, which ParseTarget accepts.
func (t Target) String() string {
	s := string(t.Kind) + ":" + t.Namespace + "/" + t.Name
	if t.Port != "" {
		s += ":" + t.Port
	}
	return s
}

// Display is how Events and logs name the target: `job/migrate`, or
// `job/shared/migrate` when it is in another namespace than the Pod's.
func (t Target) Display(podNamespace string) string {
	s := string(t.Kind) + "/"
	if t.Namespace != podNamespace {
		s += t.Namespace + "/"
	}
	s += t.Name
	if t.Port != "" {
		s += ":" + t.Port
	}
	return s
}

// ParseTarget parses `KIND:NAMESPACE/NAME` or, for endpoints,
// `endpoints:NAMESPACE/NAME[:PORT]`. Errors say which part is wrong and why.
func ParseTarget(s string) (Target, error) {
	if len(s) > maxTargetLen {
		return Target{}, fmt.Errorf("target is %d characters long, at most %d allowed", len(s), maxTargetLen)
	}
	kind, rest, ok := strings.Cut(s, ":")
	if !ok || rest == "" {
		return Target{}, fmt.Errorf("target %q: want KIND:NAMESPACE/NAME with KIND one of %s", s, kindList())
	}
	t := Target{Kind: Kind(kind)}
	if !t.Kind.valid() {
		return Target{}, fmt.Errorf("target %q: unknown kind %q, want one of %s", s, kind, kindList())
	}
	ns, name, ok := strings.Cut(rest, "/")
	if !ok {
		return Target{}, fmt.Errorf("target %q: want %s:NAMESPACE/NAME", s, kind)
	}
	if t.Kind == KindEndpoints {
		if n, port, ok := strings.Cut(name, ":"); ok {
			name, t.Port = n, port
			if err := validPort(port); err != nil {
				return Target{}, fmt.Errorf("target %q: port %q: %v", s, port, err)
			}
		}
	}
	if errs := validation.IsDNS1123Label(ns); len(errs) > 0 {
		return Target{}, fmt.Errorf("target %q: namespace %q: %s", s, ns, strings.Join(errs, "; "))
	}
	var errs []string
	if t.Kind == KindEndpoints {
		errs = validation.IsDNS1035Label(name) // a Service name
	} else {
		errs = validation.IsDNS1123Subdomain(name)
	}
	if len(errs) > 0 {
		return Target{}, fmt.Errorf("target %q: name %q: %s", s, name, strings.Join(errs, "; "))
	}
	t.Namespace, t.Name = ns, name
	return t, nil
}

func validPort(p string) error {
	if p == "" {
		return fmt.Errorf("empty")
	}
	if p[0] >= '0' && p[0] <= '9' {
		n, err := strconv.Atoi(p)
		if err != nil || n < 1 || n > 65535 || strconv.Itoa(n) != p {
			return fmt.Errorf("want a number 1-65535 or a port name")
		}
		return nil
	}
	if errs := validation.IsValidPortName(p); len(errs) > 0 {
		return fmt.Errorf("%s", strings.Join(errs, "; "))
	}
	return nil
}

func (k Kind) valid() bool {
	for _, v := range Kinds {
		if k == v {
			return true
		}
	}
	return false
}

func kindList() string {
	s := make([]string, len(Kinds))
	for i, k := range Kinds {
		s[i] = string(k)
	}
	return strings.Join(s, ", ")
}
