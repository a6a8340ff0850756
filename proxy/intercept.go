package proxy

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"time"

	"sealgate/upstream"
)

// Transparent interception: a connection that the kernel redirected to
// our listener (nftables "redirect", a destination NAT: the original
// destination comes from conntrack through SO_ORIGINAL_DST or
// IP6T_SO_ORIGINAL_DST) or delivered to it unchanged ("tproxy" to a
// listener with IP_TRANSPARENT: the accepted socket's own address is the
// original destination) is served like any other. Its original
// destination only goes to the log and the metrics: routing stays by
// recipient domain, with our own MX lookup and policy. Whoever controls
// the legacy network or its DNS chose that address; trusting it as an MX
// would hand them the mail.

// How a connection was intercepted, the label of
// sealgate_intercepted_connections_total.
const (
	InterceptRedirect = "redirect"
	InterceptTProxy   = "tproxy"
)

// ReasonLoop is the refusal of a connection that is one of sealgate's own
// upstream connections, redirected back to it.
const ReasonLoop = "loop"

// OwnSockets recognises the local addresses of sealgate's own upstream
// connections (upstream.Sockets).
type OwnSockets interface {
	Owns(ctx context.Context, peer netip.AddrPort) bool
}

var _ OwnSockets = (*upstream.Sockets)(nil)

// InterceptRecorder counts intercepted connections, by how (one of the
// Intercept constants).
type InterceptRecorder interface {
	ConnectionIntercepted(how string)
}

// loopWait bounds the wait for one of our own sockets to finish its
// connect when an accepted connection comes from its port.
const loopWait = 5 * time.Second

// interception finds where a client meant to connect when the kernel
// brought the connection to a listener at listenAddr, and how; ok is
// false for a connection made to the listener itself.
func interception(c net.Conn, listenAddr net.Addr) (dst netip.AddrPort, how string, ok bool) {
	local, lok := tcpAddrPort(c.LocalAddr())
	if !lok {
		return netip.AddrPort{}, "", false
	}
	if d, err := originalDst(c); err == nil && d.IsValid() && d != local {
		return d, InterceptRedirect, true
	}
	if l, ok := tcpAddrPort(listenAddr); ok && !listenerAt(l, local) {
		return local, InterceptTProxy, true
	}
	return netip.AddrPort{}, "", false
}

// listenerAt reports whether a connection whose local address is local
// was made to a listener bound to l.
func listenerAt(l, local netip.AddrPort) bool {
	if l.Port() != local.Port() {
		return false
	}
	return l.Addr().IsUnspecified() || l.Addr() == local.Addr()
}

func tcpAddrPort(a net.Addr) (netip.AddrPort, bool) {
	ta, ok := a.(*net.TCPAddr)
	if !ok {
		return netip.AddrPort{}, false
	}
	ap := ta.AddrPort()
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), true
}

// Linux's address families in a struct sockaddr.
const (
	afInet  = 2
	afInet6 = 10
)

var errSockaddr = errors.New("not a struct sockaddr_in or sockaddr_in6")

// parseSockaddr decodes a Linux struct sockaddr_in or sockaddr_in6 as
// getsockopt returns it: the family in host order, the port in network
// order, then the address (after the flow label for IPv6).
func parseSockaddr(b []byte) (netip.AddrPort, error) {
	if len(b) < 2 {
		return netip.AddrPort{}, errSockaddr
	}
	switch binary.NativeEndian.Uint16(b) {
	case afInet:
		if len(b) < 8 {
			return netip.AddrPort{}, fmt.Errorf("%w: %d bytes of sockaddr_in", errSockaddr, len(b))
		}
		return netip.AddrPortFrom(netip.AddrFrom4([4]byte(b[4:8])), binary.BigEndian.Uint16(b[2:4])), nil
	case afInet6:
		if len(b) < 24 {
			return netip.AddrPort{}, fmt.Errorf("%w: %d bytes of sockaddr_in6", errSockaddr, len(b))
		}
		a := netip.AddrFrom16([16]byte(b[8:24])).Unmap()
		return netip.AddrPortFrom(a, binary.BigEndian.Uint16(b[2:4])), nil
	}
	return netip.AddrPort{}, fmt.Errorf("%w: family %d", errSockaddr, binary.NativeEndian.Uint16(b))
}

