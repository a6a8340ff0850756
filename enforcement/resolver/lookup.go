package resolver

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"

	"github.com/miekg/dns"

	"sealgate/enforcement"
	"sealgate/enforcement/dane"
)

// LookupMX returns the mail exchangers of domain, by preference, equal
// preferences shuffled, names lower-case without trailing dot.
//
// A domain whose MX targets are all "." has a null MX (RFC 7505): Null is
// true and Hosts is empty; in a mixed set the "." targets are dropped. A
// domain without MX records (NODATA) has an implicit MX (RFC 5321 §5.1) if
// it has addresses: Hosts is [domain], Implicit is true, and Secure requires
// both the denial of the MX RRset and the address records to be secure.
// Without addresses either, the result is empty and not an error. NXDOMAIN
// wraps enforcement.ErrNotFound.
func (r *Resolver) LookupMX(ctx context.Context, domain string) (enforcement.MXResult, error) {
	set, err := r.resolve(ctx, domain, dns.TypeMX)
	if err != nil {
		return enforcement.MXResult{}, err
	}
	if len(set.records) == 0 {
		return r.implicitMX(ctx, domain, set.secure)
	}
	type mx struct {
		pref uint16
		host string
	}
	var mxs []mx
	for _, rr := range set.records {
		m, ok := rr.(*dns.MX)
		if !ok {
			return enforcement.MXResult{}, malformed(set.name, dns.TypeMX, rr, errNotType)
		}
		host := trimDot(dns.CanonicalName(m.Mx))
		if host == "" {
			continue // "." target: null MX
		}
		mxs = append(mxs, mx{pref: m.Preference, host: host})
	}
	if len(mxs) == 0 {
		return enforcement.MXResult{Null: true, Secure: set.secure}, nil
	}
	slices.SortStableFunc(mxs, func(a, b mx) int { return cmp.Compare(a.pref, b.pref) })
	// Keep the best preference of a host listed twice.
	seen := make(map[string]bool, len(mxs))
	mxs = slices.DeleteFunc(mxs, func(m mx) bool {
		dup := seen[m.host]
		seen[m.host] = true
		return dup
	})
	for start := 0; start < len(mxs); {
		end := start + 1
		for end < len(mxs) && mxs[end].pref == mxs[start].pref {
			end++
		}
		if end-start > 1 {
			run := mxs[start:end]
			r.shuffle(len(run), func(i, j int) { run[i], run[j] = run[j], run[i] })
		}
		start = end
	}
	res := enforcement.MXResult{Hosts: make([]string, 0, len(mxs)), Secure: set.secure}
	for _, m := range mxs {
		res.Hosts = append(res.Hosts, m.host)
	}
	return res, nil
}

func (r *Resolver) implicitMX(ctx context.Context, domain string, mxSecure bool) (enforcement.MXResult, error) {
	addrs, err := r.LookupAddrs(ctx, domain)
	if err != nil {
		return enforcement.MXResult{}, err
	}
	secure := mxSecure && addrs.Secure
	if len(addrs.Addrs) == 0 {
		return enforcement.MXResult{Secure: secure}, nil
	}
	return enforcement.MXResult{
		Hosts:    []string{trimDot(dns.CanonicalName(domain))},
		Implicit: true,
		Secure:   secure,
	}, nil
}

// LookupAddrs returns the A and then the AAAA addresses of host, queried in
// parallel. Name is the name after CNAME expansion. Secure is true when
// every answer used was secure; when it is not and host is a CNAME, a CNAME
// query for host says whether the alias itself is secure (AliasSecure). If
// one of the two lookups fails and the other has addresses, those are
// returned without error (and Secure reflects the answer used); otherwise
// the failure is returned, a temporary one in preference to NXDOMAIN.
func (r *Resolver) LookupAddrs(ctx context.Context, host string) (enforcement.AddrResult, error) {
	var v4, v6 rrset
	var err4, err6 error
	var wg sync.WaitGroup
	wg.Go(func() { v4, err4 = r.resolve(ctx, host, dns.TypeA) })
	wg.Go(func() { v6, err6 = r.resolve(ctx, host, dns.TypeAAAA) })
	wg.Wait()

	var sets []rrset
	switch {
	case err4 == nil && err6 == nil:
		sets = []rrset{v4, v6}
	case err4 == nil && len(v4.records) > 0:
		sets = []rrset{v4}
	case err6 == nil && len(v6.records) > 0:
		sets = []rrset{v6}
	default:
		return enforcement.AddrResult{}, pickError(err4, err6)
	}

	res := enforcement.AddrResult{Name: trimDot(sets[0].name), Secure: true}
	for _, set := range sets {
		res.Secure = res.Secure && set.secure
		if len(set.records) > 0 && len(res.Addrs) == 0 {
			res.Name = trimDot(set.name)
		}
		for _, rr := range set.records {
			addr, ok := addrOf(rr)
			if !ok {
				return enforcement.AddrResult{}, malformed(set.name, rr.Header().Rrtype, rr, errNotType)
			}
			res.Addrs = append(res.Addrs, addr)
		}
	}
	if !res.Secure && res.Name != trimDot(dns.CanonicalName(host)) {
		res.AliasSecure = r.aliasSecure(ctx, host)
	}
	return res, nil
}

