package webhook

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"time"

	"github.com/go-logr/logr"
	"golang.org/x/sync/semaphore"
	admissionv1 "k8s.io/api/admission/v1"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"
)

// ReviewOptions configures a ReviewHandler. The zero value is usable.
type ReviewOptions struct {
	// Logger logs bad requests and, through admission.Webhook, each request's
	// handler; default: discard.
	Logger logr.Logger
	// Recorder, if set, is told the outcome of every request the handler
	// itself refuses (method, content type, size, capacity, decoding,
	// panics); the admission.Handler records the others.
	Recorder Recorder
	// MaxRequestBytes bounds one request body; default DefaultMaxRequestBytes.
	MaxRequestBytes int64
	// MaxInFlightBytes bounds the bytes of all request bodies being read,
	// decoded or answered at once, so that memory stays bounded whatever
	// clients send; default DefaultMaxInFlightBytes. A request waits up to
	// AdmitWait for room, then is refused with 429 Too Many Requests and
	// Retry-After, which the API server's client retries.
	MaxInFlightBytes int64
	// AdmitWait: default DefaultAdmitWait.
	AdmitWait time.Duration
	// ReadTimeout bounds the reading of a request body, WriteTimeout the time
	// from the start of reading until the answer is written; defaults
	// DefaultReadTimeout and DefaultWriteTimeout. A client that trickles its
	// body has its connection closed.
	ReadTimeout, WriteTimeout time.Duration
}

// Defaults of ReviewOptions.
const (
	// DefaultMaxRequestBytes is controller-runtime's bound (7 MiB): an object
	// and its old version of at most 3 MiB each, and the rest of the review.
	DefaultMaxRequestBytes = 7 << 20
	// DefaultMaxInFlightBytes lets two requests of the largest size, or many
	// ordinary ones (an API server Pod is about 10 KB), be handled at once:
	// decoding takes about 3 times the body size (docs/performance.md), which
	// keeps the server under the Deployment's 128Mi memory limit.
	DefaultMaxInFlightBytes = 16 << 20
	// DefaultAdmitWait is short against the API server's timeoutSeconds (5 s
	// in deploy/base): a request that waited that long is better retried.
	DefaultAdmitWait = time.Second
	// DefaultReadTimeout: the API server sends the body at once; one that is
	// not in after this long comes from a client that is not the API server,
	// or from one that gave up already (timeoutSeconds 5).
	DefaultReadTimeout = 5 * time.Second
	// DefaultWriteTimeout is the longest timeoutSeconds allowed (30 s): an
	// answer after that is read by nobody.
	DefaultWriteTimeout = 30 * time.Second
)

// ReviewHandler serves AdmissionReviews (admission.k8s.io/v1, and v1beta1,
// whose shape is the same) over HTTP to an admission.Handler. It decodes each
// review once: controller-runtime's admission.Webhook.ServeHTTP decodes it
// twice (once to find its kind), which was half of the server's CPU per
// request (docs/performance.md). It hands the decoded request to
// admission.Webhook.Handle, which recovers panics (counting them in
// controller_runtime_webhook_panics_total) and completes the response.
type ReviewHandler struct {
	webhook  *admission.Webhook
	log      logr.Logger
	recorder Recorder
	opts     ReviewOptions
	inFlight *semaphore.Weighted
}

// NewReviewHandler returns a ReviewHandler for h.
func NewReviewHandler(h admission.Handler, opts ReviewOptions) *ReviewHandler {
	if opts.Logger.GetSink() == nil {
		opts.Logger = logr.Discard()
	}
	setDefault(&opts.MaxRequestBytes, DefaultMaxRequestBytes)
	setDefault(&opts.MaxInFlightBytes, DefaultMaxInFlightBytes)
	setDefault(&opts.AdmitWait, DefaultAdmitWait)
	setDefault(&opts.ReadTimeout, DefaultReadTimeout)
	setDefault(&opts.WriteTimeout, DefaultWriteTimeout)
	opts.MaxInFlightBytes = max(opts.MaxInFlightBytes, opts.MaxRequestBytes)
	log := opts.Logger
	rh := &ReviewHandler{log: log, recorder: opts.Recorder, opts: opts, inFlight: semaphore.NewWeighted(opts.MaxInFlightBytes)}
	rh.webhook = &admission.Webhook{
		Handler: admission.HandlerFunc(func(ctx context.Context, req admission.Request) admission.Response {
			resp := h.Handle(ctx, req)
			if r, ok := ctx.Value(returnedKey{}).(*bool); ok {
				*r = true
			}
			return resp
		}),
		LogConstructor: func(_ logr.Logger, req *admission.Request) logr.Logger {
			return admission.DefaultLogConstructor(log, req)
		},
	}
	return rh
}

func setDefault[T comparable](v *T, def T) {
	var zero T
	if *v == zero {
		*v = def
	}
}

// returnedKey marks, in a request's context, whether the admission.Handler
// returned: when it did not, admission.Webhook.Handle recovered a panic.
type returnedKey struct{}

