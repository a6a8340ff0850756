// Package resolver is sealgate's DNS stub resolver. It asks trusted
// validating recursive resolvers for MX (RFC 5321 §5.1, null MX RFC 7505),
// A and AAAA, TLSA (RFC 6698, RFC 7672) and TXT records and implements
// enforcement.DNS.
//
// Every query sets RD, the DO bit in an EDNS(0) OPT record (RFC 3225,
// RFC 6891, payload size 1232) and the AD bit (RFC 6840 §5.7), so that the
// validating resolver reports in the AD flag of its reply whether the answer
// was DNSSEC-secure (RFC 4035 §3.2.3). The AD flag is believed only from a
// resolver whose path to us nobody can tamper with (RFC 6840 §5.7, RFC 7672
// §2.1): by default a resolver on loopback; the replies of any other count
// as insecure. Truncated UDP replies are retried over
// TCP (RFC 7766), CNAME chains are followed (RFC 1034 §3.6.2) and failures are
// classified: NXDOMAIN wraps enforcement.ErrNotFound; SERVFAIL (which is how
// a validating resolver reports bogus data), REFUSED, FORMERR, timeouts and
// network errors wrap enforcement.ErrDNSTemporary. Concurrent identical
// questions share one exchange, and a Cache, when set, keeps replies for
// their TTL (negative ones for the SOA's negative TTL, RFC 2308 §5) with
// the trust decision on their AD flag; failures are never kept.
package resolver

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"strings"
	"time"

	"github.com/miekg/dns"

	"sealgate/enforcement"
)

// Defaults and limits.
const (
	// DefaultTimeout bounds one exchange when Resolver.Timeout is zero.
	DefaultTimeout = 5 * time.Second
	// EDNSSize is the UDP payload size announced in every query (the DNS
	// flag day 2020 value).
	EDNSSize = 1232
	// MaxCNAMEHops bounds the CNAME chain followed for one lookup.
	MaxCNAMEHops = 8
)

// ExchangeFunc sends one query m to one server ("host:port") over network
// ("udp" or "tcp") and returns the reply. It must honour ctx, which carries
// the deadline of the exchange.
type ExchangeFunc func(ctx context.Context, network, server string, m *dns.Msg) (*dns.Msg, error)

// Resolver implements enforcement.DNS over miekg/dns. The zero value has no
// servers and fails every lookup; set Servers. It is safe for concurrent use
// once configured, and must not be copied after first use.
type Resolver struct {
	// Servers are the recursive resolvers as "host:port", tried in order.
	Servers []string
	// TrustAD says whether the AD flag in the replies of a server (as
	// written in Servers) is believed; a reply from a server it does not
	// trust counts as insecure whatever its AD flag. Nil means
	// TrustLoopback.
	TrustAD func(server string) bool
	// Timeout bounds each exchange with one server over one transport
	// (a TCP retry after truncation gets its own). Zero means
	// DefaultTimeout.
	Timeout time.Duration
	// Exchange sends one query. Nil means NetExchange.
	Exchange ExchangeFunc
	// Shuffle permutes the n MX hosts of one preference. Nil means
	// math/rand/v2.Shuffle.
	Shuffle func(n int, swap func(i, j int))
	// Cache keeps replies for their TTL (see Cache). Nil means every
	// lookup asks the servers.
	Cache *Cache

	// flights shares one exchange among concurrent identical questions.
	flights flights
}

var _ enforcement.DNS = (*Resolver)(nil)

// TrustLoopback trusts the AD flag of a server whose address is on
// loopback (127.0.0.0/8, ::1): the reply never crossed a network. A host
// name, even "localhost", is not trusted.
func TrustLoopback(server string) bool {
	host, _, err := net.SplitHostPort(server)
	if err != nil {
		return false
	}
	a, err := netip.ParseAddr(host)
	return err == nil && a.Unmap().IsLoopback()
}

// TrustAll trusts the AD flag of every server: for an administrator who
// says that the path to a remote validating resolver is protected.
func TrustAll(string) bool { return true }

func (r *Resolver) trusts(server string) bool {
	if r.TrustAD != nil {
		return r.TrustAD(server)
	}
	return TrustLoopback(server)
}

