package enforcement

import (
	"context"
	"errors"
	"strings"
	"testing"

	"sealgate/certs/certstest"
	"sealgate/enforcement/dane"
	"sealgate/enforcement/localpolicy"
	"sealgate/enforcement/mtasts"
)

func TestAuthenticates(t *testing.T) {
	pool := certstest.NewCA(t, "private root").Pool()
	tests := []struct {
		name string
		req  Requirement
		want bool
	}{
		{name: "encrypt", req: Requirement{Source: SourceFloor, Level: LevelEncrypt}},
		{name: "DANE without usable records", req: Requirement{Source: SourceDANE, Level: LevelEncrypt}},
		{name: "DANE", req: Requirement{Source: SourceDANE, Level: LevelDANE, TLSA: []dane.TLSA{ee311}}, want: true},
		{name: "fingerprint", req: Requirement{Source: SourceLocal, Level: LevelFingerprint, Fingerprints: [][]byte{make([]byte, 32)}}, want: true},
		{name: "verify, names from unsigned DNS", req: Requirement{Source: SourceFloor, Level: LevelVerify, Names: []string{"mx.d.test"}}},
		{name: "verify, names vouched", req: Requirement{Source: SourceFloor, Level: LevelVerify, Names: []string{"mx.d.test"}, NamesVouched: true}, want: true},
		{name: "verify against a tafile", req: Requirement{Source: SourceLocal, Level: LevelVerify, Names: []string{"mx.d.test"}, Roots: pool}, want: true},
		{name: "testing policy", req: Requirement{Source: SourceMTASTS, Level: LevelVerify, Testing: true, NamesVouched: true}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.req.Authenticates(); got != tc.want {
				t.Errorf("Authenticates() = %t, want %t", got, tc.want)
			}
		})
	}
}

