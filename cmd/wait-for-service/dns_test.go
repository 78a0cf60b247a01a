package main

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/dns/dnsmessage"
)

func TestDNSNameStartsResolving(t *testing.T) {
	t.Parallel()
	dns := newTestDNS(t)
	const delay = 600 * time.Millisecond
	var switchedAt atomic.Pointer[time.Time]
	timer := time.AfterFunc(delay, func() {
		dns.Set("myservice.default.svc.cluster.local.", localhost())
		now := time.Now()
		switchedAt.Store(&now)
	})
	t.Cleanup(func() { timer.Stop() })

	r := runCLI(t, t.Context(), defaultTuning(), "--timeout", "10s", "--dns-server", dns.Addr,
		"dns:myservice.default.svc.cluster.local.")
	if r.code != exitReady {
		t.Fatalf("exit code = %d, want 0", r.code)
	}
	switched := switchedAt.Load()
	if switched == nil || r.end.Before(*switched) {
		t.Fatal("ready before the name resolved")
	}
	// About 1 s at most (one lookup per second); the p50 target is checked
	// in TestPacingMeetsTargets. Slack for a loaded machine.
	if lag := r.end.Sub(*switched); lag > 2500*time.Millisecond {
		t.Errorf("name detected %v after it started resolving, want about 1s at most", lag)
	}
	for _, w := range []string{
		"dns:myservice.default.svc.cluster.local. not ready: lookup myservice.default.svc.cluster.local.: no such host",
		"dns:myservice.default.svc.cluster.local. ready after ",
		"all 1 target ready after ",
	} {
		if !strings.Contains(r.stderr, w) {
			t.Errorf("log does not contain %q", w)
		}
	}
	if n, max := len(dns.Times("myservice.default.svc.cluster.local.", dnsmessage.TypeA)), 1+int(r.elapsed()/defaultTuning().lookupInterval); n < 2 || n > max {
		t.Errorf("%d A lookups in %v, want 2-%d (about one per second)", n, r.elapsed(), max)
	}
}

// TestDNSQueryRateWhileWaiting counts the queries the test DNS server gets
// for each target's name while the targets stay unready for 3 s: about
// one lookup per second per target, for dns: targets and for the names of
// tcp and http targets alike, while connects are retried more often.
func TestDNSQueryRateWhileWaiting(t *testing.T) {
	t.Parallel()
	dns := newTestDNS(t)
	dns.Set("up-http.test.", localhost())
	dns.Set("up-tcp.test.", localhost())
	var requests atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		requests.Add(1)
		http.Error(w, "starting", http.StatusServiceUnavailable)
	}))
	t.Cleanup(srv.Close)
	port := srv.Listener.Addr().(interface{ AddrPort() netip.AddrPort }).AddrPort().Port()
	closed := freePort(t)

	const window = 3 * time.Second
	names := map[string]string{ // name -> target
		"nx-dns.test.":  "dns:nx-dns.test.",
		"nx-tcp.test.":  "tcp:nx-tcp.test.:80",
		"nx-http.test.": fmt.Sprintf("http://nx-http.test.:%d/", port),
		"up-tcp.test.":  fmt.Sprintf("tcp:up-tcp.test.:%d", closed),
		"up-http.test.": fmt.Sprintf("http://up-http.test.:%d/ready", port),
	}
	args := []string{"--timeout", window.String(), "--dns-server", dns.Addr}
	for _, target := range names {
		args = append(args, target)
	}
	r := runCLI(t, t.Context(), defaultTuning(), args...)
	if r.code != exitFail {
		t.Fatalf("exit code = %d, want 1", r.code)
	}
	for name, target := range names {
		// About one lookup (an A and an AAAA question) per second, all
		// within the 3 s: at ~0 and then at least lookupInterval apart.
		// (Counted, not timed: the arrival times at the server say little on
		// a loaded machine.)
		n := len(dns.Times(name, dnsmessage.TypeA))
		// The upper bound is the point; a lookup slowed down by a loaded
		// machine may leave only one in the window.
		if most := 1 + int(window/defaultTuning().lookupInterval); n < 1 || n > most {
			t.Errorf("%s: %d A queries in %v, want 1-%d", target, n, window, most)
		}
		// +1: the last lookup's AAAA question may arrive before its A as the run ends.
		if all := dns.Count(name); all > 2*n+1 {
			t.Errorf("%s: %d queries in all for %d A queries, want at most A+AAAA", target, all, n)
		}
		if !strings.Contains(r.termLog, target+" (") {
			t.Errorf("termination log does not name %s", target)
		}
	}
	// Resolved addresses are reused: the HTTP target was probed (connected)
	// more often than its name was looked up (~8 probes for 3 lookups).
	lookups := len(dns.Times("up-http.test.", dnsmessage.TypeA))
	if n := int(requests.Load()); n <= lookups {
		t.Errorf("%d HTTP probes for %d lookups, want connects retried more often than lookups", n, lookups)
	}
	// Nothing goes on once the command has returned.
	before := dns.Count("nx-http.test.") + dns.Count("up-http.test.")
	time.Sleep(1200 * time.Millisecond)
	if after := dns.Count("nx-http.test.") + dns.Count("up-http.test."); after != before {
		t.Errorf("%d more queries after the command returned", after-before)
	}
}