// ADTrust splits Servers into those whose AD flag is believed and those
// whose replies count as insecure.
func (r *Resolver) ADTrust() (trusted, ignored []string) {
	for _, s := range r.Servers {
		if r.trusts(s) {
			trusted = append(trusted, s)
		} else {
			ignored = append(ignored, s)
		}
	}
	return trusted, ignored
}

// ServersFromResolvConf reads the nameservers of a resolv.conf file as
// "host:port" strings.
func ServersFromResolvConf(path string) ([]string, error) {
	cc, err := dns.ClientConfigFromFile(path)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	servers := make([]string, 0, len(cc.Servers))
	for _, s := range cc.Servers {
		servers = append(servers, net.JoinHostPort(s, cc.Port))
	}
	if len(servers) == 0 {
		return nil, fmt.Errorf("read %s: no nameserver lines", path)
	}
	return servers, nil
}

// NetExchange is the default ExchangeFunc: one exchange over the network
// with miekg/dns. Cancelling ctx aborts the exchange at once.
func NetExchange(ctx context.Context, network, server string, m *dns.Msg) (*dns.Msg, error) {
	timeout := DefaultTimeout
	if deadline, ok := ctx.Deadline(); ok {
		timeout = time.Until(deadline)
		if timeout <= 0 {
			return nil, context.DeadlineExceeded
		}
	}
	c := &dns.Client{Net: network, Timeout: timeout}
	conn, err := c.DialContext(ctx, server)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	// miekg/dns only takes the deadline from ctx; close the connection
	// on cancellation so that a blocked read returns.
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	resp, _, err := c.ExchangeWithConnContext(ctx, m, conn)
	if err != nil {
		if ctxErr := ctx.Err(); ctxErr != nil {
			return nil, errors.Join(ctxErr, err)
		}
		return nil, err
	}
	return resp, nil
}

func (r *Resolver) timeout() time.Duration {
	if r.Timeout > 0 {
		return r.Timeout
	}
	return DefaultTimeout
}

func (r *Resolver) exchangeFunc() ExchangeFunc {
	if r.Exchange != nil {
		return r.Exchange
	}
	return NetExchange
}

func (r *Resolver) shuffle(n int, swap func(i, j int)) {
	if r.Shuffle != nil {
		r.Shuffle(n, swap)
		return
	}
	rand.Shuffle(n, swap)
}

// newQuery builds the query for name (a canonical FQDN): RD, AD, and EDNS(0)
// with DO.
func newQuery(name string, qtype uint16) *dns.Msg {
	m := new(dns.Msg)
	m.SetQuestion(name, qtype)
	m.RecursionDesired = true
	m.AuthenticatedData = true
	m.SetEdns0(EDNSSize, true)
	return m
}

// query returns the reply to name/qtype: from the cache when it holds one,
// otherwise from the servers, concurrent identical questions sharing one
// exchange. NXDOMAIN ends the lookup with ErrNotFound. The reply may be
// shared: callers must not modify it.
func (r *Resolver) query(ctx context.Context, name string, qtype uint16) (*dns.Msg, error) {
	if len(r.Servers) == 0 {
		return nil, newTemporary(name, qtype, "no DNS servers configured", enforcement.ErrDNSUnanswered)
	}
	if err := ctx.Err(); err != nil {
		return nil, newTemporary(name, qtype, err.Error(), unanswered(err))
	}
	q := question{name: name, qtype: qtype}
	var resp *dns.Msg
	if r.Cache != nil {
		resp = r.Cache.get(q)
	}
	if resp == nil {
		var err error
		resp, err = r.flights.do(ctx, q, func(ctx context.Context) (*dns.Msg, error) {
			resp, err := r.ask(ctx, name, qtype)
			if err == nil && r.Cache != nil {
				r.Cache.put(q, resp)
			}
			return resp, err
		})
		if err != nil {
			var le *LookupError
			if !errors.As(err, &le) {
				// This caller gave up: err is ctx.Err().
				err = newTemporary(name, qtype, err.Error(), unanswered(err))
			}
			return nil, err
		}
	}
	if resp.Rcode == dns.RcodeNameError {
		return nil, &LookupError{Name: trimDot(name), Type: typeString(qtype), Reason: "NXDOMAIN", Err: enforcement.ErrNotFound}
	}
	return resp, nil
}

