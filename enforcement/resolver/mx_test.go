package resolver_test

import (
	"context"
	"reflect"
	"slices"
	"testing"

	"github.com/miekg/dns"

	"sealgate/enforcement"
	"sealgate/enforcement/resolver/dnstest"
)

func TestLookupMX(t *testing.T) {
	tests := []struct {
		name     string
		records  []string
		setup    func(s *dnstest.Server)
		domain   string
		want     enforcement.MXResult
		wantErr  error
		wantText string
	}{
		{
			name: "sorted by preference, names lower-cased",
			records: []string{
				"example.test. IN MX 20 c.example.test.",
				"example.test. IN MX 10 B.Example.TEST.",
				"example.test. IN MX 30 d.example.test.",
			},
			domain: "example.test",
			want:   enforcement.MXResult{Hosts: []string{"b.example.test", "c.example.test", "d.example.test"}},
		},
		{
			name:    "secure MX RRset",
			records: []string{"example.test. IN MX 10 mx.example.test."},
			setup:   func(s *dnstest.Server) { s.SetSecureZone("example.test.", true) },
			domain:  "example.test",
			want:    enforcement.MXResult{Hosts: []string{"mx.example.test"}, Secure: true},
		},
		{
			name: "duplicate host keeps best preference",
			records: []string{
				"example.test. IN MX 20 a.example.test.",
				"example.test. IN MX 15 b.example.test.",
				"example.test. IN MX 10 a.example.test.",
			},
			domain: "example.test",
			want:   enforcement.MXResult{Hosts: []string{"a.example.test", "b.example.test"}},
		},
		{
			name:    "query name with trailing dot and capitals",
			records: []string{"example.test. IN MX 10 mx.example.test."},
			domain:  "EXAMPLE.Test.",
			want:    enforcement.MXResult{Hosts: []string{"mx.example.test"}},
		},
		{
			name:    "null MX",
			records: []string{"example.test. IN MX 0 ."},
			setup:   func(s *dnstest.Server) { s.SetSecureZone("example.test.", true) },
			domain:  "example.test",
			want:    enforcement.MXResult{Null: true, Secure: true},
		},
		{
			name:    "null MX target among real hosts is dropped",
			records: []string{"example.test. IN MX 0 .", "example.test. IN MX 10 mx.example.test."},
			domain:  "example.test",
			want:    enforcement.MXResult{Hosts: []string{"mx.example.test"}},
		},
		{
			name: "MX through CNAME",
			records: []string{
				"example.test. IN CNAME mail.other.test.",
				"mail.other.test. IN MX 10 mx.other.test.",
			},
			domain: "example.test",
			want:   enforcement.MXResult{Hosts: []string{"mx.other.test"}},
		},
		{
			name:    "implicit MX from A",
			records: []string{"Example.test. IN A 192.0.2.1"},
			domain:  "example.TEST",
			want:    enforcement.MXResult{Hosts: []string{"example.test"}, Implicit: true},
		},
		{
			name:    "implicit MX from AAAA, secure",
			records: []string{"example.test. IN AAAA 2001:db8::1"},
			setup:   func(s *dnstest.Server) { s.SetSecureZone("example.test.", true) },
			domain:  "example.test",
			want:    enforcement.MXResult{Hosts: []string{"example.test"}, Implicit: true, Secure: true},
		},
		{
			name:    "implicit MX with insecure MX denial is insecure",
			records: []string{"example.test. IN A 192.0.2.1"},
			setup: func(s *dnstest.Server) {
				s.SetSecureZone("example.test.", true)
				s.SetSecure("example.test.", dns.TypeMX, false)
			},
			domain: "example.test",
			want:   enforcement.MXResult{Hosts: []string{"example.test"}, Implicit: true},
		},
		{
			name:    "implicit MX with insecure addresses is insecure",
			records: []string{"example.test. IN A 192.0.2.1"},
			setup: func(s *dnstest.Server) {
				s.SetSecureZone("example.test.", true)
				s.SetSecure("example.test.", dns.TypeAAAA, false)
			},
			domain: "example.test",
			want:   enforcement.MXResult{Hosts: []string{"example.test"}, Implicit: true},
		},
		{
			name:    "no MX and no address: empty result",
			records: []string{"example.test. IN TXT \"hello\""},
			setup:   func(s *dnstest.Server) { s.SetSecureZone("example.test.", true) },
			domain:  "example.test",
			want:    enforcement.MXResult{Secure: true},
		},
		{
			name:     "implicit MX address lookups fail",
			records:  []string{"example.test. IN TXT \"hello\""},
			setup:    func(s *dnstest.Server) { s.SetRcode("example.test.", dns.TypeA, dns.RcodeServerFailure) },
			domain:   "example.test",
			wantErr:  enforcement.ErrDNSTemporary,
			wantText: "lookup A example.test: SERVFAIL: temporary DNS failure",
		},
		{
			name:     "NXDOMAIN",
			records:  []string{"example.test. IN MX 10 mx.example.test."},
			domain:   "nope.example.test",
			wantErr:  enforcement.ErrNotFound,
			wantText: "lookup MX nope.example.test: NXDOMAIN: domain not found",
		},
		{
			name:     "SERVFAIL",
			records:  []string{"example.test. IN MX 10 mx.example.test."},
			setup:    func(s *dnstest.Server) { s.SetRcode("example.test.", dns.TypeMX, dns.RcodeServerFailure) },
			domain:   "example.test",
			wantErr:  enforcement.ErrDNSTemporary,
			wantText: "lookup MX example.test: SERVFAIL: temporary DNS failure",
		},
		{
			name:     "REFUSED",
			records:  []string{"example.test. IN MX 10 mx.example.test."},
			setup:    func(s *dnstest.Server) { s.SetRcode("example.test.", dns.TypeMX, dns.RcodeRefused) },
			domain:   "example.test",
			wantErr:  enforcement.ErrDNSTemporary,
			wantText: "lookup MX example.test: REFUSED: temporary DNS failure",
		},
		{
			name:     "FORMERR",
			records:  []string{"example.test. IN MX 10 mx.example.test."},
			setup:    func(s *dnstest.Server) { s.SetRcode("example.test.", dns.TypeMX, dns.RcodeFormatError) },
			domain:   "example.test",
			wantErr:  enforcement.ErrDNSTemporary,
			wantText: "lookup MX example.test: FORMERR: temporary DNS failure",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := newZone(t, tc.records...)
			if tc.setup != nil {
				tc.setup(s)
			}
			got, err := newResolver(s.Addr()).LookupMX(context.Background(), tc.domain)
			checkErr(t, err, tc.wantErr, tc.wantText)
			if err == nil && !reflect.DeepEqual(got, tc.want) {
				t.Errorf("LookupMX = %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestLookupMXShufflesEqualPreferences(t *testing.T) {
	s := newZone(t,
		"example.test. IN MX 10 a.example.test.",
		"example.test. IN MX 10 b.example.test.",
		"example.test. IN MX 20 c.example.test.",
		"example.test. IN MX 30 d.example.test.",
		"example.test. IN MX 30 e.example.test.",
	)
	r := newResolver(s.Addr())
	var runs []int
	r.Shuffle = func(n int, swap func(i, j int)) {
		runs = append(runs, n)
		reverseShuffle(n, swap)
	}
	got, err := r.LookupMX(context.Background(), "example.test")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"b.example.test", "a.example.test", "c.example.test", "e.example.test", "d.example.test"}
	if !slices.Equal(got.Hosts, want) {
		t.Errorf("Hosts = %q, want %q", got.Hosts, want)
	}
	if !slices.Equal(runs, []int{2, 2}) {
		t.Errorf("Shuffle called with n = %v, want [2 2]", runs)
	}
}

// TestLookupMXDefaultShuffle checks that the default source does shuffle:
// over 40 lookups both orders of two equal hosts appear (the chance that
// they do not is 2^-39).
func TestLookupMXDefaultShuffle(t *testing.T) {
	s := newZone(t,
		"example.test. IN MX 10 a.example.test.",
		"example.test. IN MX 10 b.example.test.",
		"example.test. IN MX 5 first.example.test.",
	)
	r := newResolver(s.Addr())
	r.Shuffle = nil
	seen := map[string]bool{}
	for range 40 {
		got, err := r.LookupMX(context.Background(), "example.test")
		if err != nil {
			t.Fatal(err)
		}
		if len(got.Hosts) != 3 || got.Hosts[0] != "first.example.test" {
			t.Fatalf("Hosts = %q, want first.example.test then a and b", got.Hosts)
		}
		seen[got.Hosts[1]+","+got.Hosts[2]] = true
	}
	if !seen["a.example.test,b.example.test"] || !seen["b.example.test,a.example.test"] {
		t.Errorf("orders seen = %v, want both", seen)
	}
}