func (h *ReviewHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	// Best effort: a ResponseWriter that cannot set deadlines (a test
	// recorder) has no connection to protect.
	rc := http.NewResponseController(w)
	_ = rc.SetReadDeadline(start.Add(h.opts.ReadTimeout))
	_ = rc.SetWriteDeadline(start.Add(h.opts.WriteTimeout))

	if r.Method != http.MethodPost {
		h.fail(w, http.StatusMethodNotAllowed, nil, ReasonMethod, fmt.Errorf("method %s not allowed: POST an AdmissionReview", r.Method))
		return
	}
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/json" {
		h.fail(w, http.StatusUnsupportedMediaType, nil, ReasonContentType, fmt.Errorf("content type %q: want application/json", r.Header.Get("Content-Type")))
		return
	}
	// Refused before a byte is read, when the client says how large it is.
	if r.ContentLength > h.opts.MaxRequestBytes {
		w.Header().Set("Connection", "close") // the unread body is not drained
		h.fail(w, http.StatusRequestEntityTooLarge, nil, ReasonOversize, fmt.Errorf("request of %d bytes is larger than %d bytes", r.ContentLength, h.opts.MaxRequestBytes))
		return
	}
	ctx := r.Context()
	if d, err := time.ParseDuration(r.URL.Query().Get("timeout")); err == nil && d > 0 {
		// The API server says how long it waits (timeoutSeconds).
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, d)
		defer cancel()
	}

	// Reserve the body's bytes (all the allowed ones when its length is not
	// known) before reading it; give them back when the answer is written.
	weight := h.opts.MaxRequestBytes
	if r.ContentLength >= 0 {
		weight = max(r.ContentLength, 1)
	}
	admitCtx, cancelAdmit := context.WithTimeout(ctx, h.opts.AdmitWait)
	err := h.inFlight.Acquire(admitCtx, weight)
	cancelAdmit()
	if err != nil {
		if ctx.Err() != nil {
			h.fail(w, http.StatusServiceUnavailable, nil, ReasonCanceled, fmt.Errorf("gave up waiting for capacity: %w", ctx.Err()))
			return
		}
		// Read and drop the body (a small buffer, bounded by the read
		// deadline) so that the client reads the answer rather than a reset.
		_, _ = io.CopyN(io.Discard, r.Body, weight)
		w.Header().Set("Retry-After", "1")
		h.failHTTP(w, http.StatusTooManyRequests, ReasonBusy, fmt.Errorf("busy: more than %d bytes of requests in flight", h.opts.MaxInFlightBytes))
		return
	}
	defer h.inFlight.Release(weight)

	body, err := readBody(r.Body, r.ContentLength, h.opts.MaxRequestBytes)
	if err != nil {
		if errors.Is(err, errTooLarge) {
			w.Header().Set("Connection", "close")
			h.fail(w, http.StatusRequestEntityTooLarge, nil, ReasonOversize, err)
			return
		}
		// Most likely the read deadline: the connection is closed anyway.
		h.fail(w, http.StatusBadRequest, nil, ReasonRead, fmt.Errorf("read request: %w", err))
		return
	}
	var review admissionv1.AdmissionReview
	if err := json.Unmarshal(body, &review); err != nil {
		h.fail(w, http.StatusBadRequest, nil, ReasonMalformed, fmt.Errorf("decode AdmissionReview: %w", err))
		return
	}
	if review.Request == nil || (review.APIVersion != "admission.k8s.io/v1" && review.APIVersion != "admission.k8s.io/v1beta1") {
		h.fail(w, http.StatusBadRequest, &review, ReasonMalformed, fmt.Errorf("not an admission.k8s.io/v1 AdmissionReview request (apiVersion %q)", review.APIVersion))
		return
	}
	if ctx.Err() != nil {
		h.fail(w, http.StatusServiceUnavailable, &review, ReasonCanceled, fmt.Errorf("gave up: %w", ctx.Err()))
		return
	}
	req := admission.Request{AdmissionRequest: *review.Request}
	returned := false
	resp := h.webhook.Handle(context.WithValue(ctx, returnedKey{}, &returned), req)
	if !returned {
		h.record(Outcome{DecisionErrored, ReasonPanic})
	}
	h.write(w, &review, resp)
}

var errTooLarge = errors.New("request is too large")

// readBody reads at most limit bytes of body, into one buffer when its
// length is known.
func readBody(body io.Reader, length, limit int64) ([]byte, error) {
	if length >= 0 {
		buf := make([]byte, length)
		if _, err := io.ReadFull(body, buf); err != nil {
			return nil, err
		}
		return buf, nil
	}
	buf, err := io.ReadAll(io.LimitReader(body, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(buf)) > limit {
		return nil, fmt.Errorf("%w: more than %d bytes", errTooLarge, limit)
	}
	return buf, nil
}

func (h *ReviewHandler) record(o Outcome) {
	if h.recorder != nil {
		h.recorder.Record(o)
	}
}

// fail answers a request that could not be handled. The API server reads the
// status from the AdmissionReview, so the HTTP status stays 200, as in
// controller-runtime.
func (h *ReviewHandler) fail(w http.ResponseWriter, code int32, review *admissionv1.AdmissionReview, reason Reason, err error) {
	h.log.Error(err, "bad admission request", "reason", reason)
	h.record(Outcome{DecisionErrored, reason})
	resp := admission.Errored(code, err)
	if review != nil && review.Request != nil {
		resp.UID = review.Request.UID
	}
	h.write(w, review, resp)
}

// failHTTP answers with an HTTP error status: the API server's client then
// treats the call as failed, and retries it when the status is 429 or 5xx
// with a Retry-After header (k8s.io/client-go/rest). The body is still an
// AdmissionReview, for other clients.
func (h *ReviewHandler) failHTTP(w http.ResponseWriter, status int, reason Reason, err error) {
	h.log.Error(err, "refused admission request", "reason", reason)
	h.record(Outcome{DecisionErrored, reason})
	resp := admission.Errored(int32(status), err)
	out := admissionv1.AdmissionReview{Response: &resp.AdmissionResponse}
	out.APIVersion, out.Kind = "admission.k8s.io/v1", "AdmissionReview"
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	if err := json.NewEncoder(w).Encode(&out); err != nil {
		h.log.Error(err, "cannot write the response")
	}
}

func (h *ReviewHandler) write(w http.ResponseWriter, review *admissionv1.AdmissionReview, resp admission.Response) {
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
