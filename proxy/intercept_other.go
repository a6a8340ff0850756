//go:build !linux

package proxy

import (
	"context"
	"errors"
	"net"
	"net/netip"
)

// originalDst fails: SO_ORIGINAL_DST exists on Linux only.
func originalDst(net.Conn) (netip.AddrPort, error) {
	return netip.AddrPort{}, errors.New("SO_ORIGINAL_DST exists on Linux only")
}

// ListenTransparent fails: tproxy exists on Linux only.
func ListenTransparent(context.Context, string) (net.Listener, error) {
	return nil, errors.New("transparent listeners (tproxy) exist on Linux only")
}
