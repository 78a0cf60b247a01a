package main

import (
	"context"
	"math/rand/v2"
	"net"
	"net/netip"
	"time"
)

// lookupFunc resolves a host name to its addresses (A and AAAA).
type lookupFunc func(ctx context.Context, host string) ([]netip.Addr, error)

// newLookup returns a lookupFunc using Go's own resolver (no cgo), talking to
// dnsServer ("host:port") instead of the system's name servers if it is set.
func newLookup(dnsServer string) lookupFunc {
	r := &net.Resolver{PreferGo: true}
	if dnsServer != "" {
		r.Dial = func(ctx context.Context, network, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, dnsServer)
		}
	}
	return func(ctx context.Context, host string) ([]netip.Addr, error) {
		addrs, err := r.LookupNetIP(ctx, "ip", host)
		for i := range addrs {
			addrs[i] = addrs[i].Unmap()
		}
		return addrs, err
	}
}

// cachingResolver is the resolver of one target. It never sends more than one
// lookup per interval, whatever the probe rate, so that many waiting Pods do
// not flood the cluster DNS (the gap between lookups is interval plus a
// random extra of up to spread*interval, so that Pods started together drift
// apart); and it remembers successful answers for ttl so that connects can be
// retried more often than lookups.
// Failed lookups are not cached: the next probe waits for the next allowed
// lookup instead.
type cachingResolver struct {
	lookup   lookupFunc
	ttl      time.Duration // how long a successful answer is reused; 0 = never
	interval time.Duration // minimum time between two lookups
	spread   float64       // random extra gap, as a fraction of interval
	rnd      func() float64

	// sem serialises lookups; the fields below are only used while holding it.
	sem   chan struct{}
	next  time.Time // no lookup before this
	cache map[string]cacheEntry
}

type cacheEntry struct {
	addrs   []netip.Addr
	expires time.Time
}

func newCachingResolver(lookup lookupFunc, ttl, interval time.Duration, spread float64) *cachingResolver {
	return &cachingResolver{
		lookup:   lookup,
		ttl:      ttl,
		interval: interval,
		spread:   spread,
		rnd:      rand.Float64,
		sem:      make(chan struct{}, 1),
		cache:    map[string]cacheEntry{},
	}
}

// resolve returns the addresses of host, which may also be an IP literal.
func (r *cachingResolver) resolve(ctx context.Context, host string) ([]netip.Addr, error) {
	if ip, err := netip.ParseAddr(host); err == nil {
		return []netip.Addr{ip.Unmap()}, nil
	}
	select {
	case r.sem <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	defer func() { <-r.sem }()

	if e, ok := r.cache[host]; ok && time.Now().Before(e.expires) {
		return e.addrs, nil
	}
	if !sleep(ctx, time.Until(r.next)) {
		return nil, ctx.Err()
	}
	r.next = time.Now().Add(lookupGap(r.interval, r.spread, r.rnd))
	addrs, err := r.lookup(ctx, host)
	if err == nil && len(addrs) == 0 {
		err = &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
	}
	if err != nil {
		delete(r.cache, host)
		return nil, err
	}
	if r.ttl > 0 {
		r.cache[host] = cacheEntry{addrs: addrs, expires: time.Now().Add(r.ttl)}
	}
	return addrs, nil
}

// lookupGap is the time between two lookups: interval plus a random extra of
// up to spread*interval.
func lookupGap(interval time.Duration, spread float64, rnd func() float64) time.Duration {
	return interval + time.Duration(spread*rnd()*float64(interval))
}

// cachingDialer dials TCP through a cachingResolver. It is used for tcp:
// targets and as the DialContext of the HTTP transport of http(s) and fetch
// targets.
type cachingDialer struct {
	// life, if set, also ends every dial. (net/http detaches its dials
	// from the request's context, so they can outlive a probe.)
	life   context.Context
	res    *cachingResolver
	dialer net.Dialer
}

// minPartialTimeout is the least time given to each address when several
// share the remaining time of a dial (as net.Dialer does).
const minPartialTimeout = 2 * time.Second

func (d *cachingDialer) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	if d.life != nil {
		var cancel context.CancelFunc
		ctx, cancel = context.WithCancel(ctx)
		defer cancel()
		defer context.AfterFunc(d.life, cancel)()
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	ips, err := d.res.resolve(ctx, host)
	if err != nil {
		return nil, err
	}
	ips = filterFamily(network, ips)
	if len(ips) == 0 {
		return nil, &net.OpError{Op: "dial", Net: network, Err: &net.AddrError{Err: "no suitable address", Addr: host}}
	}
	var firstErr error
	for i, ip := range ips {
		dctx := ctx
		if deadline, ok := ctx.Deadline(); ok && i < len(ips)-1 {
			// Share the remaining time among the remaining addresses, so
			// that one black-holed address does not use it all.
			part := time.Until(deadline) / time.Duration(len(ips)-i)
			part = max(part, minPartialTimeout)
			if t := time.Now().Add(part); t.Before(deadline) {
				var cancel context.CancelFunc
				dctx, cancel = context.WithDeadline(ctx, t)
				defer cancel()
			}
		}
		c, err := d.dialer.DialContext(dctx, network, net.JoinHostPort(ip.String(), port))
		if err == nil {
			return c, nil
		}
		if firstErr == nil {
			firstErr = err
		}
		if ctx.Err() != nil {
			break
		}
	}
	return nil, firstErr
}

func filterFamily(network string, ips []netip.Addr) []netip.Addr {
	var want func(netip.Addr) bool
	switch network {
	case "tcp4":
		want = netip.Addr.Is4
	case "tcp6":
		want = netip.Addr.Is6
	default:
		return ips
	}
	var out []netip.Addr
	for _, ip := range ips {
		if want(ip) {
			out = append(out, ip)
		}
	}
	return out
}
