package enforcement

import (
	"context"
	"errors"
)

// ModeTLSRequiredNo marks the requirement of a message whose sender asked,
// with the header field "TLS-Required: No" (RFC 8689 §5), that TLS policy
// failures be ignored.
const ModeTLSRequiredNo = "encrypt (TLS-Required: No)"

// RelaxedRoute is the route for a message with "TLS-Required: No": every
// MX host of the domain, each requiring STARTTLS and a completed handshake
// (the encrypt floor, below which sealgate never goes), whatever DANE,
// MTA-STS or the local policy demand.
func (e *Engine) RelaxedRoute(ctx context.Context, domain string) (*Route, error) {
	if e.Relay != nil {
		r, err := e.relayRoute(ctx, domain)
		if err != nil {
			return nil, err
		}
		for i := range r.Hosts {
			r.Hosts[i].Req = relaxed(e.MinVersion)
		}
		return r, nil
	}
	mx, err := e.DNS.LookupMX(ctx, domain)
	if err != nil {
		return nil, dnsFailure(domain, "MX", err)
	}
	if mx.Null {
		return nil, &Failure{Kind: KindNullMX, Domain: domain, Reason: "domain accepts no mail (null MX)"}
	}
	route := &Route{Domain: domain}
	var lastErr error
	for _, name := range mx.Hosts {
		addrs, err := e.DNS.LookupAddrs(ctx, name)
		if err != nil || len(addrs.Addrs) == 0 {
			lastErr = err
			continue
		}
		route.Hosts = append(route.Hosts, Host{Name: name, Addrs: addrs.Addrs, Req: relaxed(e.MinVersion)})
	}
	if len(route.Hosts) == 0 {
		if errors.Is(lastErr, ErrDNSTemporary) {
			return nil, dnsFailure(domain, "address of MX", lastErr)
		}
		return nil, &Failure{Kind: KindUnreachable, Domain: domain, Reason: "no MX host has an address", Err: lastErr}
	}
	return route, nil
}

func relaxed(min uint16) Requirement {
	return Requirement{Source: SourceFloor, Level: LevelEncrypt, Mode: ModeTLSRequiredNo, MinVersion: min}
}
