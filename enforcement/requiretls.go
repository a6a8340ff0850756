package enforcement

import "strings"

// Authenticates reports whether a connection under r authenticates the
// server well enough for a REQUIRETLS message (RFC 8689 §4.2.1): the
// server must be authenticated, and the name it is authenticated for
// must not come from DNS an attacker could forge. That holds for
//
//   - DANE (the MX RRset and the address records are DNSSEC-secure);
//   - a fingerprint pin (the key is the identity, names do not matter);
//   - certificate verification (MTA-STS enforce, local verify or secure,
//     a relay, a verify floor) against names that are vouched for
//     (NamesVouched: an MTA-STS policy in enforce mode, a DNSSEC-secure MX
//     RRset, the configuration), or against the roots of a tafile.
//
// Encryption alone and an MTA-STS policy in testing mode never qualify,
// and neither does a certificate for an MX name taken from unsigned DNS:
// whoever forged the MX answer can hold a valid certificate for the name
// it chose.
func (r Requirement) Authenticates() bool {
	return r.requireTLSGap() == ""
}

// requireTLSGap says why r does not qualify for REQUIRETLS, or "".
func (r Requirement) requireTLSGap() string {
	if r.Testing {
		return "testing mode"
	}
	switch r.Level {
	case LevelDANE, LevelFingerprint:
		return ""
	case LevelVerify:
		if r.NamesVouched || r.Roots != nil {
			return ""
		}
		return "MX name from DNS without DNSSEC"
	}
	return "not authenticated"
}

// RequireTLS returns the route for a REQUIRETLS message: restricted to the
// hosts that may carry it (Requirement.Authenticates) and marked
// REQUIRETLS, or a KindRequireTLS failure naming why when none may.
func (r *Route) RequireTLS() (*Route, error) {
	out := *r
	out.Hosts = nil
	out.REQUIRETLS = true
	var why []string
	for _, h := range r.Hosts {
		gap := h.Req.requireTLSGap()
		if gap == "" {
			out.Hosts = append(out.Hosts, h)
			continue
		}
		why = append(why, h.Name+" ("+h.Req.Describe()+": "+gap+")")
	}
	if len(out.Hosts) == 0 {
		return nil, &Failure{Kind: KindRequireTLS, Domain: r.Domain,
			Reason: "REQUIRETLS: no MX host is authenticated by DANE, MTA-STS enforce, a local policy or a DNSSEC-secure MX name: " + strings.Join(why, ", ")}
	}
	return &out, nil
}
