package main

// Object targets (job:, deployment:, statefulset:, daemonset:, endpoints:)
// are not probed: wait-for-service asks the depends-on readiness service,
// which watches the objects, by long-polling GET /v1/wait. The workload needs
// no RBAC of its own; it authenticates with a projected ServiceAccount token.

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/depends-on/depends-on/webhook/target"
)

// envReadinessCA holds the PEM certificates that sign the readiness
// service's serving certificate; the webhook injects it.
const envReadinessCA = "DEPENDS_ON_READINESS_CA"

// Limits on what the readiness service (or anything at its URL) can make us
// read or log.
const (
	maxTokenBytes  = 64 << 10
	maxAnswerBytes = 64 << 10
	maxReasonBytes = 1024
)

// readinessTuning paces the object targets; tests shorten it.
type readinessTuning struct {
	minBackoff    time.Duration // first delay after a 503 or a network error
	maxBackoff    time.Duration
	backoffFactor float64
	wait          time.Duration // how long the service may hold one request (wait=)
	grace         time.Duration // extra time for the answer beyond wait, then the request is abandoned
	getenv        func(string) string
}

func defaultReadinessTuning() readinessTuning {
	return readinessTuning{
		minBackoff:    200 * time.Millisecond,
		maxBackoff:    5 * time.Second,
		backoffFactor: 2,
		wait:          30 * time.Second, // the service's default; its max is 60s
		grace:         10 * time.Second,
		getenv:        os.Getenv,
	}
}

// readinessConfig says how to reach the readiness service.
type readinessConfig struct {
	base      *url.URL
	tokenFile string
	roots     *x509.CertPool // nil: the system's roots
}

// newReadinessConfig checks the readiness flags; it returns nil when no
// target needs the service (the flags are then ignored, so that the webhook
// may always pass them).
func newReadinessConfig(targets []*target.Target, rawURL, tokenFile, caPEM string) (*readinessConfig, error) {
	var first string
	for _, t := range targets {
		if t.Kind.IsObject() {
			first = t.Name
			break
		}
	}
	if first == "" {
		return nil, nil
	}
	if rawURL == "" || tokenFile == "" {
		return nil, fmt.Errorf("target %q needs the readiness service: set --readiness-url and --readiness-token-file", first)
	}
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, fmt.Errorf("invalid --readiness-url %q: %v", rawURL, unwrapURL(err))
	}
	switch {
	case u.Scheme != "https":
		return nil, fmt.Errorf("invalid --readiness-url %q: want https://HOST[:PORT][/PATH] (TLS is required)", rawURL)
	case u.Opaque != "" || u.Hostname() == "":
		return nil, fmt.Errorf("invalid --readiness-url %q: missing host", rawURL)
	case u.User != nil || u.RawQuery != "" || u.Fragment != "":
		return nil, fmt.Errorf("invalid --readiness-url %q: want no user, query or fragment", rawURL)
	}
	if p := u.Port(); p != "" || strings.HasSuffix(u.Host, ":") {
		if _, err := target.ParsePort(p); err != nil {
			return nil, fmt.Errorf("invalid --readiness-url %q: %v", rawURL, err)
		}
	}
	rc := &readinessConfig{base: u, tokenFile: tokenFile}
	if strings.TrimSpace(caPEM) != "" {
		rc.roots = x509.NewCertPool()
		if !rc.roots.AppendCertsFromPEM([]byte(caPEM)) {
			return nil, fmt.Errorf("environment variable %s holds no PEM certificate", envReadinessCA)
		}
	}
	return rc, nil
}

