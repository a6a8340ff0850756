package resolver_test

import (
	"context"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/miekg/dns"

	"sealgate/enforcement"
	"sealgate/enforcement/dane"
	"sealgate/enforcement/resolver"
	"sealgate/enforcement/resolver/dnstest"
)

func TestLookupTLSA(t *testing.T) {
	tests := []struct {
		name     string
		records  []string
		setup    func(s *dnstest.Server)
		query    string
		want     enforcement.TLSAResult
		wantErr  error
		wantText string
	}{
		{
			name: "decoded, upper-case hex",
			records: []string{
				"_25._tcp.mx.example.test. IN TLSA 3 1 1 0123456789ABCDEF",
				"_25._tcp.mx.example.test. IN TLSA 2 0 2 00ff",
			},
			setup: func(s *dnstest.Server) { s.SetSecureZone("example.test.", true) },
			query: "_25._tcp.mx.example.test",
			want: enforcement.TLSAResult{Secure: true, Records: []dane.TLSA{
				{Usage: 3, Selector: 1, MatchingType: 1, Data: []byte{0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef}},
				{Usage: 2, Selector: 0, MatchingType: 2, Data: []byte{0x00, 0xff}},
			}},
		},
		{
			name: "through CNAME",
			records: []string{
				"_25._tcp.mx.example.test. IN CNAME tlsa.example.test.",
				"tlsa.example.test. IN TLSA 3 1 1 abcd",
			},
			query: "_25._tcp.mx.example.test.",
			want: enforcement.TLSAResult{Records: []dane.TLSA{
				{Usage: 3, Selector: 1, MatchingType: 1, Data: []byte{0xab, 0xcd}},
			}},
		},
		{
			name:    "insecure",
			records: []string{"_25._tcp.mx.example.test. IN TLSA 3 1 1 abcd"},
			query:   "_25._tcp.mx.example.test",
			want: enforcement.TLSAResult{Records: []dane.TLSA{
				{Usage: 3, Selector: 1, MatchingType: 1, Data: []byte{0xab, 0xcd}},
			}},
		},
		{
			name:    "NXDOMAIN",
			records: []string{"mx.example.test. IN A 192.0.2.1"},
			setup:   func(s *dnstest.Server) { s.SetSecureZone("example.test.", true) },
			query:   "_25._tcp.mx.example.test",
			wantErr: enforcement.ErrNotFound,
		},
		{
			name:     "bogus answer",
			records:  []string{"_25._tcp.mx.example.test. IN TLSA 3 1 1 abcd"},
			setup:    func(s *dnstest.Server) { s.SetRcode("_25._tcp.mx.example.test.", dns.TypeTLSA, dns.RcodeServerFailure) },
			query:    "_25._tcp.mx.example.test",
			wantErr:  enforcement.ErrDNSTemporary,
			wantText: "lookup TLSA _25._tcp.mx.example.test: SERVFAIL: temporary DNS failure",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := newZone(t, tc.records...)
			if tc.setup != nil {
				tc.setup(s)
			}
			got, err := newResolver(s.Addr()).LookupTLSA(context.Background(), tc.query)
			checkErr(t, err, tc.wantErr, tc.wantText)
			if err == nil && !reflect.DeepEqual(got, tc.want) {
				t.Errorf("LookupTLSA = %+v, want %+v", got, tc.want)
			}
		})
	}
}

// TestLookupTLSANoDataAtExistingName checks that a name with other records
// but no TLSA gives an empty secure result rather than an error.
func TestLookupTLSANoDataAtExistingName(t *testing.T) {
	s := newZone(t, "_25._tcp.mx.example.test. IN TXT \"not tlsa\"")
	s.SetSecureZone("example.test.", true)
	got, err := newResolver(s.Addr()).LookupTLSA(context.Background(), "_25._tcp.mx.example.test")
	if err != nil {
		t.Fatal(err)
	}
	if want := (enforcement.TLSAResult{Secure: true}); !reflect.DeepEqual(got, want) {
		t.Errorf("LookupTLSA = %+v, want %+v", got, want)
	}
}

