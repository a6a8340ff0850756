package mtasts

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"strings"
	"time"

	"golang.org/x/sync/singleflight"

	"sealgate/enforcement/dnsname"
	"sealgate/enforcement/netx"
)

// AddrLookup returns the addresses of host from the gateway's own resolver.
type AddrLookup = netx.AddrLookup

// Fetcher defaults.
const (
	DefaultTimeout = 60 * time.Second
	DefaultMaxBody = 64 << 10
	DefaultPort    = 443
)

// Fetch errors, wrapped in a *FetchError.
var (
	ErrInvalidDomain = errors.New("mta-sts: invalid domain")
	ErrNoLookup      = errors.New("mta-sts: fetcher has no address lookup")
	ErrNoAddress     = errors.New("policy host has no address")
	ErrRedirect      = errors.New("mta-sts: redirect refused")
	ErrHTTPStatus    = errors.New("mta-sts: HTTP status is not 200")
	ErrContentType   = errors.New("mta-sts: Content-Type is not text/plain")
	ErrBodyTooLarge  = errors.New("mta-sts: policy body too large")
)

// ErrorKind classifies a fetch failure by the TLS-RPT result type it
// reports (RFC 8460 §4.3.2).
type ErrorKind int

// Fetch error kinds.
const (
	// KindFetch: the policy could not be retrieved (DNS, connection,
	// timeout, HTTP status, redirect).
	KindFetch ErrorKind = iota + 1
	// KindInvalid: a policy was retrieved but is not acceptable (syntax,
	// Content-Type, size).
	KindInvalid
	// KindWebPKI: the policy host's certificate failed PKIX validation.
	KindWebPKI
)

// The TLS-RPT result types of the fetch error kinds (RFC 8460 §4.3.2).
// The enforcement package publishes them with the other result types.
const (
	ResultFetchError    = "sts-policy-fetch-error"
	ResultInvalid       = "sts-policy-invalid"
	ResultWebPKIInvalid = "sts-webpki-invalid"
)

// String returns the TLS-RPT result type, e.g. "sts-policy-fetch-error".
func (k ErrorKind) String() string {
	switch k {
	case KindFetch:
		return ResultFetchError
	case KindInvalid:
		return ResultInvalid
	case KindWebPKI:
		return ResultWebPKIInvalid
	default:
		return fmt.Sprintf("unknown(%d)", int(k))
	}
}

// FetchError is the error of every failed Fetch.
type FetchError struct {
	Domain string
	Kind   ErrorKind
	Err    error
}

func (e *FetchError) Error() string {
	return fmt.Sprintf("mta-sts policy fetch for %s: %s: %v", e.Domain, e.Kind, e.Err)
}

// Unwrap returns the underlying error.
func (e *FetchError) Unwrap() error { return e.Err }

// PolicyURL returns the well-known policy URL of domain (RFC 8461 §3.3).
func PolicyURL(domain string) string {
	return "https://" + PolicyHost(domain) + "/.well-known/mta-sts.txt"
}

// PolicyHost returns "mta-sts.<domain>".
func PolicyHost(domain string) string {
	return "mta-sts." + strings.TrimSuffix(domain, ".")
}

// Fetcher retrieves MTA-STS policies over HTTPS (RFC 8461 §3.3): no
// redirects, status 200 only, Content-Type text/plain, a bounded body,
// a certificate valid for mta-sts.<domain> under Roots, all within
// Timeout. Concurrent fetches for one domain share a single request.
// The zero value with LookupAddrs set is ready to use; a Fetcher must not
// be copied after first use.
type Fetcher struct {
	// LookupAddrs resolves the policy host. Required: the system
	// resolver is never used.
	LookupAddrs AddrLookup
	// Dial connects to a resolved address; nil uses a net.Dialer.
	Dial netx.DialFunc
	// Roots are the trusted CAs; nil means the system roots (which
	// honour SSL_CERT_FILE and SSL_CERT_DIR).
	Roots *x509.CertPool
	// Timeout bounds a whole fetch, body included; 0 means
	// DefaultTimeout.
	Timeout time.Duration
	// Port is the HTTPS port dialled; 0 means 443. Only tests change it;
	// the URL and Host header never carry a port.
	Port int
	// MaxBody is the largest accepted policy body; 0 means 64 KiB.
	MaxBody int64
	// Now is the clock for certificate validity; nil means time.Now.
	Now func() time.Time

	group singleflight.Group
}

