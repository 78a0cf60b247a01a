package webhook

// Skipping satisfied dependencies (issue 14): when every dependency of a Pod
// is an object dependency (jobs, workloads, endpoints) and the readiness
// service already sees all of them satisfied, nothing is injected; the record
// says what was checked. Network waits (services, tcp, http) and fetches
// always inject: the webhook never connects to user-given addresses.

import (
	"context"
	"slices"
	"time"

	jsonpatch "gomodules.xyz/jsonpatch/v2"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
)

// DefaultSatisfiedDeadline bounds a Satisfier call on the admission path: a
// cache miss that takes longer injects (the Pod then waits as before).
const DefaultSatisfiedDeadline = 150 * time.Millisecond

// Verdict is a Satisfier's answer for all the targets of one Pod.
type Verdict string

// The verdicts. Only VerdictSatisfied skips the injection.
const (
	VerdictSatisfied    Verdict = "satisfied"
	VerdictNotSatisfied Verdict = "not-satisfied"
	// VerdictUnknown: the readiness service has not seen every target yet (or
	// did not answer in time).
	VerdictUnknown Verdict = "unknown"
)

// Satisfier tells whether object targets (wait-for-service arguments such as
// job:app/migrate) are satisfied now, for a Pod of namespace. It is called on
// the admission path: it must answer within ctx's deadline, and any error
// means "inject". webhook/satisfied is the real one.
type Satisfier interface {
	Satisfied(ctx context.Context, namespace string, targets []string) (Verdict, error)
}

// SatisfiedRecord is the part of the record (Status.Satisfied) that says the
// injection was skipped: the targets the readiness service saw satisfied.
type SatisfiedRecord struct {
	Checked []string `json:"checked"`
}

// SatisfiedFunc is the decision input of PatchChecked: asked once per Pod,
// with the Pod's object targets, only when they are all its dependencies.
type SatisfiedFunc func(targets []string) bool

// PatchChecked is Patch with the readiness service's view: when satisfied
// says every object target of an object-only Pod is satisfied, the patch adds
// the record only (skipped is then true). A Pod that carries a record keeps
// its decision while its dependencies are unchanged, so a reinvocation or a
// re-created Pod gets the same answer, and satisfied is not asked. A nil
// satisfied (the shortcut off) is Patch: everything is injected.
func (in *Injector) PatchChecked(pod *Pod, namespace string, satisfied SatisfiedFunc) (ops []jsonpatch.Operation, skipped bool, err error) {
	r, err := in.computeWith(pod, namespace, satisfied)
	if err != nil {
		return nil, false, err
	}
	ops, err = in.patchFor(pod, r)
	return ops, r.skipped, err
}

// skippable returns the object targets of spec when they are all it asks
// for (no network wait, no fetch), else nil.
func skippable(spec *Spec) []string {
	if spec == nil || len(spec.Waits) == 0 || len(spec.Fetches) > 0 {
		return nil
	}
	targets := make([]string, 0, len(spec.Waits))
	for _, w := range spec.Waits {
		if !IsObjectKey(w.Annotation) {
			return nil
		}
		targets = append(targets, w.Arg)
	}
	return targets
}

// applySatisfied writes the skip record on pod (a copy of the base Pod) and
// returns true when the injection is skipped: spec is object-only, the
// record fits, and either prev already records the same targets as
// satisfied or satisfied says so now. A previous injection (prev without
// Satisfied) is kept: the decision is taken once.
func applySatisfied(pod *Pod, spec *Spec, prev *Status, satisfied SatisfiedFunc) bool {
	if satisfied == nil {
		return false
	}
	targets := skippable(spec)
	if targets == nil {
		return false
	}
	st := &Status{Version: 1, InitContainers: []string{}, Satisfied: &SatisfiedRecord{Checked: targets}}
	record := st.encode()
	if len(record) > maxRecordBytes {
		return false // a later call could not read it back: inject
	}
	switch {
	case prev != nil && prev.Satisfied != nil && slices.Equal(prev.Satisfied.Checked, targets):
	case prev != nil && prev.Satisfied == nil, !satisfied(targets):
		return false
	}
	if pod.Annotations == nil {
		pod.Annotations = map[string]string{}
	}
	pod.Annotations[AnnotationInjected] = record
	return true
}

// patch is Injector.Patch, or PatchChecked with h's Satisfier: any doubt
// (an error, a deadline passed, a target not seen) injects.
func (h *Handler) patch(ctx context.Context, pod *Pod, namespace string) ([]jsonpatch.Operation, bool, error) {
	if h.satisfier == nil {
		ops, err := h.injector.Patch(pod, namespace)
		return ops, false, err
	}
	if namespace == "" {
		namespace = pod.Namespace
	}
	return h.injector.PatchChecked(pod, namespace, func(targets []string) bool {
		ctx, cancel := context.WithTimeout(ctx, h.satisfiedDeadline)
		defer cancel()
		v, err := h.satisfier.Satisfied(ctx, namespace, targets)
		if err != nil {
			logf.FromContext(ctx).V(1).Info("injecting: no satisfied verdict", "pod", podRef(pod), "error", err.Error())
			return false
		}
		return v == VerdictSatisfied
	})
}
