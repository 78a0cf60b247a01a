// Package testutil holds helpers shared by the tests and the measuring tools
// of several packages (cmd/ tests cannot import test/internal): a tiny DNS
// server and a buffer safe for concurrent writes.
package testutil

import (
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"

	"golang.org/x/net/dns/dnsmessage"
)

// DNSServer is a tiny authoritative UDP DNS server on 127.0.0.1: names it
// knows get their A record (and an empty NOERROR answer for other types);
// every other name gets NXDOMAIN. It records every question it receives.
type DNSServer struct {
	// Addr is host:port, for wait-for-service --dns-server.
	Addr string
	conn net.PacketConn
	done chan struct{}

	mu      sync.Mutex
	records map[string]netip.Addr // lower-case FQDN -> IPv4 address
	queries []Query
}

// Query is one question the server received.
type Query struct {
	Name  string // lower-case FQDN
	Type  dnsmessage.Type
	At    time.Time
	Known bool // the name resolved when it was asked
}

// StartDNS starts a DNSServer; Close stops it.
func StartDNS() (*DNSServer, error) {
	conn, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	s := &DNSServer{Addr: conn.LocalAddr().String(), conn: conn, done: make(chan struct{}), records: map[string]netip.Addr{}}
	go func() {
		defer close(s.done)
		s.serve()
	}()
	return s, nil
}

// Close stops the server and waits for it.
func (s *DNSServer) Close() {
	s.conn.Close()
	<-s.done
}

// Set makes name (an FQDN) resolve to addr from now on, and returns when the
// A questions for it arrived while it did not.
func (s *DNSServer) Set(name string, addr netip.Addr) []time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.records[strings.ToLower(name)] = addr
	return s.timesLocked(name, dnsmessage.TypeA, true)
}

// Times returns when questions of type typ for name were received.
func (s *DNSServer) Times(name string, typ dnsmessage.Type) []time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.timesLocked(name, typ, false)
}

// UnknownTimes returns when A questions for name arrived while it did not resolve.
func (s *DNSServer) UnknownTimes(name string) []time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.timesLocked(name, dnsmessage.TypeA, true)
}

func (s *DNSServer) timesLocked(name string, typ dnsmessage.Type, unknownOnly bool) []time.Time {
	var out []time.Time
	for _, q := range s.queries {
		if q.Name == strings.ToLower(name) && q.Type == typ && !(unknownOnly && q.Known) {
			out = append(out, q.At)
		}
	}
	return out
}

// Count returns how many questions of any type were received for name.
func (s *DNSServer) Count(name string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, q := range s.queries {
		if q.Name == strings.ToLower(name) {
			n++
		}
	}
	return n
}

func (s *DNSServer) serve() {
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

func (s *DNSServer) answer(req []byte) []byte {
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
	addr, known := s.records[name]
	s.queries = append(s.queries, Query{Name: name, Type: q.Type, At: time.Now(), Known: known})
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
