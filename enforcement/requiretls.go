package enforcement

import "strings"

// Authenticates reports whether a connection under r authenticates the
// server well enough for a REQUIRETLS message (RFC 8689 §4.2): DANE, an
// MTA-STS policy in enforce mode, or an authenticating local policy
// level. The floor is not enough: its MX names come from unsigned DNS.
func (r Requirement) Authenticates() bool {
	return r.Level.Authenticated() && !r.Testing && r.Source != SourceFloor
}

// RequireTLS returns the route restricted to the hosts that may carry a
// REQUIRETLS message, or a KindRequireTLS failure when none may.
func (r *Route) RequireTLS() (*Route, error) {
	out := *r
	out.Hosts = nil
	var why []string
	for _, h := range r.Hosts {
		if h.Req.Authenticates() {
			out.Hosts = append(out.Hosts, h)
			continue
		}
		why = append(why, h.Name+" ("+h.Req.Describe()+")")
	}
	if len(out.Hosts) == 0 {
		return nil, &Failure{Kind: KindRequireTLS, Domain: r.Domain,
			Reason: "REQUIRETLS: no MX host is authenticated by DANE, MTA-STS enforce or local policy: " + strings.Join(why, ", ")}
	}
	return &out, nil
}
