package resolver_test

import (
	"context"
	"fmt"
	"net/netip"
	"reflect"
	"testing"

	"github.com/miekg/dns"

	"sealgate/enforcement"
	"sealgate/enforcement/resolver/dnstest"
)

func addrs(s ...string) []netip.Addr {
	out := make([]netip.Addr, 0, len(s))
	for _, a := range s {
		out = append(out, netip.MustParseAddr(a))
	}
	return out
}

func TestLookupAddrs(t *testing.T) {
	both := []string{"mx.example.test. IN A 192.0.2.1", "mx.example.test. IN AAAA 2001:db8::1"}
	chain := []string{
		"alias.example.test. IN CNAME mid.other.test.",
		"mid.other.test. IN CNAME mx.example.test.",
		"mx.example.test. IN A 192.0.2.1",
	}
	var long []string
	for i := range 10 {
		long = append(long, fmt.Sprintf("c%d.example.test. IN CNAME c%d.example.test.", i, i+1))
	}
	long = append(long, "c10.example.test. IN A 192.0.2.1")

	tests := []struct {
		name     string
		records  []string
		setup    func(s *dnstest.Server)
		host     string
		want     enforcement.AddrResult
		wantErr  error
		wantText string
	}{
		{
			name:    "IPv4 and IPv6",
			records: both,
			host:    "mx.example.test",
			want:    enforcement.AddrResult{Name: "mx.example.test", Addrs: addrs("192.0.2.1", "2001:db8::1")},
		},
		{
			name:    "both secure",
			records: both,
			setup:   func(s *dnstest.Server) { s.SetSecureZone("example.test.", true) },
			host:    "MX.example.test.",
			want:    enforcement.AddrResult{Name: "mx.example.test", Addrs: addrs("192.0.2.1", "2001:db8::1"), Secure: true},
		},
		{
			name:    "A secure, AAAA insecure",
			records: both,
			setup: func(s *dnstest.Server) {
				s.SetSecureZone("example.test.", true)
				s.SetSecure("mx.example.test.", dns.TypeAAAA, false)
			},
			host: "mx.example.test",
			want: enforcement.AddrResult{Name: "mx.example.test", Addrs: addrs("192.0.2.1", "2001:db8::1")},
		},
		{
			name:    "secure NODATA for AAAA keeps secure",
			records: []string{"mx.example.test. IN A 192.0.2.1"},
			setup:   func(s *dnstest.Server) { s.SetSecureZone("example.test.", true) },
			host:    "mx.example.test",
			want:    enforcement.AddrResult{Name: "mx.example.test", Addrs: addrs("192.0.2.1"), Secure: true},
		},
		{
			name:    "IPv6 only",
			records: []string{"mx.example.test. IN AAAA 2001:db8::2", "mx.example.test. IN AAAA 2001:db8::3"},
			host:    "mx.example.test",
			want:    enforcement.AddrResult{Name: "mx.example.test", Addrs: addrs("2001:db8::2", "2001:db8::3")},
		},
		{
			name:    "CNAME chain, all secure",
			records: chain,
			setup: func(s *dnstest.Server) {
				s.SetSecureZone("example.test.", true)
				s.SetSecureZone("other.test.", true)
			},
			host: "alias.example.test",
			want: enforcement.AddrResult{Name: "mx.example.test", Addrs: addrs("192.0.2.1"), Secure: true},
		},
		{
			name:    "CNAME chain through an insecure zone",
			records: chain,
			setup:   func(s *dnstest.Server) { s.SetSecureZone("example.test.", true) },
			host:    "alias.example.test",
			// The alias's own CNAME is secure (RFC 7672 §2.2.3).
			want: enforcement.AddrResult{Name: "mx.example.test", Addrs: addrs("192.0.2.1"), AliasSecure: true},
		},
		{
			name:    "insecure CNAME chain",
			records: chain,
			host:    "alias.example.test",
			want:    enforcement.AddrResult{Name: "mx.example.test", Addrs: addrs("192.0.2.1")},
		},
		{
			name:    "secure CNAME to an insecure target",
			records: chain,
			setup: func(s *dnstest.Server) {
				s.SetSecureZone("other.test.", true)
				s.SetSecure("alias.example.test.", dns.TypeCNAME, true)
			},
			host: "alias.example.test",
			want: enforcement.AddrResult{Name: "mx.example.test", Addrs: addrs("192.0.2.1"), AliasSecure: true},
		},
		{
			name:    "A fails, AAAA answers",
			records: both,
			setup: func(s *dnstest.Server) {
				s.SetSecureZone("example.test.", true)
				s.SetRcode("mx.example.test.", dns.TypeA, dns.RcodeServerFailure)
			},
			host: "mx.example.test",
			want: enforcement.AddrResult{Name: "mx.example.test", Addrs: addrs("2001:db8::1"), Secure: true},
		},
		{
			name:     "both fail",
			records:  both,
			setup:    func(s *dnstest.Server) { s.SetRcode("mx.example.test.", dns.TypeANY, dns.RcodeServerFailure) },
			host:     "mx.example.test",
			wantErr:  enforcement.ErrDNSTemporary,
			wantText: "SERVFAIL: temporary DNS failure",
		},
		{
			name:     "A NODATA, AAAA fails",
			records:  []string{"mx.example.test. IN TXT \"x\""},
			setup:    func(s *dnstest.Server) { s.SetRcode("mx.example.test.", dns.TypeAAAA, dns.RcodeRefused) },
			host:     "mx.example.test",
			wantErr:  enforcement.ErrDNSTemporary,
			wantText: "lookup AAAA mx.example.test: REFUSED: temporary DNS failure",
		},
		{
			name:    "NODATA for both",
			records: []string{"mx.example.test. IN TXT \"x\""},
			host:    "mx.example.test",
			want:    enforcement.AddrResult{Name: "mx.example.test"},
		},
		{
			name:     "NXDOMAIN",
			records:  both,
			host:     "nope.example.test",
			wantErr:  enforcement.ErrNotFound,
			wantText: "nope.example.test: NXDOMAIN: domain not found",
		},
		{
			name:     "CNAME to a name that does not exist",
			records:  []string{"alias.example.test. IN CNAME gone.example.test."},
			host:     "alias.example.test",
			wantErr:  enforcement.ErrNotFound,
			wantText: "NXDOMAIN",
		},
		{
			name:     "CNAME loop",
			records:  []string{"a.example.test. IN CNAME b.example.test.", "b.example.test. IN CNAME a.example.test."},
			host:     "a.example.test",
			wantErr:  enforcement.ErrDNSTemporary,
			wantText: "a.example.test: CNAME loop at a.example.test: temporary DNS failure",
		},
		{
			name:     "CNAME loop without server-side following",
			records:  []string{"a.example.test. IN CNAME b.example.test.", "b.example.test. IN CNAME a.example.test."},
			setup:    func(s *dnstest.Server) { s.SetFollowCNAME(false) },
			host:     "a.example.test",
			wantErr:  enforcement.ErrDNSTemporary,
			wantText: "CNAME loop at a.example.test",
		},
		{
			name:     "CNAME chain too long",
			records:  long,
			host:     "c0.example.test",
			wantErr:  enforcement.ErrDNSTemporary,
			wantText: "lookup A c0.example.test: CNAME chain longer than 8",
		},
		{
			name:    "CNAME chain of 8 is followed",
			records: long,
			host:    "c2.example.test",
			want:    enforcement.AddrResult{Name: "c10.example.test", Addrs: addrs("192.0.2.1")},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := newZone(t, tc.records...)
			if tc.setup != nil {
				tc.setup(s)
			}
			got, err := newResolver(s.Addr()).LookupAddrs(context.Background(), tc.host)
			checkErr(t, err, tc.wantErr, tc.wantText)
			if err == nil && !reflect.DeepEqual(got, tc.want) {
				t.Errorf("LookupAddrs = %+v, want %+v", got, tc.want)
			}
		})
	}
}

