package enforcement

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"strings"

	"sealgate/enforcement/dnsname"
	"sealgate/enforcement/localpolicy"
	"sealgate/enforcement/mtasts"
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
	r.Host = dnsname.Normalize(host)
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

// PolicyDomain is the TLS-RPT policy domain of the sessions with the
// relay and of the failures found while resolving its route: the relay
// domain for a relay found by MX lookup (its MTA-STS policy, RFC 8461
// §3.4, and the TLSA records of its MX hosts, RFC 7672 §2.2.1, are the
// policies applied), and the host itself for a bracketed relay (its TLSA
// records at _PORT._tcp.<host>, RFC 7672 §2.2.2). Both are Host. The
// recipient domains are not: their policies play no part, and they would
// learn of a smarthost that is ours.
func (r RelayHost) PolicyDomain() string { return r.Host }

// String writes the relay in Postfix syntax.
func (r RelayHost) String() string {
	if r.MXLookup {
		return r.Host + ":" + strconv.Itoa(r.Port)
	}
	return "[" + r.Host + "]:" + strconv.Itoa(r.Port)
}

// relayRoute builds the route through the smarthost. Every recipient
// shares it. The requirement of each relay host is, in order of precedence:
//
//   - the local policy entry for the relay ("[host]:port", or "host:port"
//     for a relay found by MX lookup);
//   - DANE (RFC 7672 §2.2.2, §2.2.1): for a bracketed relay whose address
//     records are DNSSEC-secure, or an MX host of the relay domain when the
//     MX RRset and the host's addresses are secure, the TLSA records at
//     _PORT._tcp.<host> with the relay's port. Usable records make DANE
//     mandatory; a failed lookup defers the host; only unusable records
//     authenticate nothing and leave the rules below in force;
//   - MTA-STS (RFC 8461 §3.4) of the relay domain, for a relay found by MX
//     lookup: the relay domain is the next-hop domain whose MX hosts are
//     used. A bracketed relay has no MX set and no next-hop domain:
//     MTA-STS is keyed by the domain whose MX records are looked up, and a
//     policy of the host name's own domain speaks for that domain's MX
//     hosts, not for a submission server the configuration names;
//   - WebPKI for the host's name: every message goes through the relay,
//     so its certificate is checked even under the encrypt floor. It is
//     also the floor of an MTA-STS policy in testing mode.
//
// Failures found on the way (a DNS or TLSA lookup, a host a policy
// excludes, an MTA-STS policy that could not be had) are recorded for
// TLS-RPT as on an MX route, under the relay's policy domain
// (RelayHost.PolicyDomain), as are the route's sessions.
func (e *Engine) relayRoute(ctx context.Context, domain string) (*Route, error) {
	r := e.Relay
	pd := r.PolicyDomain()
	hosts, secureMX, err := e.relayHosts(ctx)
	if err != nil {
		e.recordDNS(pd, err)
		f, _ := AsFailure(err)
		return nil, relayFailure(domain, r, f)
	}
	var local *localpolicy.Entry
	if e.Local != nil {
		local, _ = e.Local.LookupNexthop(r.Host, r.Port, r.MXLookup)
	}
	route := &Route{Domain: domain, Relay: true, PolicyDomain: pd}
	var sts *mtasts.Policy
	if local == nil && r.MXLookup {
		if sts, route.STSProblem, route.STSReason, err = e.stsLookup(ctx, r.Host); err != nil {
			f, _ := AsFailure(err)
			return nil, relayFailure(domain, r, f)
		}
	}
	var deferred *Failure
	var excluded []string
	for _, h := range hosts {
		req, ok, err := e.relayRequirement(ctx, h, secureMX && h.addrs.nameSecure(), local, sts)
		switch {
		case err != nil:
			// Never downgrade: the host is unusable until its TLSA
			// records can be looked up.
			deferred = relayFailure(domain, r, &Failure{Kind: KindDNS, Policy: req.Describe(), Host: h.name,
				Reason: "TLSA lookup failed: " + err.Error(), Result: ResultDNSSECInvalid, Err: err})
			e.logf(ctx, "relay host deferred", "relay", r.String(), "host", h.name, "error", err)
			e.recordTLSALookup(pd, h.name, err)
		case !ok:
			excluded = append(excluded, h.name)
			e.recordExcluded(pd, h.name, req, local)
			e.logf(ctx, "relay host not allowed by policy", "relay", r.String(), "host", h.name, "policy", req.Describe())
		default:
			route.Hosts = append(route.Hosts, relayHost(h, r, req))
		}
	}
	switch {
	case len(route.Hosts) > 0:
		return route, nil
	case deferred != nil:
		return nil, deferred
	case local != nil:
		return nil, relayFailure(domain, r, &Failure{Kind: KindTLS, Policy: "local policy " + local.Level.String(),
			Reason: "no host has usable DNSSEC-secure TLSA records: " + strings.Join(excluded, ", "), Result: ResultDANERequired})
	default:
		return nil, relayFailure(domain, r, &Failure{Kind: KindTLS, Policy: "MTA-STS enforce",
			Reason: fmt.Sprintf("no MX host of %s matches its policy (mx: %s; MX hosts: %s)", r.Host, strings.Join(sts.MX, ", "), strings.Join(excluded, ", ")),
			Result: ResultValidationFailure})
	}
}