// interceptConn is an accepted connection with what interception told of
// it. Before the greeting it makes sure the client is not one of our own
// upstream connections; if it is, the client gets a 421 instead of the
// greeting and the session ends at once.
type interceptConn struct {
	net.Conn
	dst  netip.AddrPort // zero when not intercepted
	own  OwnSockets     // nil: no check
	s    *Server
	once sync.Once
	loop bool
}

// NetConn returns the accepted connection.
func (c *interceptConn) NetConn() net.Conn { return c.Conn }

func (c *interceptConn) Write(p []byte) (int, error) {
	c.once.Do(c.checkLoop)
	if c.loop {
		return 0, net.ErrClosed
	}
	return c.Conn.Write(p)
}

func (c *interceptConn) Read(p []byte) (int, error) {
	c.once.Do(c.checkLoop)
	if c.loop {
		return 0, io.EOF
	}
	return c.Conn.Read(p)
}

// checkLoop refuses our own connection, redirected back to us: relaying
// it would send each message to ourselves until something broke. The
// upstream side reads the 421 as its greeting and fails that MX host
// (451 4.4.1 to the legacy server if no other host works).
func (c *interceptConn) checkLoop() {
	if c.own == nil {
		return
	}
	peer, ok := tcpAddrPort(c.Conn.RemoteAddr())
	if !ok {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), loopWait)
	defer cancel()
	if !c.own.Owns(ctx, peer) {
		return
	}
	c.loop = true
	key := addrKey(peer.Addr())
	c.s.refused(ReasonLoop, key, c.logger(c.s.log))
	c.s.log.Error("mail loop: sealgate's own upstream connection was redirected to itself; exempt its traffic from the interception rule (SEALGATE_UPSTREAM_MARK and meta mark, or meta skuid)",
		c.logAttrs(slog.String("client", peer.String()))...)
	c.Conn.SetWriteDeadline(time.Now().Add(time.Second))
	io.WriteString(c.Conn, "421 4.3.0 "+c.s.opts.Hostname+" mail loop: sealgate's own connection was redirected to itself\r\n")
	c.Conn.Close()
}

// logAttrs adds original_dst to attrs when the connection was
// intercepted.
func (c *interceptConn) logAttrs(attrs ...any) []any {
	if c.dst.IsValid() {
		attrs = append(attrs, slog.String("original_dst", c.dst.String()))
	}
	return attrs
}

func (c *interceptConn) logger(l *slog.Logger) *slog.Logger {
	if c.dst.IsValid() {
		return l.With("original_dst", c.dst.String())
	}
	return l
}

// withOriginalDst adds original_dst to a session's logger when its
// connection was intercepted.
func withOriginalDst(l *slog.Logger, c net.Conn) *slog.Logger {
	for c != nil {
		if ic, ok := c.(*interceptConn); ok {
			return ic.logger(l)
		}
		u, ok := c.(interface{ NetConn() net.Conn })
		if !ok {
			break
		}
		c = u.NetConn()
	}
	return l
}

// intercept wraps an accepted connection for the interception log, the
// metric and the loop check.
func (s *Server) intercept(c net.Conn, listenAddr net.Addr) net.Conn {
	ic := &interceptConn{Conn: c, s: s, own: s.opts.OwnSockets}
	if dst, how, ok := interception(c, listenAddr); ok {
		ic.dst = dst
		if s.opts.Intercepts != nil {
			s.opts.Intercepts.ConnectionIntercepted(how)
		}
	}
	return ic
}
