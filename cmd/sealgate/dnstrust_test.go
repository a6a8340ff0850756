package main

import (
	"context"
	"strings"
	"testing"

	"github.com/miekg/dns"

	"sealgate/enforcement/resolver"
	"sealgate/enforcement/resolver/dnstest"
)

func TestParseConfigDNSTrustAD(t *testing.T) {
	tests := []struct {
		name    string
		value   string // "" leaves the variable unset
		want    bool
		wantErr bool
	}{
		{name: "default", want: false},
		{name: "true", value: "true", want: true},
		{name: "false", value: "false", want: false},
		{name: "yes is not a boolean", value: "yes", wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			env := map[string]string{"SEALGATE_HOSTNAME": "gw.example.test"}
			if tc.value != "" {
				env["SEALGATE_DNS_TRUST_AD"] = tc.value
			}
			c, err := parseConfig(env)
			if tc.wantErr {
				if err == nil || !strings.Contains(err.Error(), "SEALGATE_DNS_TRUST_AD") {
					t.Fatalf("err = %v, want one naming SEALGATE_DNS_TRUST_AD", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if c.DNSTrustAD != tc.want {
				t.Errorf("DNSTrustAD = %t, want %t", c.DNSTrustAD, tc.want)
			}
		})
	}
}

// TestResolverWiringTrustsADOnlyOnLoopback builds the resolver as serve
// and check do and feeds it AD answers from a fake zone on 127.0.0.1,
// whatever server address it was configured with (no packet leaves
// loopback).
func TestResolverWiringTrustsADOnlyOnLoopback(t *testing.T) {
	zone := dnstest.NewServer(t)
	zone.Add("example.test. IN MX 10 mx.example.test.")
	zone.SetSecureZone("example.test.", true)
	tests := []struct {
		name        string
		env         map[string]string
		wantSecure  bool
		wantTrusted bool
		wantWhy     []string
	}{
		{
			name:        "resolver on loopback",
			env:         map[string]string{"SEALGATE_DNS_RESOLVER": "127.0.0.1:53"},
			wantSecure:  true,
			wantTrusted: true,
			wantWhy:     []string{"127.0.0.1:53", "on loopback"},
		},
		{
			name:    "remote resolver",
			env:     map[string]string{"SEALGATE_DNS_RESOLVER": "192.0.2.53:53"},
			wantWhy: []string{"192.0.2.53:53 is ignored", "SEALGATE_DNS_TRUST_AD=true", "no DANE"},
		},
		{
			name:        "remote resolver, path trusted",
			env:         map[string]string{"SEALGATE_DNS_RESOLVER": "192.0.2.53:53", "SEALGATE_DNS_TRUST_AD": "true"},
			wantSecure:  true,
			wantTrusted: true,
			wantWhy:     []string{"192.0.2.53:53 is believed", "SEALGATE_DNS_TRUST_AD=true"},
		},
		{
			name:    "loopback and remote",
			env:     map[string]string{"SEALGATE_DNS_RESOLVER": "192.0.2.53:53,127.0.0.1:53"},
			wantWhy: []string{"127.0.0.1:53 is believed", "192.0.2.53:53 is ignored"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.env["SEALGATE_HOSTNAME"] = "gw.example.test"
			cfg, err := parseConfig(tc.env)
			if err != nil {
				t.Fatal(err)
			}
			res, err := newResolver(cfg)
			if err != nil {
				t.Fatal(err)
			}
			trusted, why := dnssecTrust(cfg, res)
			if trusted != tc.wantTrusted {
				t.Errorf("dnssecTrust = %t (%s), want %t", trusted, why, tc.wantTrusted)
			}
			for _, w := range tc.wantWhy {
				if !strings.Contains(why, w) {
					t.Errorf("reason %q does not say %q", why, w)
				}
			}
			if len(res.Servers) > 1 {
				return // which server answers is not the point here
			}
			res.Exchange = func(ctx context.Context, network, _ string, m *dns.Msg) (*dns.Msg, error) {
				return resolver.NetExchange(ctx, network, zone.Addr(), m)
			}
			mx, err := res.LookupMX(context.Background(), "example.test")
			if err != nil {
				t.Fatal(err)
			}
			if mx.Secure != tc.wantSecure {
				t.Errorf("AD answer through %s: Secure = %t, want %t", res.Servers[0], mx.Secure, tc.wantSecure)
			}
		})
	}
}

// TestStartWarnsWhenDNSSECIsNotTrusted builds the gateway (nothing is
// listened on, no query is sent) and reads its start log.
func TestStartWarnsWhenDNSSECIsNotTrusted(t *testing.T) {
	tests := []struct {
		name     string
		resolver string
		want     string
	}{
		{name: "remote resolver", resolver: "192.0.2.53:53", want: `level=WARN msg="DNSSEC not trusted`},
		{name: "loopback resolver", resolver: "127.0.0.1:53", want: `level=INFO msg="DNSSEC trusted`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := parseConfig(map[string]string{
				"SEALGATE_HOSTNAME":     "gw.example.test",
				"SEALGATE_DNS_RESOLVER": tc.resolver,
				"SEALGATE_STATE_DIR":    t.TempDir(),
			})
			if err != nil {
				t.Fatal(err)
			}
			var logs strings.Builder
			g, err := build(cfg, &logs)
			if err != nil {
				t.Fatal(err)
			}
			g.store.Close()
			line := ""
			for _, l := range strings.Split(logs.String(), "\n") {
				if strings.Contains(l, "DNSSEC") {
					line = l
					break
				}
			}
			if !strings.Contains(line, tc.want) || !strings.Contains(line, tc.resolver) {
				t.Errorf("start log line %q, want %q naming %s", line, tc.want, tc.resolver)
			}
		})
	}
}
