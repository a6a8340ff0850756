package upstream

import (
	"fmt"
	"syscall"

	"golang.org/x/sys/unix"
)

// setMark sets SO_MARK (needs CAP_NET_ADMIN).
func setMark(rc syscall.RawConn, mark int) error {
	var serr error
	if err := rc.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_MARK, mark)
	}); err != nil {
		return err
	}
	if serr != nil {
		return fmt.Errorf("setting SO_MARK %d: %w", mark, serr)
	}
	return nil
}

// bindPort binds a socket that is about to connect to the wildcard
// address and a port the kernel picks, and returns that port.
func bindPort(rc syscall.RawConn, network string) (uint16, bool, error) {
	var sa unix.Sockaddr
	switch network {
	case "tcp4":
		sa = &unix.SockaddrInet4{}
	case "tcp6":
		sa = &unix.SockaddrInet6{}
	default:
		return 0, false, nil
	}
	var port int
	var serr error
	if err := rc.Control(func(fd uintptr) {
		if serr = unix.Bind(int(fd), sa); serr != nil {
			return
		}
		var got unix.Sockaddr
		if got, serr = unix.Getsockname(int(fd)); serr != nil {
			return
		}
		switch a := got.(type) {
		case *unix.SockaddrInet4:
			port = a.Port
		case *unix.SockaddrInet6:
			port = a.Port
		}
	}); err != nil {
		return 0, false, err
	}
	if serr != nil {
		return 0, false, fmt.Errorf("binding a local port: %w", serr)
	}
	return uint16(port), port != 0, nil
}