// ask asks the servers in order for name/qtype and returns the first reply
// with NOERROR or NXDOMAIN, its AD flag cleared unless the server is
// trusted. Every other failure moves on to the next server.
func (r *Resolver) ask(ctx context.Context, name string, qtype uint16) (*dns.Msg, error) {
	var failures []string
	var causes []error
	// answered: some server replied, even if with a failure.
	answered := false
	cause := func(errs ...error) error {
		if !answered {
			errs = append(errs, enforcement.ErrDNSUnanswered)
		}
		return errors.Join(errs...)
	}
	for _, server := range r.Servers {
		if err := ctx.Err(); err != nil {
			return nil, newTemporary(name, qtype, err.Error(), cause(err))
		}
		resp, err := r.exchangeServer(ctx, server, name, qtype)
		if err != nil {
			if ctxErr := ctx.Err(); ctxErr != nil {
				return nil, newTemporary(name, qtype, ctxErr.Error(), cause(ctxErr, err))
			}
			failures = append(failures, describe(server, len(r.Servers), exchangeFailure(err)))
			causes = append(causes, err)
			continue
		}
		answered = true
		if !r.trusts(server) {
			// Whoever sits on the path could have set it.
			resp.AuthenticatedData = false
		}
		switch resp.Rcode {
		case dns.RcodeSuccess, dns.RcodeNameError:
			if !matchesQuestion(resp, name, qtype) {
				failures = append(failures, describe(server, len(r.Servers), "reply does not match the question"))
				continue
			}
			return resp, nil
		default:
			failures = append(failures, describe(server, len(r.Servers), rcodeString(resp.Rcode)))
		}
	}
	return nil, newTemporary(name, qtype, strings.Join(failures, "; "), cause(causes...))
}

// unanswered is the cause of a lookup that got no reply because of err.
func unanswered(err error) error { return errors.Join(err, enforcement.ErrDNSUnanswered) }

// exchangeServer asks one server over UDP and again over TCP if the UDP
// reply was truncated.
func (r *Resolver) exchangeServer(ctx context.Context, server, name string, qtype uint16) (*dns.Msg, error) {
	resp, err := r.exchangeOnce(ctx, "udp", server, name, qtype)
	if err != nil {
		return nil, err
	}
	if !resp.Truncated {
		return resp, nil
	}
	return r.exchangeOnce(ctx, "tcp", server, name, qtype)
}

func (r *Resolver) exchangeOnce(ctx context.Context, network, server, name string, qtype uint16) (*dns.Msg, error) {
	ctx, cancel := context.WithTimeout(ctx, r.timeout())
	defer cancel()
	resp, err := r.exchangeFunc()(ctx, network, server, newQuery(name, qtype))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", network, err)
	}
	if resp == nil {
		return nil, fmt.Errorf("%s: %w", network, errNoReply)
	}
	return resp, nil
}

var errNoReply = errors.New("no reply")

func matchesQuestion(resp *dns.Msg, name string, qtype uint16) bool {
	if len(resp.Question) != 1 {
		return false
	}
	q := resp.Question[0]
	return q.Qtype == qtype && q.Qclass == dns.ClassINET && dns.CanonicalName(q.Name) == name
}

// exchangeFailure describes a failed exchange briefly: "timeout" for
// timeouts, the error text otherwise.
func exchangeFailure(err error) string {
	var ne net.Error
	if errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout()) {
		return "timeout"
	}
	return err.Error()
}

// describe prefixes a failure with its server when there are several.
func describe(server string, servers int, failure string) string {
	if servers == 1 {
		return failure
	}
	return server + ": " + failure
}

func rcodeString(rcode int) string {
	if s, ok := dns.RcodeToString[rcode]; ok {
		return s
	}
	return fmt.Sprintf("RCODE%d", rcode)
}

func typeString(qtype uint16) string {
	if s, ok := dns.TypeToString[qtype]; ok {
		return s
	}
	return fmt.Sprintf("TYPE%d", qtype)
}

// trimDot returns a canonical name without its trailing dot.
func trimDot(name string) string {
	return strings.TrimSuffix(name, ".")
}
