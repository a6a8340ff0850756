package upstream

import (
	"net"
	"syscall"
)

// SocketState is what a look at a connection's socket shows.
type SocketState int

// Socket states.
const (
	SocketUnknown SocketState = iota // not a socket (a pipe in tests)
	SocketQuiet                      // open, nothing waiting
	SocketData                       // open, bytes waiting to be read
	SocketClosed                     // the peer closed it (FIN), or it failed
)

// PeekSocket looks at the TCP socket under c (through TLS and wrappers
// that have a NetConn method) without consuming anything and without
// blocking.
func PeekSocket(c net.Conn) SocketState {
	for {
		u, ok := c.(interface{ NetConn() net.Conn })
		if !ok {
			break
		}
		c = u.NetConn()
	}
	sc, ok := c.(syscall.Conn)
	if !ok {
		return SocketUnknown
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return SocketClosed
	}
	state := SocketClosed
	err = rc.Read(func(fd uintptr) bool {
		var b [1]byte
		n, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		switch {
		case err == syscall.EAGAIN || err == syscall.EWOULDBLOCK:
			state = SocketQuiet
		case err == nil && n > 0:
			state = SocketData
		}
		return true
	})
	if err != nil {
		return SocketClosed
	}
	return state
}