// relayHosts resolves the relay: the MX hosts of its domain with MX
// lookup, else the host itself. secure reports whether the hosts' names
// are DNSSEC-vouched for DANE: the MX RRset was secure, or the host is a
// bracketed relay, which has no MX RRset and needs only its own address
// records secure (RFC 7672 §2.2.2). Errors are *Failure values about the
// relay, which the caller turns into the recipient domain's with
// relayFailure.
func (e *Engine) relayHosts(ctx context.Context) ([]mxHost, bool, error) {
	r := e.Relay
	if r.MXLookup {
		mx, hosts, err := e.lookupMX(ctx, r.Host)
		if err != nil {
			return nil, false, err
		}
		for i := range hosts {
			hosts[i].port = r.Port
		}
		return hosts, mx.Secure, nil
	}
	addrs, err := e.DNS.LookupAddrs(ctx, r.Host)
	if err == nil && len(addrs.Addrs) == 0 {
		err = fmt.Errorf("%s: no address records", r.Host)
	}
	if err != nil {
		return nil, false, dnsFailure(r.Host, "address", err)
	}
	// The configuration names the host: no DNS answer chose it.
	return []mxHost{{name: r.Host, addrs: addrs, vouched: true, port: r.Port}}, true, nil
}

func relayHost(h mxHost, r *RelayHost, req Requirement) Host {
	return Host{Name: h.name, Addrs: h.addrs.Addrs, Port: r.Port, ImplicitTLS: r.Port == 465, Req: req}
}

// relayRequirement is the requirement of relay host h (see relayRoute).
// secure means h's TLSA records count. ok is false when a policy excludes
// the host; an error means its TLSA records could not be looked up.
func (e *Engine) relayRequirement(ctx context.Context, h mxHost, secure bool, local *localpolicy.Entry, sts *mtasts.Policy) (Requirement, bool, error) {
	if local != nil {
		return e.localRequirement(ctx, local, e.Relay.Host, h, secure)
	}
	if secure {
		outcome, req, err := e.daneHost(ctx, e.Relay.Host, h)
		switch outcome {
		case daneDefer:
			return Requirement{Source: SourceDANE}, false, err
		case daneAuth:
			return req, true, nil
		}
		// daneEncrypt (only unusable records) authenticates nothing: it
		// must not weaken MTA-STS or the relay's WebPKI check.
	}
	if sts != nil {
		req, ok := e.stsRequirement(sts, h.name)
		if req.Testing {
			req.Floor = LevelVerify
		}
		return req, ok, nil
	}
	return Requirement{Source: SourceLocal, Level: LevelVerify, Mode: "relay", Names: []string{h.name}, NamesVouched: h.vouched, MinVersion: e.MinVersion}, true, nil
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
