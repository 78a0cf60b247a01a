// Package satisfied is the webhook's view of the readiness service (issue
// 14): it answers webhook.Satisfier from an in-process cache of per-target
// answers, filled by GET /v1/status of the readiness service and refreshed in
// the background, so that the admission path almost never waits on the
// network. It only ever calls the readiness service, never an address a Pod
// gave.
package satisfied

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
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"

	"github.com/depends-on/depends-on/webhook"
	"github.com/depends-on/depends-on/webhook/readiness"
)

// Options configure New. URL, CA and TokenFile are required.
type Options struct {
	// URL is the readiness service's base URL (webhook.Config.ReadinessURL).
	URL string
	// CA is the PEM of the CAs that sign its serving certificate.
	CA []byte
	// TokenFile holds the webhook's projected ServiceAccount token (audience
	// depends-on.dev/readiness); it is read again before each request, as the
	// kubelet rotates it.
	TokenFile string
	// TTL is how long a ready answer is used (default 5s); it is refreshed in
	// the background once it is older than TTL/2, while Pods keep asking.
	TTL time.Duration
	// NegativeTTL is how long any other answer is used (default 1s): a Pod
	// then is injected without asking, which is always safe.
	NegativeTTL time.Duration
	// RequestTimeout bounds one request to the readiness service (default 5s:
	// a slow answer is still worth having for the next Pods).
	// A miss waits for it only as long as the caller's deadline; the answer
	// still fills the cache for the next Pod.
	RequestTimeout time.Duration
	// MaxEntries bounds the cache (default 10000 targets).
	MaxEntries int
	// KeepWarm: Run refreshes the answers of targets asked within this long
	// (default 10m), so the next scale-up of a Deployment finds them in
	// memory (and the readiness service's watch open); older ones are dropped.
	KeepWarm time.Duration
	// Metrics, if set, count the checks.
	Metrics *Metrics
	Log     logr.Logger
	// Now is the clock (tests).
	Now func() time.Time
}

// Client implements webhook.Satisfier.
type Client struct {
	opts Options
	base *url.URL
	// http is replaced by SetCA (a rotated CA).
	http atomic.Pointer[http.Client]

	mu      sync.Mutex
	entries map[key]*entry
}

var _ webhook.Satisfier = (*Client)(nil)

// key is one target as asked for a Pod's namespace (the answer depends on
// it: another namespace may refuse).
type key struct{ namespace, target string }

type entry struct {
	answer  readiness.Answer
	fetched time.Time // zero until the first answer
	// failed is when the last request for it failed (zero if none did).
	failed time.Time
	// used is when a Pod last asked about it.
	used time.Time
	// inflight is closed when the current request for this entry ends; nil if none.
	inflight chan struct{}
}

// New returns a Client.
func New(o Options) (*Client, error) {
	u, err := url.Parse(o.URL)
	if err != nil || u.Scheme != "https" || u.Host == "" {
		return nil, fmt.Errorf("readiness URL %q: want https://HOST[:PORT]", o.URL)
	}
	if o.TokenFile == "" {
		return nil, errors.New("token file is required")
	}
	if o.TTL <= 0 {
		o.TTL = 5 * time.Second
	}
	if o.NegativeTTL <= 0 {
		o.NegativeTTL = time.Second
	}
	if o.RequestTimeout <= 0 {
		o.RequestTimeout = 5 * time.Second
	}
	if o.MaxEntries <= 0 {
		o.MaxEntries = 10000
	}
	if o.KeepWarm <= 0 {
		o.KeepWarm = 10 * time.Minute
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Log.GetSink() == nil {
		o.Log = logr.Discard()
	}
	c := &Client{opts: o, base: u, entries: map[key]*entry{}}
	if err := c.SetCA(o.CA); err != nil {
		return nil, err
	}
	return c, nil
}

// SetCA makes the requests that start from now on trust the CAs in pem (a
// rotated CA); connections made before are closed once idle.
func (c *Client) SetCA(pem []byte) error {
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return errors.New("readiness CA holds no PEM certificate")
	}
	tr := &http.Transport{
		TLSClientConfig:     &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12},
		MaxIdleConnsPerHost: 4,
		IdleConnTimeout:     90 * time.Second,
		TLSHandshakeTimeout: c.opts.RequestTimeout,
		// The readiness service speaks HTTP/1.1 only.
		ForceAttemptHTTP2: false,
	}
	if old := c.http.Swap(&http.Client{Transport: tr, Timeout: c.opts.RequestTimeout}); old != nil {
		old.CloseIdleConnections()
	}
	return nil
}

