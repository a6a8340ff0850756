// Package netx holds the function types of network operations that the
// packages which open connections take as injected dependencies, so that
// one dialer serves them all and tests can substitute their own.
package netx

import (
	"context"
	"net"
)

// DialFunc opens a connection, like (*net.Dialer).DialContext: network is
// "tcp" (or "tcp4", "tcp6"), addr a host:port.
type DialFunc func(ctx context.Context, network, addr string) (net.Conn, error)

var _ DialFunc = (&net.Dialer{}).DialContext
