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

// SatisfiedFunc is the decision input of MutateChecked: asked once per Pod,
// with the Pod's object targets, only when they are all its dependencies.
type SatisfiedFunc func(targets []string) bool

// MutateChecked is Mutate with the readiness service's view: when satisfied
// says every object target of an object-only Pod is satisfied, the patch adds
// the record only (skipped is then true). A Pod that carries a record keeps
// its decision while its dependencies are unchanged, so a reinvocation or a
// re-created Pod gets the same answer, and satisfied is not asked. A nil
// satisfied (the shortcut off) is Mutate: everything is injected.
func (in *Injector) MutateChecked(pod *Pod, namespace string, satisfied SatisfiedFunc) (m Mutation, skipped bool, err error) {
	r, err := in.computeWith(pod, namespace, satisfied)
	if err != nil {
		return Mutation{}, false, err
	}
	ops, err := in.ops(r)
	if err != nil {
		return Mutation{}, false, err
	}
	return Mutation{Ops: ops, Warnings: r.warnings}, r.skipped, nil
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

// satisfiedStatus returns the record of a skipped injection, or nil to
// inject: spec must be object-only, the record must fit, and either prev
// already records the same targets as satisfied or satisfied says so now.
// A previous injection (prev without Satisfied) is kept: the decision is
// taken once. built is the record the injection would write (its hashes).
func satisfiedStatus(spec *Spec, prev, built *Status, satisfied SatisfiedFunc) *Status {
	if satisfied == nil || built == nil {
		return nil
	}
	targets := skippable(spec)
	if targets == nil {
		return nil
	}
	st := &Status{Version: statusVersion, InitContainers: []string{}, Hash: built.Hash, Config: built.Config,
		Satisfied: &SatisfiedRecord{Checked: targets}}
	if len(st.encode()) > maxRecordBytes {
		return nil // a later call could not read it back: inject
	}
	switch {
	case prev != nil && prev.Satisfied != nil && slices.Equal(prev.Satisfied.Checked, targets):
	case prev != nil && prev.Satisfied == nil, !satisfied(targets):
		return nil
	}
	return st
}

// mutate is Injector.Mutate, or MutateChecked with h's Satisfier: any doubt
// (an error, a deadline passed, a target not seen) injects.
func (h *Handler) mutate(ctx context.Context, pod *Pod, namespace string) (Mutation, bool, error) {
	in := h.injector.Load()
	if h.satisfier == nil {
		m, err := in.Mutate(pod, namespace)
		return m, false, err
	}
	if namespace == "" {
		namespace = pod.Namespace
	}
	return in.MutateChecked(pod, namespace, func(targets []string) bool {
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
