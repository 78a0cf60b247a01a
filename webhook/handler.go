package webhook

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync/atomic"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"
)

// Decision is the outcome of one admission request, for metrics.
type Decision string

// The decisions a Handler and a ReviewHandler make.
const (
	// DecisionAllowed: nothing to do (not a Pod create, no annotation, already injected).
	DecisionAllowed Decision = "allowed"
	// DecisionPatched: allowed with the injection patch.
	DecisionPatched Decision = "patched"
	// DecisionDenied: the annotations are invalid.
	DecisionDenied Decision = "denied"
	// DecisionErrored: the request could not be answered (see the Reason).
	DecisionErrored Decision = "errored"
)

// Reason says why a decision was made.
type Reason string

// The reasons, by decision.
const (
	// Allowed.
	ReasonNotPodCreate    Reason = "not-pod-create"
	ReasonNoAnnotations   Reason = "no-annotations"
	ReasonAlreadyInjected Reason = "already-injected"
	// Patched.
	ReasonInjected Reason = "injected"
	// ReasonSatisfied: only the record, the object dependencies are satisfied (satisfied.go).
	ReasonSatisfied Reason = "satisfied"
	// Denied.
	ReasonInvalid Reason = "invalid"
	// Errored.
	ReasonMethod      Reason = "method"       // not a POST
	ReasonContentType Reason = "content-type" // not application/json
	ReasonOversize    Reason = "oversize"     // body above ReviewOptions.MaxRequestBytes
	ReasonBusy        Reason = "busy"         // no room under ReviewOptions.MaxInFlightBytes in time
	ReasonRead        Reason = "read"         // the body could not be read (slow client, closed connection)
	ReasonMalformed   Reason = "malformed"    // not an AdmissionReview request, or its object is not a Pod
	ReasonCanceled    Reason = "canceled"     // the API server gave up before the answer was ready
	ReasonPanic       Reason = "panic"        // recovered panic in the handler
	ReasonInternal    Reason = "internal"     // any other failure of ours
)

// Outcome is one decision and its reason.
type Outcome struct {
	Decision Decision
	Reason   Reason
}

// Outcomes lists every outcome a Handler and a ReviewHandler record, so that
// counters can start at zero.
func Outcomes() []Outcome {
	return []Outcome{
		{DecisionAllowed, ReasonNotPodCreate}, {DecisionAllowed, ReasonNoAnnotations}, {DecisionAllowed, ReasonAlreadyInjected},
		{DecisionPatched, ReasonInjected}, {DecisionPatched, ReasonSatisfied},
		{DecisionDenied, ReasonInvalid},
		{DecisionErrored, ReasonMethod}, {DecisionErrored, ReasonContentType}, {DecisionErrored, ReasonOversize},
		{DecisionErrored, ReasonBusy}, {DecisionErrored, ReasonRead}, {DecisionErrored, ReasonMalformed},
		{DecisionErrored, ReasonCanceled}, {DecisionErrored, ReasonPanic}, {DecisionErrored, ReasonInternal},
	}
}

// Recorder observes outcomes; the server counts them in Prometheus.
type Recorder interface {
	Record(Outcome)
}

// Handler is the admission.Handler for Pod creation.
type Handler struct {
	// injector is swapped by SetInjector (a rotated readiness CA).
	injector atomic.Pointer[Injector]
	recorder Recorder
	// satisfier and satisfiedDeadline: see HandlerOptions.
	satisfier         Satisfier
	satisfiedDeadline time.Duration
}

// HandlerOptions configures a Handler.
type HandlerOptions struct {
	// Recorder, if set, is told every decision.
	Recorder Recorder
	// Satisfier, if set, lets a Pod whose dependencies are all objects that
	// are satisfied now be admitted without injection (satisfied.go).
	Satisfier Satisfier
	// SatisfiedDeadline bounds each Satisfier call; default DefaultSatisfiedDeadline.
	SatisfiedDeadline time.Duration
}

// NewHandler returns a Handler that injects with in.
func NewHandler(in *Injector, opts HandlerOptions) *Handler {
	setDefault(&opts.SatisfiedDeadline, DefaultSatisfiedDeadline)
	h := &Handler{recorder: opts.Recorder, satisfier: opts.Satisfier, satisfiedDeadline: opts.SatisfiedDeadline}
	h.injector.Store(in)
	return h
}

