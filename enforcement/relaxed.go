package enforcement

import "context"

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
		hosts, _, err := e.relayHosts(ctx)
		if err != nil {
			f, _ := AsFailure(err)
			return nil, relayFailure(domain, e.Relay, f)
		}
		route := &Route{Domain: domain, Relay: true, PolicyDomain: e.Relay.PolicyDomain()}
		for _, h := range hosts {
			route.Hosts = append(route.Hosts, relayHost(h, e.Relay, relaxed(e.MinVersion)))
		}
		return route, nil
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