// TestRouteRequireTLS resolves routes as delivery does and checks which
// may carry a REQUIRETLS message (RFC 8689 §4.2.1): the MX set must be
// vouched for by DNSSEC, an MTA-STS policy in enforce mode, or names the
// configuration gives; a certificate for a name that unsigned DNS chose
// is not enough.
func TestRouteRequireTLS(t *testing.T) {
	ca := certstest.NewCA(t, "private root")
	tafile := ca.WriteCAFile(t.TempDir())
	mxDNS := func(secure, implicit bool, tlsa ...dane.TLSA) *mapDNS {
		host := "mx.d.test"
		if implicit {
			host = "d.test"
		}
		d := &mapDNS{
			mx: map[string]MXResult{
				"d.test": {Hosts: []string{host}, Secure: secure, Implicit: implicit},
				// the relay's MX set, found by MX lookup
				"p.test": {Hosts: []string{"out.p.test"}, Secure: secure},
			},
			addrs: map[string]AddrResult{host: {Addrs: addr1.Addrs, Secure: secure}, "smtp.p.test": addr1, "out.p.test": addr1},
		}
		if len(tlsa) > 0 {
			d.tlsa = map[string]TLSAResult{"_25._tcp." + host: {Records: tlsa, Secure: true}}
		}
		return d
	}
	tests := []struct {
		name  string
		dns   *mapDNS
		floor Level
		sts   *mtasts.Policy
		local string // policy file
		relay string
		want  bool
		// wantWhy is part of the refusal when !want.
		wantWhy string
	}{
		{name: "floor encrypt", dns: mxDNS(false, false), wantWhy: "floor encrypt: not authenticated"},
		{name: "floor verify, unsigned MX", dns: mxDNS(false, false), floor: LevelVerify, wantWhy: "MX name from DNS without DNSSEC"},
		{name: "floor verify, secure MX", dns: mxDNS(true, false), floor: LevelVerify, want: true},
		{name: "floor verify, implicit MX (the domain's own name)", dns: mxDNS(false, true), floor: LevelVerify, want: true},
		{name: "DANE", dns: mxDNS(true, false, ee311), want: true},
		{name: "DANE, only unusable records", dns: mxDNS(true, false, pkixEE), wantWhy: "DANE (no usable TLSA records): not authenticated"},
		{name: "DANE, only unusable records, MTA-STS enforce", dns: mxDNS(true, false, pkixEE), sts: stsPolicy(mtasts.ModeEnforce, "mx.d.test"), want: true},
		{name: "MTA-STS enforce, unsigned MX", dns: mxDNS(false, false), sts: stsPolicy(mtasts.ModeEnforce, "mx.d.test"), want: true},
		{name: "MTA-STS testing", dns: mxDNS(false, false), sts: stsPolicy(mtasts.ModeTesting, "mx.d.test"), wantWhy: "testing mode"},
		{name: "local encrypt", dns: mxDNS(true, false), local: "d.test encrypt", wantWhy: "local policy encrypt: not authenticated"},
		{name: "local verify (match=hostname), unsigned MX", dns: mxDNS(false, false), local: "d.test verify", wantWhy: "local policy verify: MX name from DNS"},
		{name: "local verify (match=hostname), secure MX", dns: mxDNS(true, false), local: "d.test verify", want: true},
		{name: "local verify match=nexthop", dns: mxDNS(false, false), local: "d.test verify match=nexthop", want: true},
		{name: "local verify, explicit name", dns: mxDNS(false, false), local: "d.test verify match=mx.d.test", want: true},
		{name: "local verify, explicit parent domain", dns: mxDNS(false, false), local: "d.test verify match=.d.test", want: true},
		{name: "local verify, hostname among others", dns: mxDNS(false, false), local: "d.test verify match=hostname:nexthop", wantWhy: "MX name from DNS"},
		{name: "local secure (nexthop, dot-nexthop)", dns: mxDNS(false, false), local: "d.test secure", want: true},
		{name: "local secure match=hostname, unsigned MX", dns: mxDNS(false, false), local: "d.test secure match=hostname", wantWhy: "MX name from DNS"},
		{name: "local verify with tafile", dns: mxDNS(false, false), local: "d.test verify tafile=" + tafile, want: true},
		{name: "local fingerprint", dns: mxDNS(false, false), local: "d.test fingerprint match=" + strings.Repeat("ab", 32), want: true},
		{name: "local dane with usable TLSA", dns: mxDNS(true, false, ee311), local: "d.test dane", want: true},
		{name: "local dane without TLSA", dns: mxDNS(true, false), local: "d.test dane", wantWhy: "local policy dane: not authenticated"},
		{name: "relay in brackets", dns: mxDNS(false, false), relay: "[smtp.p.test]:587", want: true},
		{name: "relay by MX lookup, unsigned", dns: mxDNS(false, false), relay: "p.test:587", wantWhy: "local policy relay: MX name from DNS"},
		{name: "relay by MX lookup, secure", dns: mxDNS(true, false), relay: "p.test:587", want: true},
		{name: "relay by MX lookup, local secure (nexthop)", dns: mxDNS(false, false), relay: "p.test:587", local: "p.test:587 secure", want: true},
		{name: "relay by MX lookup, local verify (hostname)", dns: mxDNS(false, false), relay: "p.test:587", local: "p.test:587 verify", wantWhy: "MX name from DNS"},
		{name: "relay in brackets, local verify (hostname)", dns: mxDNS(false, false), relay: "[smtp.p.test]:587", local: "[smtp.p.test]:587 verify", want: true},
		{name: "relay in brackets, local encrypt", dns: mxDNS(false, false), relay: "[smtp.p.test]:587", local: "[smtp.p.test]:587 encrypt", wantWhy: "not authenticated"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := &Engine{DNS: tc.dns, Floor: tc.floor}
			if tc.sts != nil {
				e.STS = fixedSTS{tc.sts}
			}
			if tc.local != "" {
				p, err := localpolicy.Parse("policy", strings.NewReader(tc.local+"\n"))
				if err != nil {
					t.Fatal(err)
				}
				e.Local = p
			}
			if tc.relay != "" {
				r, err := ParseRelayHost(tc.relay)
				if err != nil {
					t.Fatal(err)
				}
				e.Relay = &r
			}
			route, err := e.Resolve(context.Background(), "d.test")
			if err != nil {
				t.Fatal(err)
			}
			if len(route.Hosts) != 1 {
				t.Fatalf("hosts %+v", route.Hosts)
			}
			if got := route.Hosts[0].Req.Authenticates(); got != tc.want {
				t.Errorf("%s: Authenticates() = %t, want %t", route.Hosts[0].Req, got, tc.want)
			}
			rt, err := route.RequireTLS()
			if !tc.want {
				var f *Failure
				if !errors.As(err, &f) || f.Kind != KindRequireTLS {
					t.Fatalf("RequireTLS() = %+v, %v; want a REQUIRETLS failure", rt, err)
				}
				if !strings.Contains(f.Error(), tc.wantWhy) || !strings.HasPrefix(f.Error(), "d.test: REQUIRETLS: ") {
					t.Errorf("failure %q does not say %q", f.Error(), tc.wantWhy)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !rt.REQUIRETLS || len(rt.Hosts) != 1 || route.REQUIRETLS {
				t.Errorf("RequireTLS() = %+v from %+v: want the host, marked, and the original untouched", rt, route)
			}
			if rt.Equal(route) {
				t.Error("a REQUIRETLS route shares its key with the same route without it")
			}
		})
	}
}

func TestRequireTLSKeepsOnlyQualifyingHosts(t *testing.T) {
	r := &Route{Domain: "d.test", Hosts: []Host{
		{Name: "mx1.d.test", Req: Requirement{Source: SourceFloor, Level: LevelVerify, Names: []string{"mx1.d.test"}}},
		{Name: "mx2.d.test", Req: Requirement{Source: SourceMTASTS, Level: LevelVerify, Mode: "enforce", NamesVouched: true}},
	}}
	got, err := r.RequireTLS()
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Hosts) != 1 || got.Hosts[0].Name != "mx2.d.test" || !got.REQUIRETLS {
		t.Errorf("route %+v, want mx2.d.test alone, marked REQUIRETLS", got)
	}
}
