package dnssec

import (
	"encoding/base64"
	"errors"
	"net/netip"
	"os/exec"
	"slices"
	"strings"
	"testing"

	"github.com/miekg/dns"
)

var testAddr = netip.MustParseAddr("127.0.0.1")

func TestPlanZonesErrors(t *testing.T) {
	tests := []struct {
		name    string
		zones   []Zone
		wantErr error
	}{
		{name: "origin outside test.", zones: []Zone{{Origin: "example.org."}}, wantErr: ErrBadOrigin},
		{name: "origin is test.", zones: []Zone{{Origin: "test."}}, wantErr: ErrBadOrigin},
		{name: "origin not a name", zones: []Zone{{Origin: "a..test."}}, wantErr: ErrBadOrigin},
		{name: "duplicate after canonicalising", zones: []Zone{{Origin: "a.test."}, {Origin: "A.test"}}, wantErr: ErrDuplicateZone},
		{name: "record out of zone", zones: []Zone{{Origin: "a.test.", Records: []string{"b.test. A 127.0.0.1"}}}, wantErr: ErrOutOfZone},
		{name: "break without sign", zones: []Zone{{Origin: "a.test.", Break: true}}, wantErr: ErrBreakUnsigned},
		{name: "unparsable record", zones: []Zone{{Origin: "a.test.", Records: []string{"@ MX mx"}}}, wantErr: ErrBadRecord},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := planZones(tc.zones, testAddr)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("err %v, want %v", err, tc.wantErr)
			}
		})
	}
}

func TestPlanZonesTree(t *testing.T) {
	plans, err := planZones([]Zone{
		{Origin: "a.test.", Records: []string{"@ MX 10 mx", "mx A 127.0.0.9"}, Sign: true},
		{Origin: "b.a.test", Records: []string{"@ NS ns1.b.a.test.", "ns1 AAAA ::1"}},
		{Origin: "c.test.", Records: []string{"@ SOA ns.c.test. me.c.test. 7 1 1 1 1", "@ NS ns.elsewhere.test."}},
	}, testAddr)
	if err != nil {
		t.Fatal(err)
	}
	var order []string
	byName := map[string]*zonePlan{}
	for _, p := range plans {
		order = append(order, p.origin)
		byName[p.origin] = p
	}
	if want := []string{"b.a.test.", "a.test.", "c.test.", "test."}; !slices.Equal(order, want) {
		t.Fatalf("order %v, want %v (deepest first)", order, want)
	}
	parents := map[string]string{"b.a.test.": "a.test.", "a.test.": "test.", "c.test.": "test."}
	for child, parent := range parents {
		if got := byName[child].parent; got == nil || got.origin != parent {
			t.Errorf("parent of %s = %v, want %s", child, got, parent)
		}
	}
	if byName["test."].parent != nil || !byName["test."].sign {
		t.Errorf("root zone must be signed and parentless")
	}

	tests := []struct {
		name  string
		zone  string
		want  string // a record that must be present, in dns.RR.String form
		count int    // how many records of the want's owner and type
	}{
		{name: "generated SOA", zone: "a.test.", want: "a.test.\t300\tIN\tSOA\tns.a.test. hostmaster.a.test. 1 3600 600 86400 300", count: 1},
		{name: "generated NS", zone: "a.test.", want: "a.test.\t300\tIN\tNS\tns.a.test.", count: 1},
		{name: "generated glue in zone", zone: "a.test.", want: "ns.a.test.\t300\tIN\tA\t127.0.0.1", count: 1},
		{name: "user records kept", zone: "a.test.", want: "mx.a.test.\t300\tIN\tA\t127.0.0.9", count: 1},
		{name: "user NS kept, no extra NS", zone: "b.a.test.", want: "b.a.test.\t300\tIN\tNS\tns1.b.a.test.", count: 1},
		{name: "SOA names user NS", zone: "b.a.test.", want: "b.a.test.\t300\tIN\tSOA\tns1.b.a.test. hostmaster.b.a.test. 1 3600 600 86400 300", count: 1},
		{name: "user SOA kept", zone: "c.test.", want: "c.test.\t300\tIN\tSOA\tns.c.test. me.c.test. 7 1 1 1 1", count: 1},
		{name: "delegation in parent", zone: "a.test.", want: "b.a.test.\t300\tIN\tNS\tns1.b.a.test.", count: 1},
		{name: "glue copied to parent", zone: "a.test.", want: "ns1.b.a.test.\t300\tIN\tAAAA\t::1", count: 1},
		{name: "root delegates a", zone: "test.", want: "a.test.\t300\tIN\tNS\tns.a.test.", count: 1},
		{name: "root glue for a", zone: "test.", want: "ns.a.test.\t300\tIN\tA\t127.0.0.1", count: 1},
		{name: "no glue for out-of-zone NS", zone: "test.", want: "c.test.\t300\tIN\tNS\tns.elsewhere.test.", count: 1},
		{name: "grandchild not delegated from root", zone: "test.", want: "b.a.test.\t300\tIN\tNS\tns1.b.a.test.", count: 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			n := 0
			for _, rr := range byName[tc.zone].records {
				if rr.String() == tc.want {
					n++
				}
			}
			if n != tc.count {
				t.Errorf("%d copies of %q in %s, want %d:\n%s", n, tc.want, tc.zone, tc.count, zoneText(tc.zone, byName[tc.zone].records))
			}
		})
	}
	if n := countOwner(byName["test."].records, "ns.elsewhere.test."); n != 0 {
		t.Errorf("root holds %d records for an out-of-zone name server", n)
	}
}

