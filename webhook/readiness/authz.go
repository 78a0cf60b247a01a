package readiness

import (
	"errors"
	"fmt"

	corev1 "k8s.io/api/core/v1"
)

// LabelShared on a namespace lets Pods of other namespaces wait for its objects.
const LabelShared = "depends-on.dev/shared"

// ErrForbidden wraps every refusal of NamespaceAuthorizer (403).
var ErrForbidden = errors.New("forbidden")

// NamespaceGetter returns a namespace from a cache; (nil, nil) if absent.
type NamespaceGetter interface {
	GetNamespace(name string) (*corev1.Namespace, error)
}

// NamespaceAuthorizer lets a Pod ask about its own namespace, and about
// another namespace only if that one carries depends-on.dev/shared=true.
type NamespaceAuthorizer struct {
	Namespaces NamespaceGetter
}

// Authorize returns nil if who may ask about objects in namespace ns.
func (a NamespaceAuthorizer) Authorize(who Identity, ns string) error {
	if ns == who.Namespace {
		return nil
	}
	n, err := a.Namespaces.GetNamespace(ns)
	if err != nil {
		return fmt.Errorf("namespace %q: %w", ns, err)
	}
	// An absent namespace gets the same answer as an unshared one: no probing.
	if n == nil || n.Labels[LabelShared] != "true" {
		return fmt.Errorf("%w: namespace %q does not share its objects with namespace %q: label it %s=true",
			ErrForbidden, ns, who.Namespace, LabelShared)
	}
	return nil
}
