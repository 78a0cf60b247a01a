package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// fakeLookup answers from a function and counts its calls.
type fakeLookup struct {
	calls  atomic.Int32
	answer func(host string) ([]netip.Addr, error)
}

func (f *fakeLookup) lookup(_ context.Context, host string) ([]netip.Addr, error) {
	f.calls.Add(1)
	return f.answer(host)
}

func TestCachingResolverCachesAndLimits(t *testing.T) {
	t.Parallel()
	addr := netip.MustParseAddr("10.0.0.7")
	f := &fakeLookup{answer: func(string) ([]netip.Addr, error) { return []netip.Addr{addr}, nil }}
	const ttl, interval = 150 * time.Millisecond, 300 * time.Millisecond
	r := newCachingResolver(f.lookup, ttl, interval, 0)
	ctx := t.Context()

	// IP literals never cause a lookup.
	for _, lit := range []string{"192.0.2.1", "::1", "fe80::1%eth0"} {
		got, err := r.resolve(ctx, lit)
		if err != nil || len(got) != 1 || got[0] != netip.MustParseAddr(lit) {
			t.Errorf("resolve(%q) = %v, %v", lit, got, err)
		}
	}
	if n := f.calls.Load(); n != 0 {
		t.Fatalf("%d lookups for IP literals", n)
	}

	// Within the TTL, the answer is reused.
	start := time.Now()
	for range 5 {
		got, err := r.resolve(ctx, "db.test.")
		if err != nil || len(got) != 1 || got[0] != addr {
			t.Fatalf("resolve = %v, %v", got, err)
		}
	}
	if n := f.calls.Load(); n != 1 && time.Since(start) < ttl {
		t.Fatalf("%d lookups within the TTL, want 1", n)
	}

	// After the TTL, a new lookup happens, but not before the interval.
	time.Sleep(ttl)
	if _, err := r.resolve(ctx, "db.test."); err != nil {
		t.Fatal(err)
	}
	if n := f.calls.Load(); n != 2 {
		t.Errorf("%d lookups, want 2", n)
	}
	if waited := time.Since(start); waited < interval {
		t.Errorf("second lookup %v after the first, want >= %v", waited, interval)
	}
}

func TestCachingResolverDoesNotCacheFailures(t *testing.T) {
	t.Parallel()
	var fail atomic.Bool
	fail.Store(true)
	f := &fakeLookup{answer: func(host string) ([]netip.Addr, error) {
		if fail.Load() {
			return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
		}
		return []netip.Addr{netip.MustParseAddr("10.0.0.8")}, nil
	}}
	const interval = 100 * time.Millisecond
	r := newCachingResolver(f.lookup, time.Hour, interval, 0)

	// Failures are not cached: each call waits for the next allowed lookup.
	start := time.Now()
	for range 3 {
		if _, err := r.resolve(t.Context(), "svc.test."); err == nil {
			t.Fatal("resolve succeeded, want no such host")
		}
	}
	if n, elapsed := f.calls.Load(), time.Since(start); n != 3 || elapsed < 2*interval {
		t.Errorf("%d lookups in %v, want 3, at least %v apart", n, elapsed, interval)
	}
	fail.Store(false)
	if _, err := r.resolve(t.Context(), "svc.test."); err != nil {
		t.Errorf("resolve after the name appeared: %v", err)
	}

	// A wait for the next lookup ends with the context.
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Millisecond)
	defer cancel()
	fail.Store(true)
	r2 := newCachingResolver(f.lookup, 0, time.Hour, 0)
	r2.resolve(ctx, "svc.test.")
	if _, err := r2.resolve(ctx, "svc.test."); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("resolve while rate limited with an expiring context: %v, want deadline exceeded", err)
	}
}

func TestCachingDialerTriesEachAddress(t *testing.T) {
	t.Parallel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	port := l.Addr().(*net.TCPAddr).Port

	// 127.0.0.2 is on the loopback interface too, but nothing listens there.
	f := &fakeLookup{answer: func(string) ([]netip.Addr, error) {
		return []netip.Addr{netip.MustParseAddr("127.0.0.2"), netip.MustParseAddr("127.0.0.1")}, nil
	}}
	d := &cachingDialer{res: newCachingResolver(f.lookup, time.Second, time.Second, 0)}
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	c, err := d.DialContext(ctx, "tcp", fmt.Sprintf("two.test.:%d", port))
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	if got := c.RemoteAddr().String(); got != fmt.Sprintf("127.0.0.1:%d", port) {
		t.Errorf("connected to %s", got)
	}
	c.Close()

	// Only IPv4 addresses: a tcp6 dial has nothing to try.
	if _, err := d.DialContext(ctx, "tcp6", fmt.Sprintf("two.test.:%d", port)); err == nil || !strings.Contains(err.Error(), "no suitable address") {
		t.Errorf("tcp6 dial: %v, want no suitable address", err)
	}
	if n := f.calls.Load(); n != 1 {
		t.Errorf("%d lookups, want 1 (cached)", n)
	}
}

func TestDescribe(t *testing.T) {
	tests := []struct {
		err  error
		want string
	}{
		{&net.DNSError{Err: "no such host", Name: "a.test.", Server: "10.96.0.10:53", IsNotFound: true}, "lookup a.test.: no such host"},
		{&net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}, "connection refused"},
		{&httpStatusError{status: "503 Service Unavailable"}, "HTTP 503 Service Unavailable"},
		{&redirectedError{url: "http://b/x", err: &httpStatusError{status: "404 Not Found"}}, "http://b/x: HTTP 404 Not Found"},
		{&probeTimeoutError{after: 5 * time.Second}, "no answer within 5s"},
		{&tooManyRedirectsError{n: 5}, "stopped after 5 redirects"},
		{errors.New("something else"), "something else"},
	}
	for _, tt := range tests {
		if got := describe(tt.err); got != tt.want {
			t.Errorf("describe(%v) = %q, want %q", tt.err, got, tt.want)
		}
	}
}
