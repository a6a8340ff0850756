package enforcement

import (
	"context"
	"errors"
	"strconv"
	"strings"

	"sealgate/enforcement/dane"
	"sealgate/enforcement/dnsname"
)

// daneOutcome is what DANE says about one MX host (RFC 7672 §2.2).
type daneOutcome int

const (
	daneNone    daneOutcome = iota // no DANE: insecure, or securely no TLSA
	daneAuth                       // usable TLSA records: authenticate with them
	daneEncrypt                    // only unusable records: TLS mandatory, no authentication
	daneDefer                      // TLSA lookup failed: the host must not be used now
)

// nameSecure reports whether the MX host name itself was answered
// securely: its address records, or at least its own CNAME record. Only
// then can its TLSA records count (RFC 7672 §2.2.3).
func (a AddrResult) nameSecure() bool { return a.Secure || a.AliasSecure }

// daneHost looks up the TLSA records of h, an MX host of domain whose MX
// RRset is secure and whose name was answered securely
// (h.addrs.nameSecure), or a relay host (RFC 7672 §2.2.2). The records are
// those of h's port (_25._tcp.<name>, _587._tcp.<name> for a relay on 587).
// The candidate TLSA base domains follow RFC 7672 §2.2.3:
//
//   - When host is a CNAME and the whole expansion (the chain and the
//     address records) is secure, the fully expanded name addrs.Name is
//     tried first.
//   - The original name host is tried next: when the expanded name has no
//     secure TLSA records (a denial, or an insecure answer), and alone when
//     the expansion is insecure but host's own CNAME is secure (an alias
//     into an unsigned zone).
//
// The first candidate with a secure, non-empty TLSA RRset decides, and
// becomes the SNI and the first reference identifier. A failed lookup
// (SERVFAIL, bogus, timeout) of any candidate tried defers: never a
// downgrade. No candidate with secure records means no DANE.
func (e *Engine) daneHost(ctx context.Context, domain string, h mxHost) (daneOutcome, Requirement, error) {
	host, addrs := h.name, h.addrs
	var bases []string
	if expanded := addrs.Name; addrs.Secure && expanded != "" && !strings.EqualFold(expanded, host) {
		bases = append(bases, expanded)
	}
	bases = append(bases, host)
	for _, base := range bases {
		res, err := e.DNS.LookupTLSA(ctx, "_"+strconv.Itoa(h.tlsaPort())+"._tcp."+base)
		if err != nil && !errors.Is(err, ErrNotFound) {
			return daneDefer, Requirement{}, err
		}
		if err != nil || len(res.Records) == 0 || !res.Secure {
			// No secure TLSA records here (RFC 7672 §2.2: insecure
			// ones are ignored): the next candidate.
			continue
		}
		usable := dane.Usable(res.Records)
		if len(usable) == 0 {
			return daneEncrypt, Requirement{
				Source:     SourceDANE,
				Level:      LevelEncrypt,
				Mode:       "(no usable TLSA records)",
				MinVersion: e.MinVersion,
				ServerName: base,
				Policy:     tlsaStrings(res.Records),
			}, nil
		}
		// Reference identifiers for DANE-TA (RFC 7672 §3.2.2): the
		// TLSA base domain, the MX host name, and the next-hop domain.
		names := uniqueNames(base, host, domain)
		return daneAuth, Requirement{
			Source:     SourceDANE,
			Level:      LevelDANE,
			Names:      names,
			TLSA:       usable,
			MinVersion: e.MinVersion,
			ServerName: base,
			Policy:     tlsaStrings(res.Records),
		}, nil
	}
	return daneNone, Requirement{}, nil
}

func tlsaStrings(rrs []dane.TLSA) []string {
	out := make([]string, len(rrs))
	for i, r := range rrs {
		out[i] = r.String()
	}
	return out
}

func uniqueNames(names ...string) []string {
	var out []string
	seen := map[string]bool{}
	for _, n := range names {
		n = dnsname.Normalize(n)
		if n != "" && !seen[n] {
			seen[n] = true
			out = append(out, n)
		}
	}
	return out
}