// Fetch retrieves and parses the policy of domain. The caller's ctx limits
// how long this caller waits; the shared request itself runs for at most
// Timeout even if the caller that started it gives up. Every error is a
// *FetchError; the returned Policy belongs to the caller.
func (f *Fetcher) Fetch(ctx context.Context, domain string) (*Policy, error) {
	domain = dnsname.Normalize(domain)
	if !dnsname.ValidHostname(domain) {
		return nil, &FetchError{Domain: domain, Kind: KindFetch, Err: fmt.Errorf("%w: %q", ErrInvalidDomain, domain)}
	}
	ch := f.group.DoChan(domain, func() (any, error) {
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), f.timeout())
		defer cancel()
		return f.fetch(fctx, domain)
	})
	select {
	case <-ctx.Done():
		return nil, &FetchError{Domain: domain, Kind: KindFetch, Err: ctx.Err()}
	case r := <-ch:
		if r.Err != nil {
			return nil, r.Err
		}
		return r.Val.(*Policy).Clone(), nil
	}
}

func (f *Fetcher) timeout() time.Duration {
	if f.Timeout > 0 {
		return f.Timeout
	}
	return DefaultTimeout
}

func (f *Fetcher) maxBody() int64 {
	if f.MaxBody > 0 {
		return f.MaxBody
	}
	return DefaultMaxBody
}

func (f *Fetcher) port() int {
	if f.Port > 0 {
		return f.Port
	}
	return DefaultPort
}

func (f *Fetcher) fetch(ctx context.Context, domain string) (*Policy, error) {
	fail := func(kind ErrorKind, err error) (*Policy, error) {
		return nil, &FetchError{Domain: domain, Kind: kind, Err: err}
	}
	if f.LookupAddrs == nil {
		return fail(KindFetch, ErrNoLookup)
	}
	host := PolicyHost(domain)
	tr := &http.Transport{
		DialContext: f.dialContext(host),
		TLSClientConfig: &tls.Config{
			ServerName: host,
			RootCAs:    f.Roots,
			MinVersion: tls.VersionTLS12,
			Time:       f.Now,
		},
		DisableKeepAlives:      true,
		MaxResponseHeaderBytes: 64 << 10,
	}
	defer tr.CloseIdleConnections()
	client := &http.Client{
		Transport: tr,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, PolicyURL(domain), nil)
	if err != nil {
		return fail(KindFetch, err)
	}
	req.Header.Set("User-Agent", "sealgate")
	resp, err := client.Do(req)
	if err != nil {
		return fail(classify(err), err)
	}
	defer resp.Body.Close()

	switch {
	case resp.StatusCode >= 300 && resp.StatusCode < 400:
		return fail(KindFetch, fmt.Errorf("%w: %s to %q", ErrRedirect, resp.Status, resp.Header.Get("Location")))
	case resp.StatusCode != http.StatusOK:
		return fail(KindFetch, fmt.Errorf("%w: %s", ErrHTTPStatus, resp.Status))
	}
	ct := resp.Header.Get("Content-Type")
	if mt, _, err := mime.ParseMediaType(ct); err != nil || mt != "text/plain" {
		return fail(KindInvalid, fmt.Errorf("%w: %q", ErrContentType, ct))
	}
	limit := f.maxBody()
	if resp.ContentLength > limit {
		return fail(KindInvalid, fmt.Errorf("%w: Content-Length %d over %d bytes", ErrBodyTooLarge, resp.ContentLength, limit))
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
	if err != nil {
		return fail(KindFetch, fmt.Errorf("mta-sts: reading policy body: %w", err))
	}
	if int64(len(body)) > limit {
		return fail(KindInvalid, fmt.Errorf("%w: over %d bytes", ErrBodyTooLarge, limit))
	}
	p, err := ParsePolicy(body)
	if err != nil {
		return fail(KindInvalid, err)
	}
	return p, nil
}

// dialContext returns the transport's dial function: it resolves host with
// LookupAddrs and tries each address in turn on the configured port.
func (f *Fetcher) dialContext(host string) func(ctx context.Context, network, addr string) (net.Conn, error) {
	dial := f.Dial
	if dial == nil {
		dial = (&net.Dialer{}).DialContext
	}
	port := uint16(f.port())
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		if h, _, err := net.SplitHostPort(addr); err != nil || h != host {
			return nil, fmt.Errorf("mta-sts: unexpected dial to %q", addr)
		}
		conn, err := netx.DialResolved(ctx, netx.AddrLookup(f.LookupAddrs), dial, host, port, ErrNoAddress)
		if err != nil {
			return nil, fmt.Errorf("mta-sts: %w", err)
		}
		return conn, nil
	}
}

// classify tells a certificate failure from other transport errors.
func classify(err error) ErrorKind {
	var (
		verr *tls.CertificateVerificationError
		herr x509.HostnameError
		uerr x509.UnknownAuthorityError
		ierr x509.CertificateInvalidError
	)
	if errors.As(err, &verr) || errors.As(err, &herr) || errors.As(err, &uerr) || errors.As(err, &ierr) {
		return KindWebPKI
	}
	return KindFetch
}
