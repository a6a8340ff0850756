package resolver_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/miekg/dns"

	"sealgate/enforcement/resolver"
)

func TestTrustLoopback(t *testing.T) {
	tests := []struct {
		server string
		want   bool
	}{
		{server: "127.0.0.1:53", want: true},
		{server: "127.0.0.53:53", want: true},
		{server: "127.255.0.9:5353", want: true},
		{server: "[::1]:53", want: true},
		{server: "[::ffff:127.0.0.1]:53", want: true},
		{server: "10.0.0.1:53"},
		{server: "192.0.2.53:53"},
		{server: "[2001:db8::53]:53"},
		{server: "[::]:53"},
		{server: "0.0.0.0:53"},
		{server: "localhost:53"}, // a name is not an address on loopback
		{server: "127.0.0.1"},    // no port: not a server address
		{server: ""},
	}
	for _, tc := range tests {
		t.Run(tc.server, func(t *testing.T) {
			if got := resolver.TrustLoopback(tc.server); got != tc.want {
				t.Errorf("TrustLoopback(%q) = %t, want %t", tc.server, got, tc.want)
			}
		})
	}
}

// TestADFromAnUntrustedResolverIsInsecure: an answer with the AD flag
// counts as DNSSEC-secure only when the resolver that sent it is trusted;
// by default only resolvers on loopback are.
func TestADFromAnUntrustedResolverIsInsecure(t *testing.T) {
	zone := newZone(t,
		"example.test. IN MX 10 mx.example.test.",
		"mx.example.test. IN A 192.0.2.1",
		"_25._tcp.mx.example.test. IN TLSA 3 1 1 000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f",
		`example.test. IN TXT "v=spf1 -all"`,
	)
	zone.SetSecureZone("example.test.", true)
	// forward sends every query to the fake zone on 127.0.0.1, whatever
	// server address the resolver was given: no packet leaves loopback.
	forward := func(ctx context.Context, network, _ string, m *dns.Msg) (*dns.Msg, error) {
		return resolver.NetExchange(ctx, network, zone.Addr(), m)
	}
	tests := []struct {
		name    string
		servers []string
		trust   func(string) bool
		want    bool
	}{
		{name: "loopback resolver, default trust", servers: []string{"127.0.0.1:53"}, want: true},
		{name: "remote resolver, default trust", servers: []string{"192.0.2.53:53"}},
		{name: "remote resolver, trusted path", servers: []string{"192.0.2.53:53"}, trust: resolver.TrustAll, want: true},
		{name: "loopback resolver, trust nobody", servers: []string{"127.0.0.1:53"}, trust: func(string) bool { return false }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := &resolver.Resolver{Servers: tc.servers, Timeout: 2 * time.Second, Exchange: forward, TrustAD: tc.trust, Shuffle: noShuffle}
			ctx := context.Background()
			mx, err := r.LookupMX(ctx, "example.test")
			if err != nil {
				t.Fatal(err)
			}
			addrs, err := r.LookupAddrs(ctx, "mx.example.test")
			if err != nil {
				t.Fatal(err)
			}
			tlsa, err := r.LookupTLSA(ctx, "_25._tcp.mx.example.test")
			if err != nil {
				t.Fatal(err)
			}
			txt, err := r.LookupTXT(ctx, "example.test")
			if err != nil {
				t.Fatal(err)
			}
			got := []bool{mx.Secure, addrs.Secure, tlsa.Secure, txt.Secure}
			if want := []bool{tc.want, tc.want, tc.want, tc.want}; !slices.Equal(got, want) {
				t.Errorf("Secure of MX, A/AAAA, TLSA, TXT = %v, want %v", got, want)
			}
		})
	}
}

func TestADTrust(t *testing.T) {
	tests := []struct {
		name        string
		r           *resolver.Resolver
		wantTrusted []string
		wantIgnored []string
	}{
		{name: "loopback", r: &resolver.Resolver{Servers: []string{"127.0.0.1:53", "[::1]:53"}}, wantTrusted: []string{"127.0.0.1:53", "[::1]:53"}},
		{name: "remote", r: &resolver.Resolver{Servers: []string{"10.0.0.2:53"}}, wantIgnored: []string{"10.0.0.2:53"}},
		{name: "mixed", r: &resolver.Resolver{Servers: []string{"127.0.0.1:53", "10.0.0.2:53"}}, wantTrusted: []string{"127.0.0.1:53"}, wantIgnored: []string{"10.0.0.2:53"}},
		{name: "remote, trusted path", r: &resolver.Resolver{Servers: []string{"10.0.0.2:53"}, TrustAD: resolver.TrustAll}, wantTrusted: []string{"10.0.0.2:53"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			trusted, ignored := tc.r.ADTrust()
			if !slices.Equal(trusted, tc.wantTrusted) || !slices.Equal(ignored, tc.wantIgnored) {
				t.Errorf("ADTrust() = %q, %q; want %q, %q", trusted, ignored, tc.wantTrusted, tc.wantIgnored)
			}
		})
	}
}
