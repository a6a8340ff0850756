package enforcement

import (
	"context"
	"errors"
	"strings"

	"sealgate/enforcement/dane"
)

// daneOutcome is what DANE says about one MX host (RFC 7672 §2.2).
type daneOutcome int

const (
	daneNone    daneOutcome = iota // no DANE: insecure, or securely no TLSA
	daneAuth                       // usable TLSA records: authenticate with them
	daneEncrypt                    // only unusable records: TLS mandatory, no authentication
	daneDefer                      // TLSA lookup failed: the host must not be used now
)

// daneHost looks up the TLSA records of an MX host whose MX RRset and
// address records are secure. host is the MX name, expanded the name after
// CNAME expansion of its address records, domain the recipient domain.
func (e *Engine) daneHost(ctx context.Context, domain, host, expanded string) (daneOutcome, Requirement, error) {
	// RFC 7672 §2.2.3: with a secure CNAME expansion, TLSA records at
	// the expanded name come first, then at the original name.
	bases := []string{host}
	if expanded != "" && !strings.EqualFold(expanded, host) {
		bases = []string{expanded, host}
	}
	for _, base := range bases {
		res, err := e.DNS.LookupTLSA(ctx, "_25._tcp."+base)
		if err != nil {
			if errors.Is(err, ErrNotFound) {
				continue
			}
			return daneDefer, Requirement{}, err
		}
		if len(res.Records) == 0 {
			continue
		}
		if !res.Secure {
			// RFC 7672 §2.2: insecure TLSA records are ignored.
			return daneNone, Requirement{}, nil
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
		n = strings.ToLower(strings.TrimSuffix(n, "."))
		if n != "" && !seen[n] {
			seen[n] = true
			out = append(out, n)
		}
	}
	return out
}
