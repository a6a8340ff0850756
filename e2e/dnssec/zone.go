package dnssec

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/miekg/dns"
)

const (
	// rootOrigin is the zone the harness always makes, signs and uses as the
	// trust anchor; every Zone must sit below it.
	rootOrigin = "test."
	// defaultTTL is the $TTL of every generated zone file.
	defaultTTL = 300
)

// Sentinel errors for zones the harness cannot build.
var (
	ErrBadOrigin     = errors.New(`dnssec: zone origin must be a name below "test."`)
	ErrDuplicateZone = errors.New("dnssec: zone given twice")
	ErrOutOfZone     = errors.New("dnssec: record outside its zone")
	ErrBadRecord     = errors.New("dnssec: bad zone-file line")
	ErrBreakUnsigned = errors.New("dnssec: Break needs Sign")
)

// zonePlan is one zone as it will be written: its complete records and its
// place in the tree.
type zonePlan struct {
	origin  string
	sign    bool
	broken  bool
	parent  *zonePlan // nil for the root zone
	records []dns.RR
}

// fileName is the name of the unsigned zone file inside the zones directory.
func (p *zonePlan) fileName() string { return p.origin + "zone" }

// planZones validates zones, completes each with SOA, NS and glue, adds the
// signed root zone test. and the delegations (NS and glue, not yet DS) into
// each parent. The result is ordered deepest first, so a child is always
// signed before the parent that must carry its DS record. nsAddr is the
// address put in generated glue.
func planZones(zones []Zone, nsAddr netip.Addr) ([]*zonePlan, error) {
	root := &zonePlan{origin: rootOrigin, sign: true}
	root.records = completeApex(rootOrigin, nil, nsAddr)
	plans := []*zonePlan{root}
	seen := map[string]bool{rootOrigin: true}
	for _, z := range zones {
		origin := dns.CanonicalName(z.Origin)
		if _, ok := dns.IsDomainName(origin); !ok || origin == rootOrigin || !dns.IsSubDomain(rootOrigin, origin) {
			return nil, fmt.Errorf("%w: %q", ErrBadOrigin, z.Origin)
		}
		if seen[origin] {
			return nil, fmt.Errorf("%w: %s", ErrDuplicateZone, origin)
		}
		seen[origin] = true
		if z.Break && !z.Sign {
			return nil, fmt.Errorf("%w: zone %s", ErrBreakUnsigned, origin)
		}
		rrs, err := parseRecords(origin, z.Records)
		if err != nil {
			return nil, err
		}
		plans = append(plans, &zonePlan{
			origin:  origin,
			sign:    z.Sign,
			broken:  z.Break,
			records: completeApex(origin, rrs, nsAddr),
		})
	}
	// Deepest first; ties by name so the order is stable.
	slices.SortStableFunc(plans, func(a, b *zonePlan) int {
		if d := dns.CountLabel(b.origin) - dns.CountLabel(a.origin); d != 0 {
			return d
		}
		return strings.Compare(a.origin, b.origin)
	})
	for _, p := range plans {
		if p == root {
			continue
		}
		p.parent = closestParent(p, plans)
		p.parent.records = append(p.parent.records, delegation(p)...)
	}
	return plans, nil
}

// closestParent returns the deepest other plan whose origin encloses p's.
// The root zone always qualifies.
func closestParent(p *zonePlan, plans []*zonePlan) *zonePlan {
	var best *zonePlan
	for _, q := range plans {
		if q == p || !dns.IsSubDomain(q.origin, p.origin) {
			continue
		}
		if best == nil || dns.CountLabel(q.origin) > dns.CountLabel(best.origin) {
			best = q
		}
	}
	return best
}

