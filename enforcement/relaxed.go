package enforcement

import (
	"context"

	"sealgate/enforcement/dnsname"
)

// ModeTLSRequiredNo marks the requirement of a message whose sender asked,
// with the header field "TLS-Required: No" (RFC 8689 §5), that TLS policy
// failures be ignored.
const ModeTLSRequiredNo = "TLS-Required: No"

// RelaxedRoute is the route for a message with "TLS-Required: No": every
// MX host of the domain, each requiring STARTTLS and a completed handshake
// (the encrypt floor, below which sealgate never goes), whatever DANE,
// MTA-STS or the local policy demand.
//
// Through a smarthost it is the relay route itself, with nothing waived:
// the relay is sealgate's own next hop and receives the relay
// credentials, and what authenticates it (its local policy entry, the
// TLSA records at _PORT._tcp.<host> when DNSSEC vouches for them, its
// domain's MTA-STS policy, else the WebPKI for its name) is exactly what
// an attacker on the path would make fail to get a weaker route. The
// recipient domain's policies play no part on a relay route anyway.
// Failures found on the way are not recorded again (Resolve did, and
// report mail, which takes this route too, is not recorded).
func (e *Engine) RelaxedRoute(ctx context.Context, domain string) (*Route, error) {
	if e.Relay != nil {
		quiet := *e
		quiet.Attempts = nil
		return quiet.relayRoute(ctx, dnsname.Normalize(domain))
	}
	_, hosts, err := e.lookupMX(ctx, domain)
	if err != nil {
		return nil, err
	}
	route := &Route{Domain: domain}
	for _, h := range hosts {
		route.Hosts = append(route.Hosts, Host{Name: h.name, Addrs: h.addrs.Addrs, Req: relaxed(e.MinVersion)})
	}
	return route, nil
}

func relaxed(min uint16) Requirement {
	return Requirement{Source: SourceFloor, Level: LevelEncrypt, Mode: ModeTLSRequiredNo, MinVersion: min}
}
