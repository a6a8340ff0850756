package tlsrpt

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"time"

	"sealgate/enforcement/netx"
)

// AddrLookup resolves a host name through the gateway's own resolver.
type AddrLookup = netx.AddrLookup

var errNoAddress = errors.New("collector has no address")

// NewHTTPClient returns the client for https rua URIs: every host name is
// resolved with lookup (never the system resolver), the certificate must
// be valid for the host under roots (nil: the system roots, which honour
// SSL_CERT_FILE), TLS 1.2 at least, no redirect is followed, and a POST
// takes at most timeout.
func NewHTTPClient(lookup AddrLookup, roots *x509.CertPool, timeout time.Duration) *http.Client {
	dial := (&net.Dialer{}).DialContext
	tr := &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			host, port, err := net.SplitHostPort(addr)
			if err != nil {
				return nil, err
			}
			p, err := strconv.ParseUint(port, 10, 16)
			if err != nil {
				return nil, err
			}
			conn, err := netx.DialResolved(ctx, lookup, dial, host, uint16(p), errNoAddress)
			if err != nil {
				return nil, fmt.Errorf("tlsrpt: %w", err)
			}
			return conn, nil
		},
		TLSClientConfig:   &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12},
		ForceAttemptHTTP2: true,
	}
	return &http.Client{
		Transport: tr,
		Timeout:   timeout,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
}