func countOwner(rrs []dns.RR, name string) int {
	n := 0
	for _, rr := range rrs {
		if rr.Header().Name == name {
			n++
		}
	}
	return n
}

func TestCorruptSignatures(t *testing.T) {
	sig := func(covered uint16, s string) *dns.RRSIG {
		return &dns.RRSIG{Hdr: hdr("a.test.", dns.TypeRRSIG), TypeCovered: covered, Algorithm: dns.ECDSAP256SHA256, SignerName: "a.test.", Signature: s}
	}
	good := base64.StdEncoding.EncodeToString([]byte("0123456789"))
	soa := &dns.SOA{Hdr: hdr("a.test.", dns.TypeSOA), Ns: "ns.a.test.", Mbox: "h.a.test."}
	tests := []struct {
		name        string
		in          []dns.RR
		wantErr     error
		wantChanged []bool // per input record
	}{
		{name: "data and NSEC signatures flipped, DNSKEY kept",
			in:          []dns.RR{soa, sig(dns.TypeSOA, good), sig(dns.TypeDNSKEY, good), sig(dns.TypeNSEC, good)},
			wantChanged: []bool{false, true, false, true}},
		{name: "only DNSKEY signatures", in: []dns.RR{soa, sig(dns.TypeDNSKEY, good)}, wantErr: ErrNothingToBreak},
		{name: "unsigned", in: []dns.RR{soa}, wantErr: ErrNothingToBreak},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := make([]string, len(tc.in))
			for i, rr := range tc.in {
				before[i] = rr.String()
			}
			out, err := corruptSignatures(tc.in)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("err %v, want %v", err, tc.wantErr)
			}
			if err != nil {
				return
			}
			for i, rr := range out {
				if changed := rr.String() != before[i]; changed != tc.wantChanged[i] {
					t.Errorf("record %d changed=%v, want %v: %s", i, changed, tc.wantChanged[i], rr)
				}
				if tc.in[i].String() != before[i] {
					t.Errorf("input record %d was modified in place", i)
				}
			}
		})
	}
}

func TestFindTools(t *testing.T) {
	tests := []struct {
		name        string
		have        []string
		wantErr     bool
		wantMention []string
	}{
		{name: "all present", have: []string{"nsd", "unbound", "ldns-keygen", "ldns-signzone"}},
		{name: "ldns missing", have: []string{"nsd", "unbound"}, wantErr: true,
			wantMention: []string{"ldns-keygen", "ldns-signzone", "apt-get install ldnsutils"}},
		{name: "daemons missing", have: []string{"ldns-keygen", "ldns-signzone"}, wantErr: true,
			wantMention: []string{"apt-get install nsd", "apt-get install unbound"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			look := func(name string) (string, error) {
				if slices.Contains(tc.have, name) {
					return "/fake/" + name, nil
				}
				return "", exec.ErrNotFound
			}
			tl, err := findTools(look)
			if (err != nil) != tc.wantErr {
				t.Fatalf("err %v, want error %v", err, tc.wantErr)
			}
			for _, m := range tc.wantMention {
				if !strings.Contains(err.Error(), m) {
					t.Errorf("error %q does not mention %q", err, m)
				}
			}
			if !tc.wantErr && tl.signzone != "/fake/ldns-signzone" {
				t.Errorf("tools %+v", tl)
			}
		})
	}
}

func TestConfigs(t *testing.T) {
	nsd := nsdConfig{
		dir: "/d", zonesDir: "/d/zones", addr: netip.MustParseAddrPort("127.0.0.1:5300"),
		zones: []nsdZone{{name: "test.", file: "test.zone.signed"}},
	}.render()
	ub := unboundConfig{
		dir: "/d", addr: netip.MustParseAddrPort("127.0.0.1:5301"), auth: netip.MustParseAddrPort("127.0.0.1:5300"),
		trustAnchor: "/d/ta", rootHints: "/d/hints", zones: []string{"test.", "a.test."},
	}.render()
	tests := []struct {
		name string
		conf string
		want string
	}{
		{name: "nsd address and port", conf: nsd, want: "ip-address: 127.0.0.1@5300"},
		{name: "nsd no database", conf: nsd, want: `database: ""`},
		{name: "nsd keeps root", conf: nsd, want: `username: ""`},
		{name: "nsd zone", conf: nsd, want: "zone:\n\tname: \"test.\"\n\tzonefile: \"test.zone.signed\""},
		{name: "nsd no control", conf: nsd, want: "control-enable: no"},
		{name: "unbound test. not a local zone", conf: ub, want: `local-zone: "test." transparent`},
		{name: "unbound refuses other names", conf: ub, want: `local-zone: "." refuse`},
		{name: "unbound may query loopback", conf: ub, want: "do-not-query-localhost: no"},
		{name: "unbound validates", conf: ub, want: `module-config: "validator iterator"`},
		{name: "unbound anchor", conf: ub, want: `trust-anchor-file: "/d/ta"`},
		{name: "unbound root hints", conf: ub, want: `root-hints: "/d/hints"`},
		{name: "unbound stays on loopback", conf: ub, want: "outgoing-interface: 127.0.0.1"},
		{name: "unbound stub per zone", conf: ub, want: "stub-zone:\n\tname: \"a.test.\"\n\tstub-addr: 127.0.0.1@5300"},
		{name: "unbound foreground", conf: ub, want: "do-daemonize: no"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if !strings.Contains(tc.conf, tc.want) {
				t.Errorf("config lacks %q:\n%s", tc.want, tc.conf)
			}
		})
	}
	if !strings.Contains(rootHints(), "127.0.0.1") || strings.Count(rootHints(), "\n") != 2 {
		t.Errorf("root hints must name only loopback:\n%s", rootHints())
	}
}
