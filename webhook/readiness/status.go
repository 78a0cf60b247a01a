package readiness

import (
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/util/validation"
)

// StatusPath is the immediate-answer endpoint the admission webhook asks
// (issue 14): is each of these targets satisfied now, for a Pod of that
// namespace? It never holds a request longer than StatusSyncWait.
const StatusPath = "/v1/status"

// MaxStatusTargets bounds the targets of one /v1/status request (the
// webhook's default cap on a Pod's waits is 100).
const MaxStatusTargets = 128

// The states only /v1/status answers, next to waiting, ready and failed.
const (
	// StateUnknown: the target's watch has not listed it within StatusSyncWait.
	StateUnknown State = "unknown"
	// StateRefused: the Pod's namespace may not ask about the target's (the shared label).
	StateRefused State = "refused"
)

// StatusAnswer is the 200 body of /v1/status: one Answer per target, in the
// order asked.
type StatusAnswer struct {
	Namespace string   `json:"namespace"`
	Answers   []Answer `json:"answers"`
}

// statusRequest is a validated /v1/status query.
type statusRequest struct {
	namespace string
	targets   []Target
}

func parseStatus(r *http.Request) (statusRequest, error) {
	q := r.URL.Query()
	for k, v := range q {
		switch k {
		case "namespace":
			if len(v) != 1 {
				return statusRequest{}, fmt.Errorf("query parameter %q given %d times", k, len(v))
			}
		case "target":
			if len(v) > MaxStatusTargets {
				return statusRequest{}, fmt.Errorf("%d targets, more than %d", len(v), MaxStatusTargets)
			}
		default:
			return statusRequest{}, fmt.Errorf("unknown query parameter %q (want namespace, target)", k)
		}
	}
	req := statusRequest{namespace: q.Get("namespace")}
	if req.namespace == "" {
		return statusRequest{}, errors.New("query parameter namespace (of the Pod being admitted) is required")
	}
	if msgs := validation.IsDNS1123Label(req.namespace); len(msgs) > 0 {
		return statusRequest{}, fmt.Errorf("namespace %q: %s", trim(req.namespace), strings.Join(msgs, "; "))
	}
	// No target is a ping: the caller checks its token and keeps its
	// connection (and this service's TokenReview cache) warm.
	for _, s := range q["target"] {
		t, err := ParseTarget(s)
		if err != nil {
			return statusRequest{}, err
		}
		req.targets = append(req.targets, t)
	}
	return req, nil
}

// serveStatus answers at once from the shared watches. Only the callers named
// in HandlerOptions.StatusClients (the webhook's ServiceAccount) may ask: the
// namespace is theirs to state, and the namespace rule of /v1/wait is applied
// to it, so a Pod learns through the webhook no more than its wait container
// could.
func (h *Handler) serveStatus(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet {
		w.Header().Set("Allow", http.MethodGet)
		h.failStatus(w, http.StatusMethodNotAllowed, "only GET is allowed")
		return
	}
	if h.isDraining() {
		w.Header().Set("Retry-After", "1")
		h.failStatus(w, http.StatusServiceUnavailable, "server is shutting down: try again")
		return
	}
	req, err := parseStatus(r)
	if err != nil {
		h.failStatus(w, http.StatusBadRequest, err.Error())
		return
	}
	ctx := r.Context()
	who, ok := h.authenticate(w, r, h.failStatus)
	if !ok {
		return
	}
	user := serviceAccountPrefix + who.Namespace + ":" + who.ServiceAccount
	if !slices.Contains(h.opts.StatusClients, user) {
		h.failStatus(w, http.StatusForbidden, fmt.Sprintf("%s may not use %s (readiness flag --status-clients)", user, StatusPath))
		return
	}

	// The Pod being admitted is who asks about the targets.
	pod := Identity{Namespace: req.namespace}
	out := StatusAnswer{Namespace: req.namespace, Answers: make([]Answer, len(req.targets))}
	var subs []Subscription
	var idx []int
	for i, t := range req.targets {
		out.Answers[i] = Answer{Target: t.String()}
		if err := h.opts.Authorizer.Authorize(pod, t.Namespace); err != nil {
			out.Answers[i].State, out.Answers[i].Reason = StateRefused, strings.TrimPrefix(err.Error(), ErrForbidden.Error()+": ")
			if !errors.Is(err, ErrForbidden) {
				out.Answers[i].State = StateUnknown // cannot check the namespace now
			}
			continue
		}
		subs = append(subs, h.opts.Source.Subscribe(t))
		idx = append(idx, i)
	}
	defer func() {
		for _, s := range subs {
			s.Release() // the watch lingers: the webhook's next ask finds it synced
		}
	}()
	timer := time.NewTimer(h.opts.StatusSyncWait)
	defer timer.Stop()
	expired := false
	for k, s := range subs {
		a := &out.Answers[idx[k]]
		if !expired {
			select {
			case <-s.Synced():
			case <-timer.C:
				expired = true
			case <-ctx.Done():
				return
			}
		}
		select {
		case <-s.Synced():
			res := s.Result()
			a.State, a.Reason = res.State, res.Reason
		default:
			a.State, a.Reason = StateUnknown, fmt.Sprintf("watch not synced within %s", h.opts.StatusSyncWait)
		}
	}
	if m := h.opts.Metrics; m != nil {
		for _, a := range out.Answers {
			m.StatusAnswers.WithLabelValues(string(a.State)).Inc()
		}
	}
	writeJSON(w, http.StatusOK, out)
}

func (h *Handler) failStatus(w http.ResponseWriter, code int, msg string) {
	if m := h.opts.Metrics; m != nil {
		m.StatusAnswers.WithLabelValues(ResultError).Inc()
	}
	writeJSON(w, code, errorBody{Error: msg})
}
