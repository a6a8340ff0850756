package tlsrpt

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"time"
)

// AddrLookup resolves a host name through the gateway's own resolver.
type AddrLookup func(ctx context.Context, host string) ([]netip.Addr, error)

// NewHTTPClient returns the client for https rua URIs: every host name is
// resolved with lookup (never the system resolver), the certificate must
// be valid for the host under roots (nil: the system roots, which honour
// SSL_CERT_FILE), TLS 1.2 at least, no redirect is followed, and a POST
// takes at most timeout.
func NewHTTPClient(lookup AddrLookup, roots *x509.CertPool, timeout time.Duration) *http.Client {
	dialer := &net.Dialer{}
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
			addrs, err := lookup(ctx, host)
			if err != nil {
				return nil, fmt.Errorf("tlsrpt: resolving %s: %w", host, err)
			}
			var errs []error
			for _, a := range addrs {
				c, err := dialer.DialContext(ctx, "tcp", netip.AddrPortFrom(a.Unmap(), uint16(p)).String())
				if err == nil {
					return c, nil
				}
				errs = append(errs, err)
			}
			return nil, fmt.Errorf("tlsrpt: connecting to %s: %w", addr, errors.Join(append(errs, errors.New("no address"))...))
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
