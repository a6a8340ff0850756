package enforcement

import "context"

// ModeTLSRequiredNo marks the requirement of a message whose sender asked,
// with the header field "TLS-Required: No" (RFC 8689 §5), that TLS policy
// failures be ignored.
const ModeTLSRequiredNo = "TLS-Required: No"

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
			route.Hosts = append(route.Hosts, relayHost(h, e.Relay, e.relaxedRelay(ctx, h)))
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

// relaxedRelay is the requirement of relay host h for a message that
// waives TLS policies: the recipient domain's policies, and the relay
// domain's MTA-STS and DANE, are waived, but not what authenticates the
// relay itself. The relay is sealgate's own next hop, which gets the
// relay credentials: its local policy entry applies, else its certificate
// must be valid for its name under the WebPKI roots.
func (e *Engine) relaxedRelay(ctx context.Context, h mxHost) Requirement {
	if e.Local != nil {
		if local, _ := e.Local.LookupNexthop(e.Relay.Host, e.Relay.Port, e.Relay.MXLookup); local != nil {
			if req, ok, err := e.localRequirement(ctx, local, e.Relay.Host, h, false); ok && err == nil {
				return req
			}
		}
	}
	return Requirement{Source: SourceFloor, Level: LevelVerify, Mode: ModeTLSRequiredNo, Names: []string{h.name}, NamesVouched: h.vouched, MinVersion: e.MinVersion}
}