// TestLookupTLSABadHex feeds a record whose association data is not hex,
// which the wire format cannot carry but an injected exchange can.
func TestLookupTLSABadHex(t *testing.T) {
	r := &resolver.Resolver{
		Servers: []string{"fake"},
		Exchange: func(_ context.Context, _, _ string, m *dns.Msg) (*dns.Msg, error) {
			resp := new(dns.Msg)
			resp.SetReply(m)
			hdr := dns.RR_Header{Name: m.Question[0].Name, Rrtype: dns.TypeTLSA, Class: dns.ClassINET, Ttl: 60}
			resp.Answer = []dns.RR{
				&dns.TLSA{Hdr: hdr, Usage: 3, Selector: 1, MatchingType: 1, Certificate: "abcd"},
				&dns.TLSA{Hdr: hdr, Usage: 3, Selector: 1, MatchingType: 1, Certificate: "zz"},
			}
			return resp, nil
		},
	}
	_, err := r.LookupTLSA(context.Background(), "_25._tcp.mx.example.test")
	if !errors.Is(err, resolver.ErrMalformed) || !errors.Is(err, enforcement.ErrDNSTemporary) {
		t.Fatalf("error = %v, want ErrMalformed and ErrDNSTemporary", err)
	}
	if !strings.Contains(err.Error(), `"3 1 1 zz"`) {
		t.Errorf("error = %q, want it to name the record", err)
	}
	if !errors.Is(err, dane.ErrBadData) {
		t.Errorf("error = %v, want the data decoded as dane.ParseTLSA does (ErrBadData)", err)
	}
}

func TestLookupTXT(t *testing.T) {
	tests := []struct {
		name    string
		records []string
		setup   func(s *dnstest.Server)
		want    enforcement.TXTResult
		wantErr error
	}{
		{
			name: "strings joined per record",
			records: []string{
				`_mta-sts.example.test. IN TXT "v=STSv1; " "id=20240101"`,
				`_mta-sts.example.test. IN TXT "other"`,
			},
			want: enforcement.TXTResult{Records: []string{"v=STSv1; id=20240101", "other"}},
		},
		{
			name:    "secure",
			records: []string{`_mta-sts.example.test. IN TXT "v=STSv1; id=1"`},
			setup:   func(s *dnstest.Server) { s.SetSecureZone("example.test.", true) },
			want:    enforcement.TXTResult{Records: []string{"v=STSv1; id=1"}, Secure: true},
		},
		{
			name: "raw bytes, not the presentation form",
			records: []string{
				`_mta-sts.example.test. IN TXT "v=STSv1;\009id=1;"`,
				`_mta-sts.example.test. IN TXT "caf\195\169 \"q\" back\\slash \a" "\000end\255"`,
			},
			want: enforcement.TXTResult{Records: []string{"v=STSv1;\tid=1;", "caf\xc3\xa9 \"q\" back\\slash a\x00end\xff"}},
		},
		{
			name:    "NODATA",
			records: []string{`_mta-sts.example.test. IN A 192.0.2.1`},
			want:    enforcement.TXTResult{},
		},
		{
			name:    "NXDOMAIN",
			records: []string{`example.test. IN A 192.0.2.1`},
			wantErr: enforcement.ErrNotFound,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := newZone(t, tc.records...)
			if tc.setup != nil {
				tc.setup(s)
			}
			got, err := newResolver(s.Addr()).LookupTXT(context.Background(), "_mta-sts.example.test")
			checkErr(t, err, tc.wantErr, "")
			if err == nil && !reflect.DeepEqual(got, tc.want) {
				t.Errorf("LookupTXT = %+v, want %+v", got, tc.want)
			}
		})
	}
}
