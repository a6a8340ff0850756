package resolver

import (
	"context"
	"fmt"

	"github.com/miekg/dns"

	"sealgate/enforcement"
)

// rrset is the outcome of a lookup after CNAME expansion.
type rrset struct {
	// name is the canonical owner name of the records (the last target
	// of the CNAME chain, or the query name).
	name string
	// records of the wanted type at name; empty for NODATA.
	records []dns.RR
	// secure is true when every reply involved carried AD.
	secure bool
}

// canonicalName validates name and returns it lower-cased with a trailing
// dot.
func canonicalName(name string, qtype uint16) (string, error) {
	if _, ok := dns.IsDomainName(name); !ok || dns.CanonicalName(name) == "." {
		return "", &LookupError{
			Name:   fmt.Sprintf("%q", name),
			Type:   typeString(qtype),
			Reason: ErrInvalidName.Error(),
			Err:    enforcement.ErrNotFound,
			Cause:  ErrInvalidName,
		}
	}
	return dns.CanonicalName(name), nil
}

// resolve looks up name/qtype and follows CNAMEs: first within each reply
// (a recursive resolver puts the chain and the target's records in one
// answer), then with a new query for a target the reply did not resolve.
// At most MaxCNAMEHops CNAMEs are followed; a loop or a longer chain is a
// temporary failure.
func (r *Resolver) resolve(ctx context.Context, name string, qtype uint16) (rrset, error) {
	qname, err := canonicalName(name, qtype)
	if err != nil {
		return rrset{}, err
	}
	orig := qname
	seen := map[string]bool{qname: true}
	secure := true
	hops := 0
	for {
		msg, err := r.query(ctx, qname, qtype)
		if err != nil {
			return rrset{}, err
		}
		secure = secure && msg.AuthenticatedData
		cur := qname
		for {
			if records := recordsAt(msg.Answer, cur, qtype); len(records) > 0 {
				return rrset{name: cur, records: records, secure: secure}, nil
			}
			target, ok := cnameAt(msg.Answer, cur)
			if !ok {
				break
			}
			hops++
			if seen[target] {
				return rrset{}, newTemporary(orig, qtype, "CNAME loop at "+trimDot(target), nil)
			}
			if hops > MaxCNAMEHops {
				return rrset{}, newTemporary(orig, qtype, fmt.Sprintf("CNAME chain longer than %d", MaxCNAMEHops), nil)
			}
			seen[target] = true
			cur = target
		}
		if cur == qname {
			// NODATA at the end of the chain.
			return rrset{name: cur, secure: secure}, nil
		}
		qname = cur
	}
}

// recordsAt returns the records of type qtype owned by name (canonical).
func recordsAt(answer []dns.RR, name string, qtype uint16) []dns.RR {
	var out []dns.RR
	for _, rr := range answer {
		h := rr.Header()
		if h.Rrtype == qtype && h.Class == dns.ClassINET && dns.CanonicalName(h.Name) == name {
			out = append(out, rr)
		}
	}
	return out
}

// cnameAt returns the canonical target of the CNAME owned by name.
func cnameAt(answer []dns.RR, name string) (string, bool) {
	for _, rr := range answer {
		c, ok := rr.(*dns.CNAME)
		if ok && c.Hdr.Class == dns.ClassINET && dns.CanonicalName(c.Hdr.Name) == name {
			return dns.CanonicalName(c.Target), true
		}
	}
	return "", false
}
