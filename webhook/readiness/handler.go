package readiness

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
)

// WaitPath is the long-poll endpoint.
const WaitPath = "/v1/wait"

// Authorizer decides whether who may ask about objects in namespace ns. Errors
// wrapping ErrForbidden are refusals (403); others are failures (503).
type Authorizer interface {
	Authorize(who Identity, ns string) error
}

// Notifier tells the waiting Pod what it waits for (Events).
type Notifier interface {
	Notify(who Identity, t Target, r Result)
	Forget(who Identity, t Target)
}

// HandlerOptions configure NewHandler. Authenticator, Authorizer and Source are required.
type HandlerOptions struct {
	Authenticator Authenticator
	Authorizer    Authorizer
	Source        Source
	// Notifier, if set, records Events on waiting Pods.
	Notifier Notifier
	// Metrics, if set, are updated.
	Metrics *Metrics
	// MaxWaiters bounds concurrent /v1/wait requests; above it: 503 (default 10000).
	MaxWaiters int
	// DefaultWait and MaxWait bound how long a request is held (defaults 30s, 60s).
	DefaultWait, MaxWait time.Duration
	// SyncTimeout: a target whose watch has not listed it by then gets 503 (default 10s).
	SyncTimeout time.Duration
	// StatusClients are the users (system:serviceaccount:NS:NAME) allowed to
	// use /v1/status: the admission webhook's ServiceAccount. Empty: nobody.
	StatusClients []string
	// StatusSyncWait bounds how long /v1/status waits for a watch it had to
	// open to list its target; past it the target is unknown (default 100ms).
	StatusSyncWait time.Duration
	Log            logr.Logger
}

// Answer is the 200 body of /v1/wait.
type Answer struct {
	Target string `json:"target"`
	State  State  `json:"state"`
	Reason string `json:"reason"`
}

type errorBody struct {
	Error string `json:"error"`
}

// Handler serves the readiness HTTP API. It is a thin layer: authentication,
// authorization and readiness all live behind its options' interfaces.
type Handler struct {
	opts     HandlerOptions
	mux      *http.ServeMux
	inflight atomic.Int64

	drainOnce sync.Once
	draining  chan struct{}
}

// NewHandler returns the API handler.
func NewHandler(o HandlerOptions) (*Handler, error) {
	if o.Authenticator == nil || o.Authorizer == nil || o.Source == nil {
		return nil, errors.New("readiness handler: Authenticator, Authorizer and Source are required")
	}
	if o.MaxWaiters <= 0 {
		o.MaxWaiters = 10000
	}
	if o.MaxWait <= 0 {
		o.MaxWait = 60 * time.Second
	}
	if o.DefaultWait <= 0 || o.DefaultWait > o.MaxWait {
		o.DefaultWait = min(30*time.Second, o.MaxWait)
	}
	if o.SyncTimeout <= 0 {
		o.SyncTimeout = 10 * time.Second
	}
	if o.StatusSyncWait <= 0 {
		o.StatusSyncWait = 100 * time.Millisecond
	}
	h := &Handler{opts: o, mux: http.NewServeMux(), draining: make(chan struct{})}
	h.mux.HandleFunc(WaitPath, h.serveWait)
	h.mux.HandleFunc(StatusPath, h.serveStatus)
	return h, nil
}

// ServeHTTP implements http.Handler.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if h.isDraining() {
		// The client reconnects, through the Service, to a replica that stays.
		w.Header().Set("Connection", "close")
	}
	h.mux.ServeHTTP(w, r)
}

// Drain answers every held request now with its current state (and
// Connection: close) and refuses new ones with 503, so clients move to
// another replica before this one stops. Call it after the Service's
// endpoints dropped this replica (the drain period).
func (h *Handler) Drain() { h.drainOnce.Do(func() { close(h.draining) }) }

func (h *Handler) isDraining() bool {
	select {
	case <-h.draining:
		return true
	default:
		return false
	}
}

// Inflight returns the number of /v1/wait requests being served.
func (h *Handler) Inflight() int { return int(h.inflight.Load()) }

// request is a validated /v1/wait query.
type request struct {
	target Target
	seen   string
	wait   time.Duration
}

func (h *Handler) parse(r *http.Request) (request, error) {
	q := r.URL.Query()
	for k, v := range q {
		switch k {
		case "target", "seen", "wait":
			if len(v) != 1 {
				return request{}, fmt.Errorf("query parameter %q given %d times", k, len(v))
			}
		default:
			return request{}, fmt.Errorf("unknown query parameter %q (want target, seen, wait)", k)
		}
	}
	if !q.Has("target") {
		return request{}, errors.New("query parameter target is required, e.g. target=job:app/migrate")
	}
	t, err := ParseTarget(q.Get("target"))
	if err != nil {
		return request{}, err
	}
	req := request{target: t, seen: q.Get("seen"), wait: h.opts.DefaultWait}
	if len(req.seen) > 1024 {
		return request{}, errors.New("query parameter seen is longer than 1024 characters")
	}
	if s := q.Get("wait"); s != "" {
		d, err := parseWait(s)
		if err != nil {
			return request{}, fmt.Errorf("query parameter wait=%q: %v", s, err)
		}
		req.wait = min(d, h.opts.MaxWait)
	}
	return req, nil
}

