package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/depends-on/depends-on/webhook/target"
)

// probeFunc checks a target once: nil means ready. A *permanentError means
// retrying cannot help; every other error is retried.
type probeFunc func(ctx context.Context) error

// permanentError ends the whole wait at once (exit 1).
type permanentError struct{ msg string }

func (e *permanentError) Error() string { return e.msg }

// httpStatusError is a non-2xx final answer.
type httpStatusError struct{ status string }

func (e *httpStatusError) Error() string { return "HTTP " + e.status }

// probeTimeoutError is a probe that got no answer within its own time limit.
type probeTimeoutError struct{ after time.Duration }

func (e *probeTimeoutError) Error() string {
	return "no answer within " + e.after.String()
}

// redirectedError is a failure at a URL reached by redirect(s).
type redirectedError struct {
	url string
	err error
}

func (e *redirectedError) Error() string { return e.url + ": " + e.err.Error() }
func (e *redirectedError) Unwrap() error { return e.err }

// tooManyRedirectsError stops the HTTP client after the redirect limit.
type tooManyRedirectsError struct{ n int }

func (e *tooManyRedirectsError) Error() string {
	return fmt.Sprintf("stopped after %d redirects", e.n)
}

// newProbe builds the probe of one target, with its own resolver (each target
// is rate limited on its own). life bounds everything the probe starts,
// including dials that the HTTP transport keeps going in the background
// after a request ends.
func newProbe(life context.Context, t *target.Target, cfg *config) probeFunc {
	tu := cfg.tuning
	switch t.Kind {
	case target.DNS:
		// No caching: each probe is a fresh lookup, at most one per interval.
		res := newCachingResolver(cfg.lookup, 0, tu.lookupInterval, tu.lookupSpread)
		return func(ctx context.Context) error {
			_, err := res.resolve(ctx, t.Host)
			return err
		}
	case target.TCP:
		d := newDialer(life, cfg)
		addr := net.JoinHostPort(t.Host, strconv.Itoa(t.Port))
		return func(ctx context.Context) error {
			c, err := d.DialContext(ctx, "tcp", addr)
			if err != nil {
				return err
			}
			c.Close() // connected: ready, whatever Close says
			return nil
		}
	case target.HTTP:
		client := newHTTPClient(life, cfg)
		return func(ctx context.Context) error {
			defer client.CloseIdleConnections()
			resp, err := httpGet(ctx, client, t, cfg.userAgent())
			if err != nil {
				return err
			}
			// The status decides; drain a little so that the server sees
			// a clean read, then close.
			_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
			resp.Body.Close()
			return nil
		}
	case target.Fetch:
		client := newHTTPClient(life, cfg)
		return func(ctx context.Context) error {
			defer client.CloseIdleConnections()
			resp, err := httpGet(ctx, client, t, cfg.userAgent())
			if err != nil {
				return err
			}
			defer resp.Body.Close()
			return writeBody(resp, t.Dest, cfg.maxBytes)
		}
	}
	panic(fmt.Sprintf("unknown target kind %s", t.Kind))
}

func newDialer(life context.Context, cfg *config) *cachingDialer {
	tu := cfg.tuning
	return &cachingDialer{
		life:   life,
		res:    newCachingResolver(cfg.lookup, tu.addrTTL, tu.lookupInterval, tu.lookupSpread),
		dialer: net.Dialer{Timeout: tu.probeTimeout},
	}
}

func newHTTPClient(life context.Context, cfg *config) *http.Client {
	tu := cfg.tuning
	d := newDialer(life, cfg)
	return &http.Client{
		Transport: &http.Transport{
			Proxy:                  http.ProxyFromEnvironment,
			DialContext:            d.DialContext,
			ForceAttemptHTTP2:      true,
			DisableKeepAlives:      true, // every probe is a fresh connection
			TLSHandshakeTimeout:    tu.probeTimeout,
			ResponseHeaderTimeout:  tu.probeTimeout,
			MaxResponseHeaderBytes: 1 << 20,
		},
		CheckRedirect: func(_ *http.Request, via []*http.Request) error {
			if len(via) > tu.maxRedirects {
				return &tooManyRedirectsError{n: tu.maxRedirects}
			}
			return nil
		},
	}
}

// httpGet sends the GET of an http or fetch target and returns the response
// if it is a 2xx; otherwise it closes the body and returns an error.
func httpGet(ctx context.Context, client *http.Client, t *target.Target, userAgent string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, t.URL.String(), nil)
	if err != nil {
		return nil, &permanentError{msg: err.Error()}
	}
	req.Header.Set("User-Agent", userAgent)
	resp, err := client.Do(req)
	if err != nil {
		// Drop the url.Error's "Get URL:" prefix: the target names the URL.
		// Name the URL only when a redirect led elsewhere.
		var ue *url.Error
		var tooMany *tooManyRedirectsError
		if errors.As(err, &ue) {
			err = ue.Err
			if u, perr := url.Parse(ue.URL); perr == nil && !sameURL(u, t.URL) && !errors.As(err, &tooMany) {
				err = &redirectedError{url: u.Redacted(), err: err}
			}
		}
		return nil, err
	}
	if resp.StatusCode >= 200 && resp.StatusCode <= 299 {
		return resp, nil
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	err = &httpStatusError{status: resp.Status}
	if u := resp.Request.URL; !sameURL(u, t.URL) {
		err = &redirectedError{url: u.Redacted(), err: err}
	}
	return nil, err
}

// sameURL compares what was requested, ignoring user info and fragment.
func sameURL(a, b *url.URL) bool {
	return a.Scheme == b.Scheme && a.Host == b.Host && a.RequestURI() == b.RequestURI()
}

// describe renders a probe error for logs and the termination message: short
// and stable (no ephemeral ports), so that it also serves to detect a change
// of error.
func describe(err error) string {
	var (
		perm    *permanentError
		redir   *redirectedError
		timeout *probeTimeoutError
		status  *httpStatusError
		dnsErr  *net.DNSError
		errno   syscall.Errno
		netErr  net.Error
	)
	switch {
	case errors.As(err, &perm):
		return perm.msg
	case errors.As(err, &redir):
		return redir.url + ": " + describe(redir.err)
	case errors.As(err, &timeout):
		return timeout.Error()
	case errors.As(err, &status):
		return status.Error()
	case errors.As(err, &dnsErr):
		return "lookup " + dnsErr.Name + ": " + dnsErr.Err
	case errors.As(err, &errno):
		return errno.Error()
	case errors.As(err, &netErr) && netErr.Timeout():
		if strings.HasPrefix(err.Error(), "net/http:") {
			return strings.TrimPrefix(err.Error(), "net/http: ")
		}
		return "i/o timeout"
	}
	return err.Error()
}
