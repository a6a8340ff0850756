package enforcement

import (
	"context"
	"errors"
	"net/netip"

	"sealgate/enforcement/dane"
)

// DNS is what enforcement needs from a resolver. Every result says whether
// the answer was DNSSEC-secure (the AD flag of a trusted validating
// resolver). Errors wrap ErrNotFound or ErrDNSTemporary so that callers can
// classify them with errors.Is.
type DNS interface {
	LookupMX(ctx context.Context, domain string) (MXResult, error)
	LookupAddrs(ctx context.Context, host string) (AddrResult, error)
	LookupTLSA(ctx context.Context, name string) (TLSAResult, error)
	LookupTXT(ctx context.Context, name string) (TXTResult, error)
}

var (
	// ErrNotFound means the name does not exist (NXDOMAIN).
	ErrNotFound = errors.New("domain not found")
	// ErrDNSTemporary means the lookup failed in a way that may pass:
	// SERVFAIL (including a bogus DNSSEC answer), timeout, refused.
	ErrDNSTemporary = errors.New("temporary DNS failure")
	// ErrDNSUnanswered comes with ErrDNSTemporary when no DNS server gave
	// any reply: timeouts, network errors, no server configured, or the
	// caller's deadline. It is trouble on sealgate's side of the lookup,
	// not a fact about the domain, so TLS-RPT does not report it to the
	// domain as "dnssec-invalid"; the mail is deferred all the same.
	ErrDNSUnanswered = errors.New("no DNS server answered")
)

// MXResult is the mail exchanger set of a domain.
type MXResult struct {
	// Hosts in the order to try: by preference, equal preferences
	// shuffled. Names are lower-case, without the trailing dot.
	Hosts []string
	// Secure is true when the MX RRset (or, for an implicit MX, the
	// address records of the domain) was DNSSEC-validated.
	Secure bool
	// Implicit is true when the domain has no MX records and its own
	// address records serve as MX (RFC 5321 §5.1).
	Implicit bool
	// Null is true for a null MX (RFC 7505): the domain accepts no mail.
	Null bool
}

// AddrResult holds the A and AAAA records of a host.
type AddrResult struct {
	// Name is the name after following CNAMEs (equal to the query name
	// when there was no CNAME), without trailing dot.
	Name  string
	Addrs []netip.Addr
	// Secure is true when every record of the answers (and the CNAME
	// chain) was validated.
	Secure bool
	// AliasSecure is true when the query name is a CNAME whose own record
	// was validated although the expansion was not (an alias into an
	// unsigned zone): the name may still have secure TLSA records
	// (RFC 7672 §2.2.3). Secure implies it.
	AliasSecure bool
}

// TLSAResult holds a TLSA RRset.
type TLSAResult struct {
	Records []dane.TLSA
	Secure  bool
}

// TXTResult holds the TXT records at a name, each record's strings joined.
type TXTResult struct {
	Records []string
	Secure  bool
}
