package proxy

import (
	"context"
	"encoding/binary"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"sealgate/enforcement"
	"sealgate/upstream"
)

// sockaddr builds a Linux struct sockaddr_in or sockaddr_in6.
func sockaddr(ap netip.AddrPort) []byte {
	if ap.Addr().Is4() {
		b := make([]byte, 16)
		binary.NativeEndian.PutUint16(b, afInet)
		binary.BigEndian.PutUint16(b[2:], ap.Port())
		a := ap.Addr().As4()
		copy(b[4:], a[:])
		return b
	}
	b := make([]byte, 28)
	binary.NativeEndian.PutUint16(b, afInet6)
	binary.BigEndian.PutUint16(b[2:], ap.Port())
	binary.BigEndian.PutUint32(b[4:], 0x12345) // flow label
	a := ap.Addr().As16()
	copy(b[8:], a[:])
	binary.NativeEndian.PutUint32(b[24:], 3) // scope id
	return b
}

func TestParseSockaddr(t *testing.T) {
	tests := []struct {
		name    string
		in      []byte
		want    string
		wantErr bool
	}{
		{name: "IPv4", in: sockaddr(netip.MustParseAddrPort("10.0.2.2:25")), want: "10.0.2.2:25"},
		{name: "IPv4 high port", in: sockaddr(netip.MustParseAddrPort("192.0.2.1:65535")), want: "192.0.2.1:65535"},
		{name: "IPv6", in: sockaddr(netip.MustParseAddrPort("[fd00:2::2]:25")), want: "[fd00:2::2]:25"},
		{name: "IPv4-mapped IPv6", in: sockaddr(netip.MustParseAddrPort("[::ffff:10.0.2.2]:587")), want: "10.0.2.2:587"},
		{name: "IPv4 without padding", in: sockaddr(netip.MustParseAddrPort("10.1.2.3:25"))[:8], want: "10.1.2.3:25"},
		{name: "IPv4 cut short", in: sockaddr(netip.MustParseAddrPort("10.1.2.3:25"))[:7], wantErr: true},
		{name: "IPv6 cut short", in: sockaddr(netip.MustParseAddrPort("[fd00::1]:25"))[:23], wantErr: true},
		{name: "empty", in: nil, wantErr: true},
		{name: "unknown family", in: []byte{1, 0, 0, 25, 10, 0, 0, 1}, wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseSockaddr(tc.in)
			if tc.wantErr {
				if !errors.Is(err, errSockaddr) {
					t.Fatalf("parseSockaddr = %v, %v; want errSockaddr", got, err)
				}
				return
			}
			if err != nil || got.String() != tc.want {
				t.Fatalf("parseSockaddr = %v, %v; want %s", got, err, tc.want)
			}
		})
	}
}

func FuzzParseSockaddr(f *testing.F) {
	f.Add(sockaddr(netip.MustParseAddrPort("10.0.2.2:25")))
	f.Add(sockaddr(netip.MustParseAddrPort("[fd00:2::2]:25")))
	f.Add([]byte{2, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		ap, err := parseSockaddr(b)
		if err != nil {
			if !errors.Is(err, errSockaddr) {
				t.Fatalf("error %v is not errSockaddr", err)
			}
			return
		}
		if !ap.IsValid() {
			t.Fatalf("no error but invalid address from %x", b)
		}
		if back := sockaddr(ap); ap.Addr().Is4() && string(back[:8]) != string(b[:8]) && binary.NativeEndian.Uint16(b) == afInet {
			t.Fatalf("%x decoded to %v, which encodes as %x", b, ap, back)
		}
	})
}

func TestListenerAt(t *testing.T) {
	tests := []struct {
		name, listener, local string
		want                  bool
	}{
		{name: "same address", listener: "10.0.1.1:2525", local: "10.0.1.1:2525", want: true},
		{name: "wildcard", listener: "0.0.0.0:2525", local: "10.0.1.1:2525", want: true},
		{name: "IPv6 wildcard", listener: "[::]:2525", local: "10.0.1.1:2525", want: true},
		{name: "other port (tproxy)", listener: "0.0.0.0:2526", local: "10.0.2.2:25", want: false},
		{name: "other address (tproxy)", listener: "127.0.0.1:25", local: "10.0.2.2:25", want: false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			l, local := netip.MustParseAddrPort(tc.listener), netip.MustParseAddrPort(tc.local)
			l = netip.AddrPortFrom(l.Addr().Unmap(), l.Port())
			if got := listenerAt(l, local); got != tc.want {
				t.Errorf("listenerAt(%v, %v) = %v, want %v", l, local, got, tc.want)
			}
		})
	}
}

// A connection made straight to the listener is not intercepted, whether
// conntrack knows it or not: no original_dst.
func TestDirectConnectionNotIntercepted(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	c, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	in, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	if dst, how, ok := interception(in, l.Addr()); ok {
		t.Errorf("direct connection intercepted: %v by %s", dst, how)
	}
	// The same socket seen by a listener elsewhere: what tproxy hands over.
	other := &net.TCPAddr{IP: net.IPv4zero, Port: 1}
	dst, how, ok := interception(in, other)
	if !ok || how != InterceptTProxy || dst.String() != l.Addr().String() {
		t.Errorf("interception = %v, %q, %v; want %s by tproxy", dst, how, ok, l.Addr())
	}
}

// tproxyListener claims another address than its sockets', as a listener
// with IP_TRANSPARENT does for the connections nftables tproxy gives it.
type tproxyListener struct{ net.Listener }

func (tproxyListener) Addr() net.Addr { return &net.TCPAddr{IP: net.IPv6zero, Port: 1} }

type interceptCounter struct {
	mu sync.Mutex
	n  map[string]int
}

