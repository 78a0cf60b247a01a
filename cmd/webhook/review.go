package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"

	"github.com/go-logr/logr"
	admissionv1 "k8s.io/api/admission/v1"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"
)

// maxReviewBytes bounds a request body, as controller-runtime does (7 MiB).
const maxReviewBytes = 7 << 20

// reviewHandler serves AdmissionReviews (admission.k8s.io/v1, and v1beta1, whose
// shape is the same) to an admission.Handler. It is what controller-runtime's
// admission.Webhook does, but decodes each request once: admission.Webhook's
// universal deserializer parses the whole review twice (once to find its kind),
// which was half of the server's CPU per request (docs/performance.md).
// webhook.Server.Register still wraps it in controller-runtime's request metrics.
type reviewHandler struct {
	handler admission.Handler
	log     logr.Logger
}

func (h *reviewHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		h.fail(w, http.StatusMethodNotAllowed, nil, fmt.Errorf("method %s not allowed: POST an AdmissionReview", r.Method))
		return
	}
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/json" {
		h.fail(w, http.StatusUnsupportedMediaType, nil, fmt.Errorf("content type %q: want application/json", r.Header.Get("Content-Type")))
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, maxReviewBytes+1))
	if err != nil {
		h.fail(w, http.StatusBadRequest, nil, fmt.Errorf("read request: %w", err))
		return
	}
	if len(body) > maxReviewBytes {
		h.fail(w, http.StatusRequestEntityTooLarge, nil, fmt.Errorf("request is larger than %d bytes", maxReviewBytes))
		return
	}
	var review admissionv1.AdmissionReview
	if err := json.Unmarshal(body, &review); err != nil {
		h.fail(w, http.StatusBadRequest, nil, fmt.Errorf("decode AdmissionReview: %w", err))
		return
	}
	if review.Request == nil || (review.APIVersion != "admission.k8s.io/v1" && review.APIVersion != "admission.k8s.io/v1beta1") {
		h.fail(w, http.StatusBadRequest, &review, fmt.Errorf("not an admission.k8s.io/v1 AdmissionReview request (apiVersion %q)", review.APIVersion))
		return
	}
	req := admission.Request{AdmissionRequest: *review.Request}
	log := h.log.WithValues("requestID", req.UID, "namespace", req.Namespace)
	resp := h.handle(logf.IntoContext(r.Context(), log), req)
	if err := resp.Complete(req); err != nil {
		log.Error(err, "cannot encode the response")
		resp = admission.Errored(http.StatusInternalServerError, errors.New("cannot encode the response"))
		resp.UID = req.UID
	}
	h.write(w, &review, resp)
}

// handle runs the handler, turning a panic into an error answer for this
// request instead of a dropped connection.
func (h *reviewHandler) handle(ctx context.Context, req admission.Request) (resp admission.Response) {
	defer func() {
		if p := recover(); p != nil {
			logf.FromContext(ctx).Error(fmt.Errorf("%v", p), "panic in the admission handler")
			resp = admission.Errored(http.StatusInternalServerError, fmt.Errorf("panic: %v [recovered]", p))
			resp.UID = req.UID
		}
	}()
	return h.handler.Handle(ctx, req)
}

// fail answers a request that could not be handled. The API server reads the
// status from the AdmissionReview, so the HTTP status stays 200, as in
// controller-runtime.
func (h *reviewHandler) fail(w http.ResponseWriter, code int32, review *admissionv1.AdmissionReview, err error) {
	h.log.Error(err, "bad admission request")
	resp := admission.Errored(code, err)
	if review != nil && review.Request != nil {
		resp.UID = review.Request.UID
	}
	h.write(w, review, resp)
}

func (h *reviewHandler) write(w http.ResponseWriter, review *admissionv1.AdmissionReview, resp admission.Response) {
	out := admissionv1.AdmissionReview{Response: &resp.AdmissionResponse}
	out.APIVersion, out.Kind = "admission.k8s.io/v1", "AdmissionReview"
	if review != nil && review.APIVersion == "admission.k8s.io/v1beta1" {
		out.APIVersion = review.APIVersion // answer in the version asked
	}
	w.Header().Set("Content-Type", "application/json")
	if err := json.NewEncoder(w).Encode(&out); err != nil {
		h.log.Error(err, "cannot write the response")
	}
}
