// Package readiness is the readiness service of depends-on (issue 9): it tells
// injected wait-for-service containers whether a Kubernetes object they depend
// on (a Job, a Deployment, a StatefulSet, a DaemonSet, a Service's endpoints)
// is ready, so the workload itself needs no RBAC.
//
// The pieces are small and separately testable:
//
//   - ParseTarget: a target (`job:app/migrate`), in webhook/target's grammar.
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
	"strings"

	"github.com/depends-on/depends-on/webhook/target"
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

// ParseTarget parses an object target of the one grammar, webhook/target's
// (the webhook builds the arguments with it and wait-for-service sends them as
// parsed): KIND:NAMESPACE/NAME or endpoints:NAMESPACE/NAME[:PORT]. On the wire
// only the canonical spelling (the kind in lower case) is accepted. Errors say
// which part is wrong and why.
func ParseTarget(s string) (Target, error) {
	if kind, _, _ := strings.Cut(s, ":"); !Kind(strings.ToLower(kind)).valid() {
		return Target{}, fmt.Errorf("target %q: unknown kind %q, want one of %s", trim(s), trim(kind), kindList())
	}
	t, err := target.Parse(s)
	switch {
	case err != nil:
		return Target{}, fmt.Errorf("target %q: %v", trim(s), err)
	case t.Name != s:
		return Target{}, fmt.Errorf("target %q: write it %q", trim(s), t.Name)
	}
	return Target{Kind: Kind(t.Kind.String()), Namespace: t.Namespace, Name: t.Object, Port: t.ObjectPort}, nil
}

func (k Kind) valid() bool {
	for _, v := range Kinds {
		if k == v {
			return true
		}
	}
	return false
}

// trim shortens what an error quotes of a long target.
func trim(s string) string {
	if len(s) > 80 {
		return s[:80] + "..."
	}
	return s
}

func kindList() string {
	s := make([]string, len(Kinds))
	for i, k := range Kinds {
		s[i] = string(k)
	}
	return strings.Join(s, ", ")
}