// parseRecords reads zone-file lines relative to origin and checks that
// every owner lies in the zone.
func parseRecords(origin string, lines []string) ([]dns.RR, error) {
	src := fmt.Sprintf("$ORIGIN %s\n$TTL %d\n%s\n", origin, defaultTTL, strings.Join(lines, "\n"))
	zp := dns.NewZoneParser(strings.NewReader(src), origin, origin+"zone")
	var rrs []dns.RR
	for rr, ok := zp.Next(); ok; rr, ok = zp.Next() {
		if !dns.IsSubDomain(origin, rr.Header().Name) {
			return nil, fmt.Errorf("%w: %s in zone %s", ErrOutOfZone, rr.Header().Name, origin)
		}
		rrs = append(rrs, rr)
	}
	if err := zp.Err(); err != nil {
		return nil, fmt.Errorf("%w in zone %s: %w", ErrBadRecord, origin, err)
	}
	return rrs, nil
}

// completeApex adds what a served zone needs and the caller left out: an
// NS record at the apex (ns.<origin>, with an address record at nsAddr
// unless one exists) and a SOA record naming that server.
func completeApex(origin string, rrs []dns.RR, nsAddr netip.Addr) []dns.RR {
	out := slices.Clone(rrs)
	ns := apexNS(origin, out)
	if len(ns) == 0 {
		name := "ns." + origin
		out = append(out, &dns.NS{Hdr: hdr(origin, dns.TypeNS), Ns: name})
		ns = []string{name}
		if len(addressRecords(name, out)) == 0 {
			out = append(out, addressRecord(name, nsAddr))
		}
	}
	if !slices.ContainsFunc(out, func(rr dns.RR) bool { return isApex(rr, origin, dns.TypeSOA) }) {
		soa := &dns.SOA{
			Hdr:     hdr(origin, dns.TypeSOA),
			Ns:      ns[0],
			Mbox:    "hostmaster." + origin,
			Serial:  1,
			Refresh: 3600,
			Retry:   600,
			Expire:  86400,
			Minttl:  defaultTTL,
		}
		out = append([]dns.RR{soa}, out...)
	}
	return out
}

// delegation returns what child's parent must hold: child's apex NS RRset
// and, for name servers inside child, their address records (glue).
func delegation(child *zonePlan) []dns.RR {
	var out []dns.RR
	for _, rr := range child.records {
		if isApex(rr, child.origin, dns.TypeNS) {
			out = append(out, dns.Copy(rr))
		}
	}
	for _, name := range apexNS(child.origin, child.records) {
		if dns.IsSubDomain(child.origin, name) {
			for _, rr := range addressRecords(name, child.records) {
				out = append(out, dns.Copy(rr))
			}
		}
	}
	return out
}

func apexNS(origin string, rrs []dns.RR) []string {
	var names []string
	for _, rr := range rrs {
		if isApex(rr, origin, dns.TypeNS) {
			names = append(names, dns.CanonicalName(rr.(*dns.NS).Ns))
		}
	}
	return names
}

func addressRecords(name string, rrs []dns.RR) []dns.RR {
	var out []dns.RR
	for _, rr := range rrs {
		t := rr.Header().Rrtype
		if (t == dns.TypeA || t == dns.TypeAAAA) && dns.CanonicalName(rr.Header().Name) == name {
			out = append(out, rr)
		}
	}
	return out
}

func addressRecord(name string, addr netip.Addr) dns.RR {
	if addr.Is4() {
		return &dns.A{Hdr: hdr(name, dns.TypeA), A: addr.AsSlice()}
	}
	return &dns.AAAA{Hdr: hdr(name, dns.TypeAAAA), AAAA: addr.AsSlice()}
}

func isApex(rr dns.RR, origin string, t uint16) bool {
	return rr.Header().Rrtype == t && dns.CanonicalName(rr.Header().Name) == origin
}

func hdr(name string, t uint16) dns.RR_Header {
	return dns.RR_Header{Name: name, Rrtype: t, Class: dns.ClassINET, Ttl: defaultTTL}
}

// zoneText renders records as a zone file.
func zoneText(origin string, rrs []dns.RR) string {
	var b strings.Builder
	fmt.Fprintf(&b, "; zone %s written by sealgate e2e/dnssec\n", origin)
	for _, rr := range rrs {
		b.WriteString(rr.String())
		b.WriteByte('\n')
	}
	return b.String()
}