// Satisfied implements webhook.Satisfier: satisfied only when every target
// has a fresh ready answer. Targets without a fresh answer are asked in one
// request, waited for until ctx is done.
func (c *Client) Satisfied(ctx context.Context, namespace string, targets []string) (webhook.Verdict, error) {
	if namespace == "" || len(targets) == 0 {
		return webhook.VerdictUnknown, errors.New("no namespace or no target to ask about")
	}
	now := c.opts.Now()
	var missing, stale []string
	var waits []chan struct{}
	verdict := webhook.VerdictSatisfied
	c.mu.Lock()
	for _, t := range targets {
		k := key{namespace, t}
		e := c.entries[k]
		if e == nil {
			e = &entry{}
			c.add(k, e, now)
		}
		e.used = now
		st, ok := c.lookup(e, now)
		switch {
		case !ok && e.inflight != nil:
			waits = append(waits, e.inflight)
		case !ok:
			missing = append(missing, t)
		case st == readiness.StateReady:
			if now.Sub(e.fetched) > c.opts.TTL/2 && e.inflight == nil {
				stale = append(stale, t) // good for now; refreshed for the next Pods
			}
		case st == readiness.StateUnknown:
			verdict = worse(verdict, webhook.VerdictUnknown)
		default:
			verdict = webhook.VerdictNotSatisfied
		}
	}
	var done chan struct{}
	if len(missing) > 0 {
		done = c.startLocked(namespace, missing)
		waits = append(waits, done)
	}
	if len(stale) > 0 {
		c.startLocked(namespace, stale)
	}
	c.mu.Unlock()

	hit := len(waits) == 0
	if hit || verdict != webhook.VerdictSatisfied {
		// Known from memory, or already known not to be satisfied: no waiting.
		c.opts.Metrics.record(verdict, hit)
		return verdict, nil
	}
	for _, w := range waits {
		select {
		case <-w:
		case <-ctx.Done():
			c.opts.Metrics.record(webhook.VerdictUnknown, false)
			return webhook.VerdictUnknown, fmt.Errorf("no answer from the readiness service in time: %w", ctx.Err())
		}
	}
	// Read back what the requests stored.
	now = c.opts.Now()
	var failed bool
	c.mu.Lock()
	for _, t := range targets {
		e := c.entries[key{namespace, t}]
		if e == nil {
			verdict = worse(verdict, webhook.VerdictUnknown) // evicted meanwhile
			continue
		}
		st, ok := c.lookup(e, now)
		failed = failed || (!e.failed.IsZero() && e.failed.After(e.fetched))
		switch {
		case !ok || st == readiness.StateUnknown:
			verdict = worse(verdict, webhook.VerdictUnknown)
		case st != readiness.StateReady:
			verdict = webhook.VerdictNotSatisfied
		}
	}
	c.mu.Unlock()
	if failed && verdict != webhook.VerdictNotSatisfied {
		c.opts.Metrics.recordError()
		return webhook.VerdictUnknown, errors.New("the readiness service did not answer (see the webhook's log)")
	}
	c.opts.Metrics.record(verdict, false)
	return verdict, nil
}

// worse returns the less favourable verdict.
func worse(a, b webhook.Verdict) webhook.Verdict {
	if a == webhook.VerdictNotSatisfied || b == webhook.VerdictNotSatisfied {
		return webhook.VerdictNotSatisfied
	}
	if a == webhook.VerdictUnknown || b == webhook.VerdictUnknown {
		return webhook.VerdictUnknown
	}
	return webhook.VerdictSatisfied
}

// lookup returns the state of e that may be used now: a ready answer for
// TTL, another answer for NegativeTTL, an unknown answer never (the watch is
// probably synced by the next Pod), and a failed request as unknown for
// NegativeTTL (so an outage of the readiness service does not add a
// deadline to every admission). Called with c.mu held.
func (c *Client) lookup(e *entry, now time.Time) (readiness.State, bool) {
	if !e.fetched.IsZero() {
		ttl := c.opts.NegativeTTL
		switch e.answer.State {
		case readiness.StateReady:
			ttl = c.opts.TTL
		case readiness.StateUnknown:
			ttl = 0
		}
		if now.Sub(e.fetched) < ttl {
			return e.answer.State, true
		}
	}
	if !e.failed.IsZero() && now.Sub(e.failed) < c.opts.NegativeTTL {
		return readiness.StateUnknown, true
	}
	return "", false
}

func (c *Client) fresh(e *entry, now time.Time) bool {
	_, ok := c.lookup(e, now)
	return ok
}

