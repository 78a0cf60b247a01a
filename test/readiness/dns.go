package main

import (
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/net/dns/dnsmessage"
)

// dnsServer is a tiny authoritative UDP DNS server on 127.0.0.1: a name it
// knows gets its A record (and an empty NOERROR answer to other types), any
// other name NXDOMAIN. It counts the questions for each name.
type dnsServer struct {
	addr string
	conn net.PacketConn
	done chan struct{}

	mu    sync.Mutex
	names map[string]*nameState // lower-case FQDN
}

type nameState struct {
	addr      netip.Addr
	known     bool
	questions map[dnsmessage.Type]int64
	aTimes    []time.Time // A questions while unknown
}

func newDNSServer() (*dnsServer, error) {
	conn, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	s := &dnsServer{addr: conn.LocalAddr().String(), conn: conn, done: make(chan struct{}), names: map[string]*nameState{}}
	go s.serve()
	return s, nil
}

func (s *dnsServer) close() {
	s.conn.Close()
	<-s.done
}

func (s *dnsServer) state(name string) *nameState {
	name = strings.ToLower(name)
	st, ok := s.names[name]
	if !ok {
		st = &nameState{questions: map[dnsmessage.Type]int64{}}
		s.names[name] = st
	}
	return st
}

// set makes name resolve to addr from now on.
func (s *dnsServer) set(name string, addr netip.Addr) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.state(name)
	st.addr, st.known = addr, true
}

// setCounting is set, and returns when the A questions for name arrived
// while it was unknown.
func (s *dnsServer) setCounting(name string, addr netip.Addr) []time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.state(name)
	st.addr, st.known = addr, true
	return slices.Clone(st.aTimes)
}

// unknownTimes returns when the A questions for name arrived while it was unknown.
func (s *dnsServer) unknownTimes(name string) []time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.state(name).aTimes)
}

func (s *dnsServer) count(name string, typ dnsmessage.Type) int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.state(name).questions[typ]
}

func (s *dnsServer) serve() {
	defer close(s.done)
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

func (s *dnsServer) answer(req []byte) []byte {
	var p dnsmessage.Parser
	h, err := p.Start(req)
	if err != nil {
		return nil
	}
	q, err := p.Question()
	if err != nil {
		return nil
	}
	s.mu.Lock()
	st := s.state(q.Name.String())
	st.questions[q.Type]++
	addr, known := st.addr, st.known
	if !known && q.Type == dnsmessage.TypeA {
		st.aTimes = append(st.aTimes, time.Now())
	}
	s.mu.Unlock()

	rh := dnsmessage.Header{ID: h.ID, Response: true, Authoritative: true,
		RecursionDesired: h.RecursionDesired, RecursionAvailable: true, RCode: dnsmessage.RCodeSuccess}
	if !known {
		rh.RCode = dnsmessage.RCodeNameError
	}
	b := dnsmessage.NewBuilder(nil, rh)
	b.EnableCompression()
	if b.StartQuestions() != nil || b.Question(q) != nil || b.StartAnswers() != nil {
		return nil
	}
	if known && q.Type == dnsmessage.TypeA {
		if b.AResource(dnsmessage.ResourceHeader{Name: q.Name, Type: dnsmessage.TypeA, Class: dnsmessage.ClassINET},
			dnsmessage.AResource{A: addr.As4()}) != nil {
			return nil
		}
	}
	msg, err := b.Finish()
	if err != nil {
		return nil
	}
	return msg
}
