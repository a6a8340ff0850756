// Package dnstest provides an in-process fake DNS server for tests, in the
// style of net/http/httptest. It answers like a validating recursive
// resolver would: it follows CNAMEs within its own data (RFC 1034 §4.3.2),
// returns NXDOMAIN for names that do not exist and NODATA for names that
// exist without the asked type (RFC 2308, empty non-terminals included per
// RFC 8020), and sets the AD flag (RFC 4035 §3.2.3, RFC 6840 §5.7/§5.8) when
// every RRset of the answer was marked secure and the query set DO or AD.
// Fault switches per name and type produce SERVFAIL, REFUSED, NXDOMAIN,
// truncated UDP replies (RFC 7766) and silence.
//
// It listens on UDP and TCP on 127.0.0.1 with the same kernel-assigned port
// and records every query it receives.
package dnstest

import (
	"errors"
	"net"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// Query is one query the server received.
type Query struct {
	// Name is the query name as received.
	Name string
	Type uint16
	// Net is "udp" or "tcp".
	Net string
	// RD, AD and DO are the flags of the query; DO is false without an
	// OPT record.
	RD, AD, DO bool
	// UDPSize is the payload size of the OPT record, 0 without one.
	UDPSize uint16
}

// Server is a fake DNS server. Its zone data and switches may be changed
// while it serves.
type Server struct {
	tb   testing.TB
	addr string

	udp, tcp         *dns.Server
	udpDone, tcpDone chan struct{}
	closeOnce        sync.Once

	mu          sync.Mutex
	rrsets      map[key][]dns.RR
	secure      map[key]bool
	secureZones map[string]bool
	rcodes      map[key]int
	truncate    map[key]bool
	drop        map[key]bool
	noFollow    bool
	negativeTTL uint32
	queries     []Query
}

// key names an RRset; qtype dns.TypeANY in a switch means every type.
type key struct {
	name  string
	qtype uint16
}

// NewServer starts a server on 127.0.0.1, UDP and TCP on the same port, and
// closes it when the test ends.
func NewServer(tb testing.TB) *Server {
	tb.Helper()
	pc, l, err := listen()
	if err != nil {
		tb.Fatalf("dnstest: %v", err)
	}
	s := &Server{
		tb:          tb,
		addr:        l.Addr().String(),
		udpDone:     make(chan struct{}),
		tcpDone:     make(chan struct{}),
		rrsets:      make(map[key][]dns.RR),
		secure:      make(map[key]bool),
		secureZones: make(map[string]bool),
		rcodes:      make(map[key]int),
		truncate:    make(map[key]bool),
		drop:        make(map[key]bool),
	}
	started := make(chan struct{}, 2)
	notify := func() { started <- struct{}{} }
	s.udp = &dns.Server{PacketConn: pc, Handler: s, NotifyStartedFunc: notify}
	s.tcp = &dns.Server{Listener: l, Handler: s, NotifyStartedFunc: notify}
	go serve(s.udp, s.udpDone)
	go serve(s.tcp, s.tcpDone)
	for range 2 {
		select {
		case <-started:
		case <-s.udpDone:
			tb.Fatalf("dnstest: UDP server stopped at start")
		case <-s.tcpDone:
			tb.Fatalf("dnstest: TCP server stopped at start")
		}
	}
	tb.Cleanup(s.Close)
	return s
}

func serve(srv *dns.Server, done chan<- struct{}) {
	defer close(done)
	_ = srv.ActivateAndServe() // the error after Shutdown carries no news
}

// listen binds UDP on a kernel-assigned port of 127.0.0.1 and TCP on the
// same port, trying again with a new port if the TCP one is taken.
func listen() (net.PacketConn, net.Listener, error) {
	var errs []error
	for range 20 {
		pc, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			return nil, nil, err
		}
		port := pc.LocalAddr().(*net.UDPAddr).Port
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		if err == nil {
			return pc, l, nil
		}
		pc.Close()
		errs = append(errs, err)
	}
	return nil, nil, errors.Join(errs...)
}

// Addr returns the "127.0.0.1:port" address of both transports.
func (s *Server) Addr() string { return s.addr }

// Close stops the server and waits for its goroutines. It is called
// automatically at the end of the test; calling it again does nothing.
func (s *Server) Close() {
	s.closeOnce.Do(func() {
		for _, srv := range []*dns.Server{s.udp, s.tcp} {
			if err := srv.Shutdown(); err != nil {
				s.tb.Errorf("dnstest: shutdown: %v", err)
			}
		}
		for _, done := range []chan struct{}{s.udpDone, s.tcpDone} {
			select {
			case <-done:
			case <-time.After(5 * time.Second):
				s.tb.Errorf("dnstest: server goroutine did not stop")
			}
		}
	})
}

// Queries returns a copy of the queries received so far, in order.
func (s *Server) Queries() []Query {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Query(nil), s.queries...)
}

// ResetQueries forgets the queries received so far.
func (s *Server) ResetQueries() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.queries = nil
}
