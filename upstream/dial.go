package upstream

import (
	"context"
	"net"
	"syscall"
)

// dialTCP connects to addr (an IP literal and a port). A mark other than
// 0 is set as the socket's SO_MARK, for firewall rules that must tell
// sealgate's own connections apart. When own is not nil the socket is
// bound to a port before it connects and stays in own until it closes.
func dialTCP(ctx context.Context, addr string, mark int, own *Sockets) (net.Conn, error) {
	var entry *socketEntry
	var port uint16
	nd := net.Dialer{ControlContext: func(_ context.Context, network, _ string, rc syscall.RawConn) error {
		if mark != 0 {
			if err := setMark(rc, mark); err != nil {
				return err
			}
		}
		if own == nil {
			return nil
		}
		if entry != nil { // an earlier attempt of this dial
			own.release(port, entry)
			entry = nil
		}
		p, ok, err := bindPort(rc, network)
		if err != nil || !ok {
			return err
		}
		port, entry = p, own.reserve(p)
		return nil
	}}
	c, err := nd.DialContext(ctx, "tcp", addr)
	if err != nil {
		if entry != nil {
			own.release(port, entry)
		}
		return nil, err
	}
	if own == nil {
		return c, nil
	}
	local := c.LocalAddr().(*net.TCPAddr).AddrPort()
	if entry == nil || port != local.Port() {
		// No early bind on this system: known from now on.
		if entry != nil {
			own.release(port, entry)
		}
		port, entry = local.Port(), own.reserve(local.Port())
	}
	own.connected(entry, local)
	p, e := port, entry
	return &ownConn{Conn: c, release: func() { own.release(p, e) }}, nil
}

// CheckMark tells whether this process may set mark on its sockets, so
// that a setting that cannot work stops the start rather than every
// delivery.
func CheckMark(mark int) error {
	if mark == 0 {
		return nil
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	defer l.Close()
	c, err := dialTCP(context.Background(), l.Addr().String(), mark, nil)
	if err != nil {
		return err
	}
	return c.Close()
}