func unwrapURL(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// waitAnswer is the 200 body of /v1/wait.
type waitAnswer struct {
	Target string `json:"target"`
	State  string `json:"state"` // waiting, ready or failed
	Reason string `json:"reason"`
}

// readinessStatusError is an answer other than 200 that is worth retrying
// (503 while the service syncs or drains, other 5xx).
type readinessStatusError struct {
	status string
	msg    string
}

func (e *readinessStatusError) Error() string {
	if e.msg == "" {
		return e.status
	}
	return e.status + ": " + e.msg
}

// readinessClient asks /v1/wait about one target. It keeps its connection
// between requests: most answers are long-polls on the same service.
type readinessClient struct {
	cfg    *readinessConfig
	tu     readinessTuning
	http   *http.Client
	agent  string
	target string
}

func newReadinessClient(life context.Context, cfg *config, target string) *readinessClient {
	d := newDialer(life, cfg)
	return &readinessClient{
		cfg: cfg.readiness,
		tu:  cfg.tuning.readiness,
		http: &http.Client{
			Transport: &http.Transport{
				// No proxy: the service is in the cluster, and the token is for it alone.
				Proxy:       nil,
				DialContext: d.DialContext,
				TLSClientConfig: &tls.Config{
					RootCAs:    cfg.readiness.roots, // the server name comes from the URL
					MinVersion: tls.VersionTLS12,
				},
				TLSHandshakeTimeout:    cfg.tuning.probeTimeout,
				MaxResponseHeaderBytes: 64 << 10,
				IdleConnTimeout:        90 * time.Second,
				// HTTP/1.1: the agreed protocol; one long-poll per connection.
			},
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
		agent:  cfg.userAgent(),
		target: target,
	}
}

// wait sends one GET /v1/wait. A *permanentError means that asking again
// cannot help (400, 401, 403, an unreadable token); any other error is
// retried with backoff.
func (c *readinessClient) wait(ctx context.Context, seen string, hold time.Duration) (*waitAnswer, error) {
	token, err := readToken(c.cfg.tokenFile)
	if err != nil {
		return nil, &permanentError{msg: err.Error()}
	}
	u := c.cfg.base.JoinPath("v1", "wait")
	q := url.Values{"target": {c.target}, "wait": {strconv.Itoa(int(hold/time.Second)) + "s"}}
	if seen != "" {
		q.Set("seen", seen)
	}
	u.RawQuery = q.Encode()
	ctx, cancel := context.WithTimeoutCause(ctx, hold+c.tu.grace, &probeTimeoutError{after: hold + c.tu.grace})
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, &permanentError{msg: err.Error()}
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", c.agent)
	resp, err := c.http.Do(req)
	if err != nil {
		if cause := context.Cause(ctx); errors.As(cause, new(*probeTimeoutError)) {
			return nil, cause
		}
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // the URL is always the same: keep messages short
		}
		return nil, err
	}
	defer func() {
		// Drain what is left so that the connection can be reused.
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxAnswerBytes))
		resp.Body.Close()
	}()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswerBytes+1))
	if err != nil {
		if cause := context.Cause(ctx); errors.As(cause, new(*probeTimeoutError)) {
			return nil, cause
		}
		return nil, fmt.Errorf("reading the answer: %w", err)
	}
	if len(body) > maxAnswerBytes {
		return nil, fmt.Errorf("answer larger than %d bytes", maxAnswerBytes)
	}
	switch code := resp.StatusCode; {
	case code == http.StatusOK:
		return c.decode(body)
	case code >= 400 && code < 500 && code != http.StatusRequestTimeout && code != http.StatusTooManyRequests:
		// 400 bad target, 401 bad token, 403 namespace not shared: the same
		// request would get the same answer.
		return nil, &permanentError{msg: "readiness service answered " + resp.Status + ": " + errorMessage(body)}
	default:
		return nil, &readinessStatusError{status: resp.Status, msg: errorMessage(body)}
	}
}

func (c *readinessClient) decode(body []byte) (*waitAnswer, error) {
	var a waitAnswer
	if err := json.Unmarshal(body, &a); err != nil {
		return nil, fmt.Errorf("bad answer: %v", err)
	}
	if a.Target != "" && a.Target != c.target {
		return nil, fmt.Errorf("bad answer: about %q, not %q", truncate(a.Target, 256), c.target)
	}
	switch a.State {
	case "waiting", "ready", "failed":
	default:
		return nil, fmt.Errorf("bad answer: unknown state %q", truncate(a.State, 64))
	}
	a.Reason = truncate(oneLine(strings.TrimSpace(a.Reason)), maxReasonBytes)
	return &a, nil
}

