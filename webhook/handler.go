package webhook

import (
	"context"
	"errors"
	"net/http"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"
)

// Decision is the outcome of one admission request, for metrics.
type Decision string

// The decisions a Handler makes.
const (
	// DecisionAllowed: nothing to do (not a Pod create, no annotation, already injected).
	DecisionAllowed Decision = "allowed"
	// DecisionPatched: allowed with the injection patch.
	DecisionPatched Decision = "patched"
	// DecisionDenied: the annotations are invalid.
	DecisionDenied Decision = "denied"
	// DecisionErrored: the request itself could not be read.
	DecisionErrored Decision = "errored"
)

// Recorder observes decisions; the server counts them in Prometheus.
type Recorder interface {
	Record(Decision)
}

// Handler is the admission.Handler for Pod creation.
type Handler struct {
	injector *Injector
	recorder Recorder
}

// HandlerOptions configures a Handler.
type HandlerOptions struct {
	// Recorder, if set, is told every decision.
	Recorder Recorder
}

// NewHandler returns a Handler that injects with in.
func NewHandler(in *Injector, opts HandlerOptions) *Handler {
	return &Handler{injector: in, recorder: opts.Recorder}
}

var _ admission.Handler = (*Handler)(nil)

var podKind = metav1.GroupVersionKind{Group: "", Version: "v1", Kind: "Pod"}

// Handle implements admission.Handler.
func (h *Handler) Handle(ctx context.Context, req admission.Request) admission.Response {
	resp, decision := h.handle(ctx, req)
	if h.recorder != nil {
		h.recorder.Record(decision)
	}
	return resp
}

func (h *Handler) handle(ctx context.Context, req admission.Request) (admission.Response, Decision) {
	log := logf.FromContext(ctx)
	if req.Operation != admissionv1.Create || req.Kind != podKind || req.SubResource != "" {
		return admission.Allowed("not a Pod creation"), DecisionAllowed
	}
	if len(req.Object.Raw) == 0 {
		return admission.Errored(http.StatusBadRequest, errors.New("request has no object")), DecisionErrored
	}
	// Only the parts injection reads are decoded (see readPod).
	pod, err := readPod(req.Object.Raw)
	if err != nil {
		return admission.Errored(http.StatusBadRequest, err), DecisionErrored
	}
	if !HasAnnotations(pod.Annotations) {
		return admission.Allowed("no depends-on.dev/ annotations"), DecisionAllowed
	}
	ops, err := h.injector.Patch(pod, req.Namespace)
	if err != nil {
		var invalid *InvalidError
		if errors.As(err, &invalid) {
			log.Info("denied", "pod", podRef(pod), "reason", err.Error())
			return denied(err.Error()), DecisionDenied
		}
		log.Error(err, "injection failed", "pod", podRef(pod))
		return admission.Errored(http.StatusInternalServerError, err), DecisionErrored
	}
	if len(ops) == 0 {
		return admission.Allowed("already injected"), DecisionAllowed
	}
	if log := log.V(1); log.Enabled() {
		log.Info("injected", "pod", podRef(pod), "operations", len(ops))
	}
	// Encoded here rather than by admission.Patched's Response.Complete: the
	// values are JSON already (see encodePatch).
	patch, err := encodePatch(ops)
	if err != nil {
		log.Error(err, "encoding the patch failed", "pod", podRef(pod))
		return admission.Errored(http.StatusInternalServerError, err), DecisionErrored
	}
	resp := admission.Allowed("")
	pt := admissionv1.PatchTypeJSONPatch
	resp.Patch, resp.PatchType = patch, &pt
	return resp, DecisionPatched
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

// podRef names a Pod for logs; at admission it may only have a generateName.
func podRef(pod *corev1.Pod) string {
	if pod.Name != "" {
		return pod.Name
	}
	return pod.GenerateName + "*"
}
