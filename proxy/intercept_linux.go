package proxy

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// soOriginalDst is SO_ORIGINAL_DST (linux/netfilter_ipv4.h) at level
// SOL_IP and IP6T_SO_ORIGINAL_DST (linux/netfilter_ipv6/ip6_tables.h) at
// level SOL_IPV6: both are 80.
const soOriginalDst = 80

// originalDst asks conntrack where a redirected connection was going
// (SO_ORIGINAL_DST for IPv4, IP6T_SO_ORIGINAL_DST for IPv6). For a
// connection that was not redirected it fails (no conntrack entry) or
// returns the connection's own local address.
func originalDst(c net.Conn) (netip.AddrPort, error) {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return netip.AddrPort{}, errors.New("not a socket")
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return netip.AddrPort{}, err
	}
	levels := []int{unix.SOL_IPV6}
	if r, ok := tcpAddrPort(c.RemoteAddr()); ok && r.Addr().Is4() {
		levels = []int{unix.SOL_IP} // also on an IPv6 socket (mapped)
	}
	var b [28]byte // sizeof(struct sockaddr_in6)
	var n int
	var serr error
	err = rc.Control(func(fd uintptr) {
		for _, level := range levels {
			n, serr = getsockopt(fd, level, soOriginalDst, b[:])
			if serr == nil {
				return
			}
		}
	})
	if err != nil {
		return netip.AddrPort{}, err
	}
	if serr != nil {
		return netip.AddrPort{}, serr
	}
	return parseSockaddr(b[:n])
}

// getsockopt reads an option of any size into b and returns its length.
func getsockopt(fd uintptr, level, opt int, b []byte) (int, error) {
	l := uint32(len(b))
	_, _, errno := unix.Syscall6(unix.SYS_GETSOCKOPT, fd, uintptr(level), uintptr(opt),
		uintptr(unsafe.Pointer(&b[0])), uintptr(unsafe.Pointer(&l)), 0)
	if errno != 0 {
		return 0, errno
	}
	return int(min(l, uint32(len(b)))), nil
}

// ListenTransparent listens on addr (host:port) with IP_TRANSPARENT and
// IPV6_TRANSPARENT set, so that an nftables tproxy rule can hand it
// connections made to any address; each accepted socket's local address
// is then the client's original destination. It needs CAP_NET_ADMIN.
func ListenTransparent(ctx context.Context, addr string) (net.Listener, error) {
	lc := net.ListenConfig{Control: func(network, _ string, rc syscall.RawConn) error {
		var serr error
		err := rc.Control(func(fd uintptr) {
			if network == "tcp4" {
				serr = unix.SetsockoptInt(int(fd), unix.SOL_IP, unix.IP_TRANSPARENT, 1)
				return
			}
			if serr = unix.SetsockoptInt(int(fd), unix.SOL_IPV6, unix.IPV6_TRANSPARENT, 1); serr == nil {
				// A dual-stack socket takes IPv4 connections too.
				serr = unix.SetsockoptInt(int(fd), unix.SOL_IP, unix.IP_TRANSPARENT, 1)
			}
		})
		if err != nil {
			return err
		}
		if serr != nil {
			return fmt.Errorf("setting IP_TRANSPARENT: %w", serr)
		}
		return nil
	}}
	return lc.Listen(ctx, "tcp", addr)
}