// parseWait accepts a Go duration ("30s") or whole seconds ("30").
func parseWait(s string) (time.Duration, error) {
	d, err := time.ParseDuration(s)
	if err != nil {
		n, err2 := strconv.Atoi(s)
		if err2 != nil {
			return 0, errors.New("want a duration such as 30s")
		}
		d = time.Duration(n) * time.Second
	}
	if d < 0 {
		return 0, errors.New("negative")
	}
	return d, nil
}

func bearer(r *http.Request) string {
	a := r.Header.Get("Authorization")
	if len(a) > 7 && strings.EqualFold(a[:7], "bearer ") {
		return strings.TrimSpace(a[7:])
	}
	return ""
}

func (h *Handler) serveWait(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet {
		w.Header().Set("Allow", http.MethodGet)
		h.fail(w, http.StatusMethodNotAllowed, "only GET is allowed")
		return
	}
	if n := h.inflight.Add(1); n > int64(h.opts.MaxWaiters) {
		h.inflight.Add(-1)
		w.Header().Set("Retry-After", "1")
		h.fail(w, http.StatusServiceUnavailable, fmt.Sprintf("more than %d waiters: try again", h.opts.MaxWaiters))
		return
	}
	defer h.inflight.Add(-1)
	if m := h.opts.Metrics; m != nil {
		m.Waiters.Inc()
		defer m.Waiters.Dec()
	}

	if h.isDraining() {
		w.Header().Set("Retry-After", "1")
		h.fail(w, http.StatusServiceUnavailable, "server is shutting down: try again")
		return
	}
	req, err := h.parse(r)
	if err != nil {
		h.fail(w, http.StatusBadRequest, err.Error())
		return
	}
	ctx := r.Context()
	who, ok := h.authenticate(w, r, h.fail)
	if !ok {
		return
	}
	if err := h.opts.Authorizer.Authorize(who, req.target.Namespace); err != nil {
		if errors.Is(err, ErrForbidden) {
			h.fail(w, http.StatusForbidden, strings.TrimPrefix(err.Error(), ErrForbidden.Error()+": "))
			return
		}
		h.opts.Log.Error(err, "authorize")
		h.fail(w, http.StatusServiceUnavailable, "cannot check the namespace now: try again")
		return
	}

	start := time.Now()
	sub := h.opts.Source.Subscribe(req.target)
	defer sub.Release()
	syncTimer := time.NewTimer(h.opts.SyncTimeout)
	defer syncTimer.Stop()
	select {
	case <-sub.Synced():
	case <-syncTimer.C:
		h.fail(w, http.StatusServiceUnavailable, fmt.Sprintf("watch of %s not synced after %s: try again", req.target, h.opts.SyncTimeout))
		return
	case <-h.draining:
		h.fail(w, http.StatusServiceUnavailable, "server is shutting down: try again")
		return
	case <-ctx.Done():
		return
	}

	deadline := time.NewTimer(req.wait - time.Since(start))
	defer deadline.Stop()
	for {
		changed := sub.Changed()
		res := sub.Result()
		if h.opts.Notifier != nil {
			h.opts.Notifier.Notify(who, req.target, res)
		}
		if res.State != StateWaiting || res.Reason != req.seen || h.isDraining() {
			h.answer(w, req.target, res, start, who)
			return
		}
		select {
		case <-changed:
		case <-deadline.C:
			h.answer(w, req.target, sub.Result(), start, who)
			return
		case <-h.draining:
			h.answer(w, req.target, sub.Result(), start, who)
			return
		case <-ctx.Done():
			return // client gone
		}
	}
}

func (h *Handler) answer(w http.ResponseWriter, t Target, res Result, start time.Time, who Identity) {
	if h.isDraining() {
		w.Header().Set("Connection", "close")
	}
	if res.State != StateWaiting && h.opts.Notifier != nil {
		h.opts.Notifier.Forget(who, t)
	}
	if m := h.opts.Metrics; m != nil {
		m.Answers.WithLabelValues(string(res.State)).Inc()
		m.WaitSeconds.Observe(time.Since(start).Seconds())
	}
	h.opts.Log.V(1).Info("answer", "target", t.String(), "state", string(res.State), "reason", res.Reason,
		"pod", who.Namespace+"/"+who.PodName, "held", time.Since(start).String())
	writeJSON(w, http.StatusOK, Answer{Target: t.String(), State: res.State, Reason: res.Reason})
}

// authenticate returns who sent r's bearer token; when it cannot tell, it
// answers with fail (401 for a bad token, 503 when TokenReview failed) and
// returns false.
func (h *Handler) authenticate(w http.ResponseWriter, r *http.Request, fail func(http.ResponseWriter, int, string)) (Identity, bool) {
	who, err := h.opts.Authenticator.Authenticate(r.Context(), bearer(r))
	if err == nil {
		return who, true
	}
	if errors.Is(err, ErrUnauthenticated) {
		w.Header().Set("WWW-Authenticate", `Bearer realm="depends-on-readiness"`)
		fail(w, http.StatusUnauthorized, err.Error())
		return Identity{}, false
	}
	h.opts.Log.Error(err, "authenticate")
	fail(w, http.StatusServiceUnavailable, "cannot check the token now: try again")
	return Identity{}, false
}

func (h *Handler) fail(w http.ResponseWriter, code int, msg string) {
	if m := h.opts.Metrics; m != nil {
		m.Answers.WithLabelValues(ResultError).Inc()
	}
	writeJSON(w, code, errorBody{Error: msg})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	body, _ := json.Marshal(v)
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_, _ = w.Write(append(body, '\n'))
}