// errorMessage extracts the message of an error answer: {"error":"..."}, or
// the start of whatever text came.
func errorMessage(body []byte) string {
	var e struct {
		Error string `json:"error"`
	}
	msg := strings.TrimSpace(string(body))
	if json.Unmarshal(body, &e) == nil && e.Error != "" {
		msg = e.Error
	}
	if msg == "" {
		return "no message"
	}
	return truncate(oneLine(msg), maxReasonBytes)
}

// readToken reads the projected ServiceAccount token. It is read again for
// every request because the kubelet rotates it. The kubelet writes it before
// the container starts and swaps it atomically, so an unreadable or empty
// file is a misconfiguration, not a passing state.
func readToken(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("cannot read the readiness token: %v", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxTokenBytes+1))
	if err != nil {
		return "", fmt.Errorf("cannot read the readiness token: %v", err)
	}
	if len(b) > maxTokenBytes {
		return "", fmt.Errorf("readiness token file %s is larger than %d bytes", path, maxTokenBytes)
	}
	token := strings.TrimSpace(string(b))
	if token == "" {
		return "", fmt.Errorf("readiness token file %s is empty", path)
	}
	if strings.ContainsFunc(token, func(r rune) bool { return r <= ' ' || r == 0x7f }) {
		return "", fmt.Errorf("readiness token file %s holds more than one token", path)
	}
	return token, nil
}

// waitObject long-polls the readiness service about one object target until
// it is ready (nil), ctx is done (nil), or it fails: the object failed (a Job
// with Failed=True) or the service refused the question (*targetFailure).
// Unavailability (503, network errors) is retried with backoff.
func waitObject(ctx context.Context, cfg *config, t *target.Target, st *targetState, log *logger, start time.Time) error {
	tu := cfg.tuning.readiness
	client := newReadinessClient(ctx, cfg, t.Name)
	defer client.http.CloseIdleConnections()
	newBo := func() *backoff { return newBackoff(tu.minBackoff, tu.maxBackoff, tu.backoffFactor, cfg.tuning.jitter) }
	bo := newBo()
	var seen, lastMsg string // seen: the last reason the service gave
	lastLine := time.Now()
	for {
		hold := holdFor(ctx, tu.wait)
		asked := time.Now()
		a, err := client.wait(ctx, seen, hold)
		if err == nil && a.State == "ready" {
			st.set(true, "")
			log.printf("%s ready after %s (%s)", t.Name, formatElapsed(time.Since(start)), a.Reason)
			return nil
		}
		if done(ctx) {
			return nil // timeout or signal: keep the last state for the summary
		}
		var perm *permanentError
		var msg, summary string
		var pause time.Duration
		switch {
		case err == nil && a.State == "failed":
			st.set(false, a.Reason)
			return &targetFailure{t: t, err: &permanentError{msg: a.Reason}}
		case err == nil: // waiting
			if a.Reason == seen && time.Since(asked) < hold/2 {
				// An unchanged state should come back only after the hold: do
				// not spin on a service that does not hold requests.
				pause = bo.next()
			} else {
				bo = newBo()
			}
			seen, msg, summary = a.Reason, a.Reason, a.Reason
		case errors.As(err, &perm):
			st.set(false, perm.msg)
			return &targetFailure{t: t, err: perm} // waitAll logs it
		default:
			msg = "readiness service: " + describe(err)
			summary = msg
			if seen != "" {
				summary = seen + "; then " + msg
			}
			pause = bo.next()
		}
		st.set(false, summary)
		if now := time.Now(); msg != lastMsg {
			log.printf("%s not ready: %s", t.Name, msg)
			lastMsg, lastLine = msg, now
		} else if now.Sub(lastLine) >= cfg.tuning.stillWaiting {
			log.printf("still waiting for %s after %s (%s)", t.Name, formatElapsed(now.Sub(start)), msg)
			lastLine = now
		}
		if pause > 0 && !sleep(ctx, pause) {
			return nil
		}
	}
}

// holdFor is the wait= to ask for: limit, or less when ctx's deadline comes
// sooner (in whole seconds, rounded up, at least one).
func holdFor(ctx context.Context, limit time.Duration) time.Duration {
	hold := limit
	if deadline, ok := ctx.Deadline(); ok {
		if left := time.Until(deadline); left < hold {
			hold = (left + time.Second - 1) / time.Second * time.Second
		}
	}
	return max(hold, time.Second)
}