// Run refreshes, every TTL/2 until ctx is done, the answers of the targets
// asked within KeepWarm, one request per namespace, and drops the others.
// With nothing to refresh it pings the readiness service (a request without
// targets): the TLS connection and the service's TokenReview of this
// client's token stay warm, so the first Pod after a quiet time does not pay
// for them within its deadline.
func (c *Client) Run(ctx context.Context) {
	t := time.NewTicker(c.opts.TTL / 2)
	defer t.Stop()
	for {
		if !c.refresh(c.opts.Now()) {
			if _, err := c.fetch("", nil); err != nil {
				c.opts.Log.V(1).Info("readiness service ping failed", "error", err.Error())
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// refresh starts the requests of due targets; false if there were none.
func (c *Client) refresh(now time.Time) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	due := map[string][]string{}
	for k, e := range c.entries {
		switch {
		case e.inflight != nil:
		case now.Sub(e.used) > c.opts.KeepWarm:
			delete(c.entries, k)
		default:
			due[k.namespace] = append(due[k.namespace], k.target)
		}
	}
	for ns, targets := range due {
		for len(targets) > 0 {
			n := min(len(targets), readiness.MaxStatusTargets)
			c.startLocked(ns, targets[:n])
			targets = targets[n:]
		}
	}
	return len(due) > 0
}

// add stores e under k, keeping the cache bounded: expired entries go
// first, then (still full) an arbitrary half. Called with c.mu held.
func (c *Client) add(k key, e *entry, now time.Time) {
	if len(c.entries) >= c.opts.MaxEntries {
		for k, old := range c.entries {
			if old.inflight == nil && !c.fresh(old, now) {
				delete(c.entries, k)
			}
		}
		for k, old := range c.entries {
			if len(c.entries) < c.opts.MaxEntries/2 {
				break
			}
			if old.inflight == nil {
				delete(c.entries, k)
			}
		}
	}
	c.entries[k] = e
}

// startLocked asks the readiness service about targets of namespace in the
// background and returns a channel closed when the answers are stored.
// Called with c.mu held; the entries exist.
func (c *Client) startLocked(namespace string, targets []string) chan struct{} {
	done := make(chan struct{})
	for _, t := range targets {
		k := key{namespace, t}
		e := c.entries[k]
		if e == nil { // evicted by add while the same call added others
			e = &entry{used: c.opts.Now()}
			c.entries[k] = e
		}
		e.inflight = done
	}
	go func() {
		defer close(done)
		answers, err := c.fetch(namespace, targets)
		now := c.opts.Now()
		c.mu.Lock()
		defer c.mu.Unlock()
		for _, t := range targets {
			e := c.entries[key{namespace, t}]
			if e == nil || e.inflight != done {
				continue // evicted meanwhile
			}
			e.inflight = nil
			if a, ok := answers[t]; ok && err == nil {
				e.answer, e.fetched = a, now
			} else {
				e.failed = now
			}
		}
		if err != nil {
			c.opts.Log.Error(err, "readiness service: status not known; Pods depending on these objects get the wait container", "namespace", namespace, "targets", targets)
		}
	}()
	return done
}

// fetch calls GET /v1/status once for targets.
func (c *Client) fetch(namespace string, targets []string) (map[string]readiness.Answer, error) {
	token, err := os.ReadFile(c.opts.TokenFile)
	if err != nil {
		return nil, fmt.Errorf("read the readiness token: %w", err)
	}
	if namespace == "" {
		namespace = "default" // a ping: any valid namespace
	}
	q := url.Values{"namespace": {namespace}, "target": targets}
	u := c.base.JoinPath(readiness.StatusPath)
	u.RawQuery = q.Encode()
	ctx, cancel := context.WithTimeout(context.Background(), c.opts.RequestTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(token)))
	resp, err := c.http.Load().Do(req)
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", readiness.StatusPath, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", readiness.StatusPath, err)
	}
	if resp.StatusCode != http.StatusOK {
		var e struct {
			Error string `json:"error"`
		}
		_ = json.Unmarshal(body, &e)
		return nil, fmt.Errorf("GET %s: %s: %s", readiness.StatusPath, resp.Status, e.Error)
	}
	var st readiness.StatusAnswer
	if err := json.Unmarshal(body, &st); err != nil {
		return nil, fmt.Errorf("GET %s: decode: %w", readiness.StatusPath, err)
	}
	out := make(map[string]readiness.Answer, len(st.Answers))
	for _, a := range st.Answers {
		out[a.Target] = a
	}
	return out, nil
}
