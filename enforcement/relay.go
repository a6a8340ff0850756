package enforcement

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"strings"
)

// RelayHost is a smarthost that receives all mail instead of the MX
// hosts of the recipient domains.
type RelayHost struct {
	// Host is the relay's name (or address).
	Host string
	// Port is the relay's port (25 if 0). Port 465 means TLS from the
	// first byte (RFC 8314); other ports use STARTTLS.
	Port int
	// MXLookup is true when the relay was written without brackets:
	// Host's MX records are looked up, as Postfix does.
	MXLookup bool
}

// ParseRelayHost parses "[host]:port", "[host]", "host:port" or "host" in
// the syntax of Postfix's relayhost.
func ParseRelayHost(s string) (RelayHost, error) {
	var r RelayHost
	host, port := s, ""
	if strings.HasPrefix(s, "[") {
		end := strings.Index(s, "]")
		if end < 0 {
			return r, fmt.Errorf("%q: missing ]", s)
		}
		host = s[1:end]
		rest := s[end+1:]
		if rest != "" {
			if !strings.HasPrefix(rest, ":") {
				return r, fmt.Errorf("%q: want [host]:port", s)
			}
			port = rest[1:]
		}
	} else {
		r.MXLookup = true
		if h, p, err := net.SplitHostPort(s); err == nil {
			host, port = h, p
		}
	}
	if host == "" || strings.ContainsAny(host, " \t/[]") {
		return r, fmt.Errorf("%q: no valid host", s)
	}
	r.Host = strings.ToLower(strings.TrimSuffix(host, "."))
	r.Port = 25
	if port != "" {
		n, err := strconv.Atoi(port)
		if err != nil || n < 1 || n > 65535 {
			return r, fmt.Errorf("%q: bad port %q", s, port)
		}
		r.Port = n
	}
	return r, nil
}

// String writes the relay in Postfix syntax.
func (r RelayHost) String() string {
	if r.MXLookup {
		return r.Host + ":" + strconv.Itoa(r.Port)
	}
	return "[" + r.Host + "]:" + strconv.Itoa(r.Port)
}

// relayRoute builds the route through the smarthost. Every recipient
// shares it. The relay is authenticated as the local policy says for it,
// and by default with WebPKI for its name: the provider's relay is where
// every message goes.
func (e *Engine) relayRoute(ctx context.Context, domain string) (*Route, error) {
	r := e.Relay
	var hosts []mxHost
	if r.MXLookup {
		_, found, err := e.lookupMX(ctx, r.Host)
		if err != nil {
			f, _ := AsFailure(err)
			return nil, relayFailure(domain, r, f)
		}
		hosts = found
	} else {
		addrs, err := e.DNS.LookupAddrs(ctx, r.Host)
		if err == nil && len(addrs.Addrs) == 0 {
			err = fmt.Errorf("%s: no address records", r.Host)
		}
		if err != nil {
			return nil, relayFailure(domain, r, dnsFailure(r.Host, "address", err))
		}
		// The configuration names the host: no DNS answer chose it.
		hosts = []mxHost{{name: r.Host, addrs: addrs, vouched: true}}
	}
	route := &Route{Domain: domain, Relay: true}
	for _, h := range hosts {
		route.Hosts = append(route.Hosts, Host{Name: h.name, Addrs: h.addrs.Addrs, Port: r.Port, ImplicitTLS: r.Port == 465, Req: e.relayRequirement(h)})
	}
	return route, nil
}

func (e *Engine) relayRequirement(h mxHost) Requirement {
	if req, ok := e.localRelayRequirement(h); ok {
		return req
	}
	return Requirement{Source: SourceLocal, Level: LevelVerify, Mode: "relay", Names: []string{h.name}, NamesVouched: h.vouched, MinVersion: e.MinVersion}
}

func relayFailure(domain string, r *RelayHost, f *Failure) *Failure {
	f.Domain = domain
	f.Reason = "relay " + r.String() + ": " + f.Reason
	if f.Kind == KindNoDomain || f.Kind == KindNullMX {
		// A missing relay is our configuration's fault, not the
		// recipient's: never bounce for it.
		f.Kind = KindUnreachable
	}
	return f
}
