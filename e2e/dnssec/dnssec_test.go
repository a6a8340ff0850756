package dnssec_test

import (
	"testing"
	"time"

	"github.com/miekg/dns"

	"sealgate/e2e/dnssec"
)

// mailRecords is a small mail domain: MX, the MX host's address and its
// DANE-EE TLSA record.
var mailRecords = []string{
	"@ MX 10 mx",
	"mx A 127.0.0.1",
	"_25._tcp.mx TLSA 3 1 1 8d02536c887482bc34ff54e41d2ba659bf85b341a0a20afadb5813dcfbcf286d",
}

func TestChain(t *testing.T) {
	start := time.Now()
	env := dnssec.Start(t,
		dnssec.Zone{Origin: "signed.test.", Records: mailRecords, Sign: true},
		dnssec.Zone{Origin: "plain.test", Records: mailRecords},
		dnssec.Zone{Origin: "broken.test.", Records: mailRecords, Sign: true, Break: true},
		dnssec.Zone{Origin: "sub.signed.test.", Records: []string{"@ A 127.0.0.2"}, Sign: true},
	)
	t.Logf("chain up in %v: resolver %s, nsd %s", time.Since(start), env.Resolver(), env.Authoritative())

	tests := []struct {
		name      string
		qname     string
		qtype     uint16
		wantRcode int
		wantAD    bool
		wantType  uint16 // an answer record of this type must come back; 0 for none
	}{
		{name: "signed MX", qname: "signed.test.", qtype: dns.TypeMX, wantRcode: dns.RcodeSuccess, wantAD: true, wantType: dns.TypeMX},
		{name: "signed A", qname: "mx.signed.test.", qtype: dns.TypeA, wantRcode: dns.RcodeSuccess, wantAD: true, wantType: dns.TypeA},
		{name: "signed TLSA", qname: "_25._tcp.mx.signed.test.", qtype: dns.TypeTLSA, wantRcode: dns.RcodeSuccess, wantAD: true, wantType: dns.TypeTLSA},
		{name: "signed NXDOMAIN", qname: "nope.signed.test.", qtype: dns.TypeA, wantRcode: dns.RcodeNameError, wantAD: true},
		{name: "signed NODATA", qname: "mx.signed.test.", qtype: dns.TypeAAAA, wantRcode: dns.RcodeSuccess, wantAD: true},
		{name: "signed grandchild", qname: "sub.signed.test.", qtype: dns.TypeA, wantRcode: dns.RcodeSuccess, wantAD: true, wantType: dns.TypeA},
		{name: "unsigned MX", qname: "plain.test.", qtype: dns.TypeMX, wantRcode: dns.RcodeSuccess, wantType: dns.TypeMX},
		{name: "unsigned A", qname: "mx.plain.test.", qtype: dns.TypeA, wantRcode: dns.RcodeSuccess, wantType: dns.TypeA},
		{name: "unsigned TLSA", qname: "_25._tcp.mx.plain.test.", qtype: dns.TypeTLSA, wantRcode: dns.RcodeSuccess, wantType: dns.TypeTLSA},
		{name: "unsigned NXDOMAIN", qname: "nope.plain.test.", qtype: dns.TypeA, wantRcode: dns.RcodeNameError},
		{name: "broken MX", qname: "broken.test.", qtype: dns.TypeMX, wantRcode: dns.RcodeServerFailure},
		{name: "broken A", qname: "mx.broken.test.", qtype: dns.TypeA, wantRcode: dns.RcodeServerFailure},
		{name: "broken TLSA", qname: "_25._tcp.mx.broken.test.", qtype: dns.TypeTLSA, wantRcode: dns.RcodeServerFailure},
		{name: "broken NXDOMAIN", qname: "nope.broken.test.", qtype: dns.TypeA, wantRcode: dns.RcodeServerFailure},
		{name: "outside test. refused", qname: "example.org.", qtype: dns.TypeMX, wantRcode: dns.RcodeRefused},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			in := query(t, env.Resolver(), tc.qname, tc.qtype)
			if in.Rcode != tc.wantRcode {
				t.Fatalf("rcode %s, want %s\n%v", dns.RcodeToString[in.Rcode], dns.RcodeToString[tc.wantRcode], in)
			}
			if in.AuthenticatedData != tc.wantAD {
				t.Errorf("AD %v, want %v\n%v", in.AuthenticatedData, tc.wantAD, in)
			}
			if got := hasType(in.Answer, tc.wantType); tc.wantType != 0 && !got {
				t.Errorf("no %s in answer\n%v", dns.TypeToString[tc.wantType], in)
			}
		})
	}

	// nsd itself holds the corrupted data: the failure is validation, not
	// a missing record.
	in := query(t, env.Authoritative(), "mx.broken.test.", dns.TypeA)
	if in.Rcode != dns.RcodeSuccess || !hasType(in.Answer, dns.TypeA) || !hasType(in.Answer, dns.TypeRRSIG) {
		t.Errorf("nsd answer for mx.broken.test. A lacks A or RRSIG:\n%v", in)
	}
}

func TestStartWithoutZones(t *testing.T) {
	env := dnssec.Start(t)
	in := query(t, env.Resolver(), "test.", dns.TypeDNSKEY)
	if in.Rcode != dns.RcodeSuccess || !in.AuthenticatedData || !hasType(in.Answer, dns.TypeDNSKEY) {
		t.Fatalf("test. DNSKEY not secure:\n%v", in)
	}
}

// query asks server with the DO bit and recursion desired, over TCP if the
// UDP reply was truncated.
func query(t *testing.T, server, name string, qtype uint16) *dns.Msg {
	t.Helper()
	m := new(dns.Msg).SetQuestion(name, qtype)
	m.SetEdns0(1232, true)
	c := &dns.Client{Timeout: 5 * time.Second}
	in, _, err := c.Exchange(m, server)
	if err == nil && in.Truncated {
		c.Net = "tcp"
		in, _, err = c.Exchange(m, server)
	}
	if err != nil {
		t.Fatalf("query %s %s at %s: %v", name, dns.TypeToString[qtype], server, err)
	}
	return in
}

func hasType(rrs []dns.RR, t uint16) bool {
	for _, rr := range rrs {
		if rr.Header().Rrtype == t {
			return true
		}
	}
	return false
}
