package upstream

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// socketMark reads SO_MARK back from a connection's socket.
func socketMark(t *testing.T, c net.Conn) int {
	t.Helper()
	for {
		u, ok := c.(interface{ NetConn() net.Conn })
		if !ok {
			break
		}
		c = u.NetConn()
	}
	rc, err := c.(syscall.Conn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var mark int
	var serr error
	rc.Control(func(fd uintptr) { mark, serr = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_MARK) })
	if serr != nil {
		t.Fatalf("getsockopt SO_MARK: %v", serr)
	}
	return mark
}

func TestDialerSetsMark(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	for _, tc := range []struct {
		name string
		mark int
	}{
		{name: "none", mark: 0},
		{name: "set", mark: 0x5ea1},
		{name: "high bit", mark: 0x80000001},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := &Deliverer{Mark: tc.mark, Sockets: &Sockets{}}
			c, err := d.dial(context.Background(), l.Addr().String())
			if err != nil {
				t.Fatalf("dial with mark %#x: %v (setting SO_MARK needs CAP_NET_ADMIN)", tc.mark, err)
			}
			defer c.Close()
			if got := uint32(socketMark(t, c)); got != uint32(tc.mark) {
				t.Errorf("SO_MARK = %#x, want %#x", got, uint32(tc.mark))
			}
		})
	}
}

func TestCheckMark(t *testing.T) {
	if err := CheckMark(0); err != nil {
		t.Errorf("CheckMark(0) = %v", err)
	}
	if err := CheckMark(7); err != nil {
		t.Errorf("CheckMark(7) = %v (needs CAP_NET_ADMIN)", err)
	}
}

func TestSocketsKnowOurConnections(t *testing.T) {
	for _, network := range []string{"tcp4", "tcp6"} {
		t.Run(network, func(t *testing.T) {
			host := map[string]string{"tcp4": "127.0.0.1", "tcp6": "::1"}[network]
			l, err := net.Listen(network, net.JoinHostPort(host, "0"))
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()
			own := &Sockets{}
			d := &Deliverer{Sockets: own}
			c, err := d.dial(context.Background(), l.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			in, err := l.Accept()
			if err != nil {
				t.Fatal(err)
			}
			defer in.Close()
			peer := in.RemoteAddr().(*net.TCPAddr).AddrPort()
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			defer cancel()
			if !own.Owns(ctx, peer) {
				t.Errorf("Owns(%v) = false for our own connection", peer)
			}
			other := netip.AddrPortFrom(peer.Addr(), peer.Port()+1)
			if own.Owns(ctx, other) {
				t.Errorf("Owns(%v) = true for another port", other)
			}
			elsewhere := netip.AddrPortFrom(netip.MustParseAddr("10.9.9.9"), peer.Port())
			if own.Owns(ctx, elsewhere) {
				t.Errorf("Owns(%v) = true for another address on our port", elsewhere)
			}
			c.Close()
			if own.Owns(ctx, peer) || own.Len() != 0 {
				t.Errorf("a closed connection is still ours (%d in the set)", own.Len())
			}
		})
	}
}

func TestSocketsForgetFailedDials(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	own := &Sockets{}
	if _, err := dialTCP(context.Background(), addr, 0, own); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("dial to a closed port: %v", err)
	}
	if own.Len() != 0 {
		t.Errorf("%d sockets left after a failed dial", own.Len())
	}
}

// A connection from the port of a socket still connecting is judged once
// the connect ended: the redirected connection is accepted before the
// dialer learns its own address.
func TestSocketsOwnsWaitsForConnect(t *testing.T) {
	own := &Sockets{}
	e := own.reserve(40000)
	peer := netip.MustParseAddrPort("10.0.0.1:40000")
	got := make(chan bool)
	go func() { got <- own.Owns(context.Background(), peer) }()
	select {
	case v := <-got:
		t.Fatalf("Owns answered %v before the connect ended", v)
	case <-time.After(50 * time.Millisecond):
	}
	own.connected(e, peer)
	if !<-got {
		t.Error("Owns = false once connected")
	}

	e2 := own.reserve(40001)
	go func() { got <- own.Owns(context.Background(), netip.MustParseAddrPort("10.0.0.1:40001")) }()
	own.release(40001, e2)
	if <-got {
		t.Error("Owns = true for a dial that failed")
	}

	own.reserve(40002)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if own.Owns(ctx, netip.MustParseAddrPort("10.0.0.1:40002")) {
		t.Error("Owns = true after its context ended")
	}
}