// aliasSecure reports whether the CNAME record owned by host validates when
// asked for by itself: a validating resolver sets AD on the answer to a
// CNAME query from that RRset alone, whatever the security of the target.
// A failed query counts as insecure.
func (r *Resolver) aliasSecure(ctx context.Context, host string) bool {
	qname, err := canonicalName(host, dns.TypeCNAME)
	if err != nil {
		return false
	}
	msg, err := r.query(ctx, qname, dns.TypeCNAME)
	if err != nil {
		return false
	}
	_, ok := cnameAt(msg.Answer, qname)
	return ok && msg.AuthenticatedData
}

// pickError returns the first temporary error, else the first error.
func pickError(errs ...error) error {
	var first error
	for _, err := range errs {
		if err == nil {
			continue
		}
		if errors.Is(err, enforcement.ErrDNSTemporary) {
			return err
		}
		if first == nil {
			first = err
		}
	}
	return first
}

func addrOf(rr dns.RR) (netip.Addr, bool) {
	switch rr := rr.(type) {
	case *dns.A:
		return netip.AddrFromSlice(rr.A.To4())
	case *dns.AAAA:
		return netip.AddrFromSlice(rr.AAAA.To16())
	}
	return netip.Addr{}, false
}

// LookupTLSA returns the TLSA RRset at name (e.g. "_25._tcp.mx.example.test")
// after CNAME expansion, each record built by dane.ParseTLSA. A record whose
// data cannot be decoded fails the lookup with ErrMalformed (and
// enforcement.ErrDNSTemporary), naming the record. Judging usability and CNAME
// semantics (RFC 7672 §2.2.3) is the caller's business.
func (r *Resolver) LookupTLSA(ctx context.Context, name string) (enforcement.TLSAResult, error) {
	set, err := r.resolve(ctx, name, dns.TypeTLSA)
	if err != nil {
		return enforcement.TLSAResult{}, err
	}
	res := enforcement.TLSAResult{Secure: set.secure}
	for _, rr := range set.records {
		t, ok := rr.(*dns.TLSA)
		if !ok {
			return enforcement.TLSAResult{}, malformed(set.name, dns.TypeTLSA, rr, errNotType)
		}
		rec, err := dane.ParseTLSA(t.Usage, t.Selector, t.MatchingType, t.Certificate)
		if err != nil {
			return enforcement.TLSAResult{}, malformed(set.name, dns.TypeTLSA, rr, err)
		}
		res.Records = append(res.Records, rec)
	}
	return res, nil
}

// LookupTXT returns the TXT records at name after CNAME expansion, the
// strings of each record joined without separator (RFC 7208 §3.3 style,
// RFC 8461 §3.1). The strings are the bytes on the wire: a tab is a tab,
// a non-ASCII byte stays that byte, whatever the presentation form.
func (r *Resolver) LookupTXT(ctx context.Context, name string) (enforcement.TXTResult, error) {
	set, err := r.resolve(ctx, name, dns.TypeTXT)
	if err != nil {
		return enforcement.TXTResult{}, err
	}
	res := enforcement.TXTResult{Secure: set.secure}
	for _, rr := range set.records {
		t, ok := rr.(*dns.TXT)
		if !ok {
			return enforcement.TXTResult{}, malformed(set.name, dns.TypeTXT, rr, errNotType)
		}
		var b strings.Builder
		for _, part := range t.Txt {
			b.WriteString(txtBytes(part))
		}
		res.Records = append(res.Records, b.String())
	}
	return res, nil
}

// txtBytes undoes the escaping with which miekg/dns presents a
// character-string in TXT.Txt, exactly as its packer reads it: "\DDD" is
// the byte of the three decimal digits, "\X" is X for any other
// character, and a lone "\" at the end is dropped. Unpacking a message
// escapes '"', '\\' and every byte outside 0x20-0x7E that way.
func txtBytes(s string) string {
	if strings.IndexByte(s, '\\') < 0 {
		return s
	}
	b := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		if s[i] != '\\' {
			b = append(b, s[i])
			continue
		}
		i++
		switch {
		case i == len(s):
		case i+2 < len(s) && isDigit(s[i]) && isDigit(s[i+1]) && isDigit(s[i+2]):
			// The packer's byte arithmetic: values over 255 wrap.
			b = append(b, byte(int(s[i]-'0')*100+int(s[i+1]-'0')*10+int(s[i+2]-'0')))
			i += 2
		default:
			b = append(b, s[i])
		}
	}
	return string(b)
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

var errNotType = errors.New("record data does not match its type")

// malformed reports a record that cannot be used, quoting it.
func malformed(name string, qtype uint16, rr dns.RR, err error) error {
	text := strings.TrimPrefix(rr.String(), rr.Header().String())
	return newTemporary(name, qtype,
		fmt.Sprintf("%s %q: %v", ErrMalformed, text, err),
		fmt.Errorf("%w: %w", ErrMalformed, err))
}