func (r *interceptCounter) ConnectionIntercepted(how string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.n == nil {
		r.n = map[string]int{}
	}
	r.n[how]++
}

func (r *interceptCounter) get(how string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.n[how]
}

func TestInterceptedSessionLogsOriginalDst(t *testing.T) {
	logs := &lineLog{}
	counts := &interceptCounter{}
	opts := withTestDefaults(Options{Intercepts: counts}, "127.0.0.1/32")
	opts.Log = slog.New(slog.NewTextHandler(logs, nil))
	s := New(opts)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go s.Serve(tproxyListener{l})
	t.Cleanup(func() { s.Close() })
	ts := &tcpServer{addr: l.Addr().String()}

	c := ts.dial(t, "127.0.0.2")
	c.reply(5 * time.Second)
	for _, cmd := range []string{"EHLO legacy.example.test", "MAIL FROM:<a@legacy.example.test>"} {
		if r := c.cmd(cmd); r[0] != '2' {
			t.Fatalf("%s: %q", cmd, r)
		}
	}
	if r := c.cmd("RCPT TO:<b@example.test>"); !strings.HasPrefix(r, "554 5.7.1") {
		t.Fatalf("RCPT from outside: %q", r)
	}
	c.cmd("QUIT")
	want := "original_dst=" + l.Addr().String()
	lines := logs.matching("client=127.0.0.2")
	if len(lines) == 0 {
		t.Fatal("no session log line")
	}
	for _, line := range lines {
		if !strings.Contains(line, want) {
			t.Errorf("session log line without %s: %s", want, line)
		}
	}
	if n := counts.get(InterceptTProxy); n != 1 {
		t.Errorf("intercepted by tproxy counted %d times, want 1", n)
	}

	// A connection to the listener itself has no original_dst.
	logs2 := &lineLog{}
	opts.Log = slog.New(slog.NewTextHandler(logs2, nil))
	opts.Intercepts = counts
	s2 := New(opts)
	l2, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go s2.Serve(l2)
	t.Cleanup(func() { s2.Close() })
	c2 := (&tcpServer{addr: l2.Addr().String()}).dial(t, "127.0.0.2")
	c2.reply(5 * time.Second)
	c2.cmd("EHLO legacy.example.test")
	c2.cmd("MAIL FROM:<a@legacy.example.test>")
	c2.cmd("RCPT TO:<b@example.test>")
	c2.cmd("QUIT")
	if len(logs2.matching("client=127.0.0.2")) == 0 {
		t.Fatal("no session log line")
	}
	if got := logs2.matching("original_dst"); len(got) != 0 {
		t.Errorf("direct connection logged original_dst: %q", got)
	}
	if n := counts.get(InterceptTProxy) + counts.get(InterceptRedirect); n != 1 {
		t.Errorf("%d interceptions counted, want 1", n)
	}
}

// ownAddrs pretends that connections from one address are ours.
type ownAddrs struct{ addr netip.Addr }

func (o ownAddrs) Owns(_ context.Context, peer netip.AddrPort) bool { return peer.Addr() == o.addr }

func TestOwnConnectionGets421(t *testing.T) {
	ts := newTCPServer(t, Options{OwnSockets: ownAddrs{netip.MustParseAddr("127.0.0.3")}})
	c := ts.dial(t, "127.0.0.3")
	r := c.reply(5 * time.Second)
	if !strings.HasPrefix(r, "421 4.3.0 gw.example.test mail loop: sealgate's own connection was redirected to itself") {
		t.Fatalf("greeting to our own connection: %q", r)
	}
	if !c.closed(5 * time.Second) {
		t.Error("connection left open after the 421")
	}
	if n := ts.metrics.get(ReasonLoop); n != 1 {
		t.Errorf("loop refusals counted: %d, want 1", n)
	}
	if len(ts.logs.matching("mail loop")) == 0 {
		t.Error("loop not logged")
	}
	other := ts.dial(t, "127.0.0.1")
	if r := other.reply(5 * time.Second); !strings.HasPrefix(r, "220 ") {
		t.Errorf("greeting to another client: %q", r)
	}
}

// The whole loop: sealgate's deliverer connects to sealgate's own
// listener (as an interception rule without exemption would make it). The
// listener answers 421 and the deliverer fails that host as unreachable
// (451 4.4.1 to the legacy server), never relaying to itself.
func TestSelfLoopFailsCleanly(t *testing.T) {
	own := &upstream.Sockets{}
	ts := newTCPServer(t, Options{OwnSockets: own})
	ap := netip.MustParseAddrPort(ts.addr)
	d := &upstream.Deliverer{Hostname: "gw.example.test", Verifier: &enforcement.Verifier{}, Sockets: own,
		Log: slog.New(slog.NewTextHandler(&lineLog{}, nil))}
	route := &enforcement.Route{Domain: "example.test", Hosts: []enforcement.Host{{
		Name: "mx.example.test", Addrs: []netip.Addr{ap.Addr()}, Port: int(ap.Port()),
		Req: enforcement.Requirement{Source: enforcement.SourceFloor, Level: enforcement.LevelEncrypt},
	}}}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := d.Open(ctx, route)
	if err == nil {
		c.Close()
		t.Fatal("delivered to ourselves")
	}
	f, ok := enforcement.AsFailure(err)
	if !ok || f.Kind != enforcement.KindUnreachable || !strings.Contains(f.Reason, "421") {
		t.Fatalf("Open = %v, want an unreachable host that said 421", err)
	}
	if n := ts.metrics.get(ReasonLoop); n != 1 {
		t.Errorf("loop refusals counted: %d, want 1", n)
	}
	eventually(t, "our socket forgotten", func() bool { return own.Len() == 0 })
}