// TestCNAMEFollowedByNewQueries checks that a chain the server does not
// resolve is followed with queries for each target, and that the AD flag of
// every reply counts.
func TestCNAMEFollowedByNewQueries(t *testing.T) {
	tests := []struct {
		name       string
		secure     []string
		wantSecure bool
	}{
		{name: "all replies secure", secure: []string{"alias.test.", "mid.test.", "target.test."}, wantSecure: true},
		{name: "middle reply insecure", secure: []string{"alias.test.", "target.test."}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := newZone(t,
				"alias.test. IN CNAME mid.test.",
				"mid.test. IN CNAME target.test.",
				"target.test. IN TXT \"found\"",
			)
			s.SetFollowCNAME(false)
			for _, name := range tc.secure {
				s.SetSecure(name, dns.TypeANY, true)
			}
			got, err := newResolver(s.Addr()).LookupTXT(context.Background(), "alias.test")
			if err != nil {
				t.Fatal(err)
			}
			want := enforcement.TXTResult{Records: []string{"found"}, Secure: tc.wantSecure}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("LookupTXT = %+v, want %+v", got, want)
			}
			var asked []string
			for _, q := range s.Queries() {
				asked = append(asked, q.Name)
			}
			if want := []string{"alias.test.", "mid.test.", "target.test."}; !reflect.DeepEqual(asked, want) {
				t.Errorf("queries = %q, want %q", asked, want)
			}
		})
	}
}
