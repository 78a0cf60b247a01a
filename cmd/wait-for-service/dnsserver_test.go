package main

import (
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/dns/dnsmessage"
)

// testDNS is a tiny authoritative UDP DNS server on 127.0.0.1: names it
// knows get their A record (and an empty NOERROR answer for other types);
// every other name gets NXDOMAIN. It records every question it receives.
type testDNS struct {
	addr string
	conn net.PacketConn

	mu      sync.Mutex
	records map[string]netip.Addr // lower-case FQDN -> IPv4 address
	queries []dnsQuery
}

type dnsQuery struct {
	name string // lower-case FQDN
	typ  dnsmessage.Type
	at   time.Time
}

func newTestDNS(t *testing.T) *testDNS {
	t.Helper()
	conn, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &testDNS{addr: conn.LocalAddr().String(), conn: conn, records: map[string]netip.Addr{}}
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.serve()
	}()
	t.Cleanup(func() {
		conn.Close()
		<-done
	})
	return s
}

// set makes name (an FQDN) resolve to addr from now on.
func (s *testDNS) set(name string, addr netip.Addr) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.records[strings.ToLower(name)] = addr
}

// queryTimes returns when questions of type typ for name were received.
func (s *testDNS) queryTimes(name string, typ dnsmessage.Type) []time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []time.Time
	for _, q := range s.queries {
		if q.name == strings.ToLower(name) && q.typ == typ {
			out = append(out, q.at)
		}
	}
	return out
}

// queryCount returns how many questions of any type were received for name.
func (s *testDNS) queryCount(name string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, q := range s.queries {
		if q.name == strings.ToLower(name) {
			n++
		}
	}
	return n
}

func (s *testDNS) serve() {
	buf := make([]byte, 4096)
	for {
		n, from, err := s.conn.ReadFrom(buf)
		if err != nil {
			return
		}
		if resp := s.answer(buf[:n]); resp != nil {
			_, _ = s.conn.WriteTo(resp, from)
		}
	}
}

func (s *testDNS) answer(req []byte) []byte {
	var p dnsmessage.Parser
	h, err := p.Start(req)
	if err != nil {
		return nil
	}
	q, err := p.Question()
	if err != nil {
		return nil
	}
	name := strings.ToLower(q.Name.String())

	s.mu.Lock()
	s.queries = append(s.queries, dnsQuery{name: name, typ: q.Type, at: time.Now()})
	addr, known := s.records[name]
	s.mu.Unlock()

	rh := dnsmessage.Header{
		ID:                 h.ID,
		Response:           true,
		Authoritative:      true,
		RecursionDesired:   h.RecursionDesired,
		RecursionAvailable: true,
		RCode:              dnsmessage.RCodeSuccess,
	}
	if !known {
		rh.RCode = dnsmessage.RCodeNameError
	}
	b := dnsmessage.NewBuilder(nil, rh)
	b.EnableCompression()
	if err := b.StartQuestions(); err != nil {
		return nil
	}
	if err := b.Question(q); err != nil {
		return nil
	}
	if err := b.StartAnswers(); err != nil {
		return nil
	}
	if known && q.Type == dnsmessage.TypeA {
		err := b.AResource(
			dnsmessage.ResourceHeader{Name: q.Name, Type: dnsmessage.TypeA, Class: dnsmessage.ClassINET, TTL: 0},
			dnsmessage.AResource{A: addr.As4()},
		)
		if err != nil {
			return nil
		}
	}
	msg, err := b.Finish()
	if err != nil {
		return nil
	}
	return msg
}