// SetInjector makes the requests that start from now on inject with in.
func (h *Handler) SetInjector(in *Injector) { h.injector.Store(in) }

var _ admission.Handler = (*Handler)(nil)

var podKind = metav1.GroupVersionKind{Group: "", Version: "v1", Kind: "Pod"}

// Handle implements admission.Handler.
func (h *Handler) Handle(ctx context.Context, req admission.Request) admission.Response {
	resp, outcome := h.handle(ctx, req)
	if h.recorder != nil {
		h.recorder.Record(outcome)
	}
	return resp
}

func (h *Handler) handle(ctx context.Context, req admission.Request) (admission.Response, Outcome) {
	log := logf.FromContext(ctx)
	if req.Operation != admissionv1.Create || req.Kind != podKind || req.SubResource != "" {
		return admission.Allowed("not a Pod creation"), Outcome{DecisionAllowed, ReasonNotPodCreate}
	}
	if len(req.Object.Raw) == 0 {
		return admission.Errored(http.StatusBadRequest, errors.New("request has no object")), Outcome{DecisionErrored, ReasonMalformed}
	}
	// Only the parts injection reads are decoded (see ReadPod).
	pod, err := ReadPod(req.Object.Raw)
	if err != nil {
		return admission.Errored(http.StatusBadRequest, err), Outcome{DecisionErrored, ReasonMalformed}
	}
	if !HasAnnotations(pod.Annotations) {
		return admission.Allowed("no depends-on.dev/ annotations"), Outcome{DecisionAllowed, ReasonNoAnnotations}
	}
	// Each step is bounded, but a caller that gave up needs no answer.
	if err := ctx.Err(); err != nil {
		return canceled(err), Outcome{DecisionErrored, ReasonCanceled}
	}
	m, skipped, err := h.mutate(ctx, pod, req.Namespace)
	ops := m.Ops
	if err != nil {
		var invalid *InvalidError
		if errors.As(err, &invalid) {
			log.Info("denied", "pod", podRef(pod), "reason", err.Error())
			return denied(err.Error()), Outcome{DecisionDenied, ReasonInvalid}
		}
		log.Error(err, "injection failed", "pod", podRef(pod))
		return admission.Errored(http.StatusInternalServerError, err), Outcome{DecisionErrored, ReasonInternal}
	}
	if len(ops) == 0 {
		// Warnings here too: a reinvocation is when a mesh injected after us is visible.
		return admission.Allowed("already injected").WithWarnings(m.Warnings...), Outcome{DecisionAllowed, ReasonAlreadyInjected}
	}
	if err := ctx.Err(); err != nil {
		return canceled(err), Outcome{DecisionErrored, ReasonCanceled}
	}
	if log := log.V(1); log.Enabled() {
		msg := "injected"
		if skipped {
			msg = "not injected: object dependencies satisfied"
		}
		log.Info(msg, "pod", podRef(pod), "operations", len(ops))
	}
	// Encoded here rather than by admission.Patched's Response.Complete: the
	// values are JSON already (see encodePatch).
	patch, err := encodePatch(ops)
	if err != nil {
		log.Error(err, "encoding the patch failed", "pod", podRef(pod))
		return admission.Errored(http.StatusInternalServerError, err), Outcome{DecisionErrored, ReasonInternal}
	}
	resp := admission.Allowed("").WithWarnings(m.Warnings...)
	pt := admissionv1.PatchTypeJSONPatch
	resp.Patch, resp.PatchType = patch, &pt
	if skipped {
		return resp, Outcome{DecisionPatched, ReasonSatisfied}
	}
	return resp, Outcome{DecisionPatched, ReasonInjected}
}

// canceled answers a request whose caller gave up (or whose deadline passed).
func canceled(err error) admission.Response {
	return admission.Errored(http.StatusServiceUnavailable, fmt.Errorf("gave up: %w", err))
}

// denied answers 422 Invalid, the code the API server uses for invalid objects,
// so clients show "is invalid" with our message.
func denied(msg string) admission.Response {
	return admission.Response{AdmissionResponse: admissionv1.AdmissionResponse{
		Allowed: false,
		Result: &metav1.Status{
			Status:  metav1.StatusFailure,
			Code:    http.StatusUnprocessableEntity,
			Reason:  metav1.StatusReasonInvalid,
			Message: msg,
		},
	}}
}
