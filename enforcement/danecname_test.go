package enforcement

import (
	"context"
	"testing"

	"sealgate/enforcement/dane"
)

// TestDANECNAMECandidates checks the TLSA base domains of a CNAME'd MX host
// (RFC 7672 §2.2.3): the expanded name first when the whole expansion is
// secure, then the original name when the expanded name has no secure TLSA
// records, the original name alone when only the alias itself is secure.
// The name whose records are used is the SNI.
func TestDANECNAMECandidates(t *testing.T) {
	const orig, exp = "_25._tcp.mx.d.test", "_25._tcp.real.h.test"
	secure := TLSAResult{Records: []dane.TLSA{ee311}, Secure: true}
	insecure := TLSAResult{Records: []dane.TLSA{ee311}}
	expandedSecure := AddrResult{Name: "real.h.test", Addrs: addr1.Addrs, Secure: true}
	aliasOnly := AddrResult{Name: "real.h.test", Addrs: addr1.Addrs, AliasSecure: true}
	tests := []struct {
		name     string
		addrs    AddrResult
		tlsa     map[string]TLSAResult
		fail     map[string]bool
		want     Level // 0: the floor
		wantSNI  string
		wantKind Kind
	}{
		{name: "expanded name wins", addrs: expandedSecure, tlsa: map[string]TLSAResult{exp: secure, orig: secure}, want: LevelDANE, wantSNI: "real.h.test"},
		{name: "secure denial at the expanded name: original name", addrs: expandedSecure, tlsa: map[string]TLSAResult{orig: secure}, want: LevelDANE, wantSNI: "mx.d.test"},
		{name: "insecure answer at the expanded name: original name", addrs: expandedSecure, tlsa: map[string]TLSAResult{exp: insecure, orig: secure}, want: LevelDANE, wantSNI: "mx.d.test"},
		{name: "secure NODATA at the expanded name: original name", addrs: expandedSecure, tlsa: map[string]TLSAResult{exp: {Secure: true}, orig: secure}, want: LevelDANE, wantSNI: "mx.d.test"},
		{name: "insecure at both: no DANE", addrs: expandedSecure, tlsa: map[string]TLSAResult{exp: insecure, orig: insecure}},
		{name: "expanded lookup failure defers", addrs: expandedSecure, tlsa: map[string]TLSAResult{orig: secure}, fail: map[string]bool{exp: true}, wantKind: KindDNS},
		{name: "original lookup failure defers", addrs: expandedSecure, fail: map[string]bool{orig: true}, wantKind: KindDNS},
		{name: "secure alias into an unsigned zone: original name", addrs: aliasOnly, tlsa: map[string]TLSAResult{exp: secure, orig: secure}, want: LevelDANE, wantSNI: "mx.d.test"},
		{name: "secure alias into an unsigned zone: expanded name never asked", addrs: aliasOnly, tlsa: map[string]TLSAResult{orig: secure}, fail: map[string]bool{exp: true}, want: LevelDANE, wantSNI: "mx.d.test"},
		{name: "insecure alias: no DANE", addrs: AddrResult{Name: "real.h.test", Addrs: addr1.Addrs}, tlsa: map[string]TLSAResult{orig: secure}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dns := &mapDNS{
				mx:    map[string]MXResult{"d.test": {Hosts: []string{"mx.d.test"}, Secure: true}},
				addrs: map[string]AddrResult{"mx.d.test": tc.addrs},
				tlsa:  tc.tlsa,
				fail:  tc.fail,
			}
			route, err := (&Engine{DNS: dns}).Resolve(context.Background(), "d.test")
			if tc.wantKind != 0 {
				if f, ok := AsFailure(err); !ok || f.Kind != tc.wantKind {
					t.Fatalf("err = %v, want failure of kind %v", err, tc.wantKind)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			req := route.Hosts[0].Req
			if tc.want == 0 {
				if req.Source != SourceFloor {
					t.Fatalf("requirement %s, want the floor", req.Describe())
				}
				return
			}
			if req.Level != tc.want || req.ServerName != tc.wantSNI || req.Names[0] != tc.wantSNI {
				t.Errorf("level %s, SNI %q, names %v; want %s, SNI and first name %q", req.Level, req.ServerName, req.Names, tc.want, tc.wantSNI)
			}
		})
	}
}
