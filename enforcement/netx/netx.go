// Package netx holds the function types of network operations that the
// packages which open connections take as injected dependencies, so that
// one dialer serves them all and tests can substitute their own.
package netx

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
)

// DialFunc opens a connection, like (*net.Dialer).DialContext: network is
// "tcp" (or "tcp4", "tcp6"), addr a host:port.
type DialFunc func(ctx context.Context, network, addr string) (net.Conn, error)

var _ DialFunc = (&net.Dialer{}).DialContext

// AddrLookup returns the addresses of host from the gateway's own
// resolver (never the system's).
type AddrLookup func(ctx context.Context, host string) ([]netip.Addr, error)

// DialResolved resolves host with lookup and connects to its addresses at
// port in turn with dial, returning the first connection. A host without
// addresses is noAddr (wrapped with the host).
func DialResolved(ctx context.Context, lookup AddrLookup, dial DialFunc, host string, port uint16, noAddr error) (net.Conn, error) {
	addrs, err := lookup(ctx, host)
	if err != nil {
		return nil, fmt.Errorf("resolving %s: %w", host, err)
	}
	if len(addrs) == 0 {
		return nil, fmt.Errorf("%w: %s", noAddr, host)
	}
	var errs []error
	for _, a := range addrs {
		conn, err := dial(ctx, "tcp", netip.AddrPortFrom(a.Unmap(), port).String())
		if err == nil {
			return conn, nil
		}
		errs = append(errs, err)
		if ctx.Err() != nil {
			break
		}
	}
	return nil, fmt.Errorf("connecting to %s port %d: %w", host, port, errors.Join(errs...))
}
