package upstream

import (
	"context"
	"net"
	"net/netip"
	"sync"
)

// Sockets is the set of TCP sockets sealgate opened to MX hosts, by local
// port, from just before their connect until they close. The inbound side
// asks it whether a client is one of them: an interception rule that also
// catches sealgate's own port-25 traffic (no SEALGATE_UPSTREAM_MARK, no
// exemption by user) sends those connections back to sealgate, and
// serving them would relay each message to itself until something broke.
//
// A socket is bound to a port before it connects, so the kernel's
// redirect can never hand the inbound side a connection that is not in
// the set yet; its full local address is known once connect returns.
// The zero value is empty and ready.
type Sockets struct {
	mu     sync.Mutex
	byPort map[uint16]*socketEntry
}

type socketEntry struct {
	addr      netip.AddrPort // zero until connected
	connected chan struct{}  // closed once addr is set or the dial failed
}

// Owns reports whether peer is the local address of one of our live
// sockets. For a port whose socket is still connecting it waits for the
// connect to end (a connection to ourselves completes at once), or for
// ctx.
func (s *Sockets) Owns(ctx context.Context, peer netip.AddrPort) bool {
	peer = netip.AddrPortFrom(peer.Addr().Unmap(), peer.Port())
	for {
		s.mu.Lock()
		e := s.byPort[peer.Port()]
		s.mu.Unlock()
		if e == nil {
			return false
		}
		select {
		case <-e.connected:
			s.mu.Lock()
			a := e.addr
			s.mu.Unlock()
			// The entry may have been replaced by a newer socket on the
			// same port meanwhile: look again unless it answers.
			if a == peer {
				return true
			}
			s.mu.Lock()
			same := s.byPort[peer.Port()] == e
			s.mu.Unlock()
			if same {
				return false
			}
		case <-ctx.Done():
			return false
		}
	}
}

// reserve records a socket bound to port, before its connect.
func (s *Sockets) reserve(port uint16) *socketEntry {
	e := &socketEntry{connected: make(chan struct{})}
	s.mu.Lock()
	if s.byPort == nil {
		s.byPort = map[uint16]*socketEntry{}
	}
	s.byPort[port] = e
	s.mu.Unlock()
	return e
}

// connected records the local address of a connected socket.
func (s *Sockets) connected(e *socketEntry, local netip.AddrPort) {
	s.mu.Lock()
	e.addr = netip.AddrPortFrom(local.Addr().Unmap(), local.Port())
	s.mu.Unlock()
	close(e.connected)
}

// release forgets a socket that closed or failed to connect.
func (s *Sockets) release(port uint16, e *socketEntry) {
	s.mu.Lock()
	if s.byPort[port] == e {
		delete(s.byPort, port)
	}
	s.mu.Unlock()
	select {
	case <-e.connected:
	default:
		close(e.connected)
	}
}

// Len is the number of sockets in the set.
func (s *Sockets) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.byPort)
}

// ownConn leaves the set when it closes.
type ownConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *ownConn) Close() error {
	c.once.Do(c.release)
	return c.Conn.Close()
}

// NetConn returns the TCP connection.
func (c *ownConn) NetConn() net.Conn { return c.Conn }
