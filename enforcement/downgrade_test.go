package enforcement

import (
	"context"
	"testing"

	"sealgate/enforcement/dane"
	"sealgate/enforcement/mtasts"
)

// fixedSTS hands out one policy for every domain.
type fixedSTS struct{ p *mtasts.Policy }

func (s fixedSTS) Policy(context.Context, string) (mtasts.Lookup, error) {
	return mtasts.Lookup{Policy: s.p}, nil
}

var _ STSSource = fixedSTS{}

func stsPolicy(mode mtasts.Mode, mx ...string) *mtasts.Policy {
	return &mtasts.Policy{Version: "STSv1", Mode: mode, MX: mx}
}

// TestUnusableTLSADoesNotWeakenMTASTS: a secure TLSA RRset holding only
// unusable records (usage 1, a common publishing mistake) authenticates
// nothing, so MTA-STS still decides which MX hosts may be used and how
// they are verified (RFC 8461 §2).
func TestUnusableTLSADoesNotWeakenMTASTS(t *testing.T) {
	unusable := TLSAResult{Records: []dane.TLSA{pkixEE}, Secure: true}
	usable := TLSAResult{Records: []dane.TLSA{ee311}, Secure: true}
	dnsWith := func(tlsa1, tlsa2 TLSAResult) *mapDNS {
		return &mapDNS{
			mx:    map[string]MXResult{"d.test": {Hosts: []string{"mx1.d.test", "mx2.d.test"}, Secure: true}},
			addrs: map[string]AddrResult{"mx1.d.test": addr1, "mx2.d.test": addr1},
			tlsa:  map[string]TLSAResult{"_25._tcp.mx1.d.test": tlsa1, "_25._tcp.mx2.d.test": tlsa2},
		}
	}
	type want struct {
		host   string
		source Source
		level  Level
	}
	tests := []struct {
		name     string
		dns      *mapDNS
		floor    Level
		sts      *mtasts.Policy
		want     []want
		wantKind Kind
	}{
		{
			name: "enforce: host outside mx: excluded, host inside verified",
			dns:  dnsWith(unusable, unusable),
			sts:  stsPolicy(mtasts.ModeEnforce, "mx2.d.test"),
			want: []want{{host: "mx2.d.test", source: SourceMTASTS, level: LevelVerify}},
		},
		{
			name:  "enforce under a verify floor: still filtered",
			dns:   dnsWith(unusable, unusable),
			floor: LevelVerify,
			sts:   stsPolicy(mtasts.ModeEnforce, "mx2.d.test"),
			want:  []want{{host: "mx2.d.test", source: SourceMTASTS, level: LevelVerify}},
		},
		{
			name:     "enforce: no host inside mx: refused",
			dns:      dnsWith(unusable, unusable),
			sts:      stsPolicy(mtasts.ModeEnforce, "mail.d.test"),
			wantKind: KindTLS,
		},
		{
			name: "testing: verified, reported, floor on failure",
			dns:  dnsWith(unusable, unusable),
			sts:  stsPolicy(mtasts.ModeTesting, "mx2.d.test"),
			want: []want{{host: "mx1.d.test", source: SourceMTASTS, level: LevelVerify}, {host: "mx2.d.test", source: SourceMTASTS, level: LevelVerify}},
		},
		{
			name: "usable TLSA still takes precedence over MTA-STS",
			dns:  dnsWith(usable, unusable),
			sts:  stsPolicy(mtasts.ModeEnforce, "mx2.d.test"),
			want: []want{{host: "mx1.d.test", source: SourceDANE, level: LevelDANE}, {host: "mx2.d.test", source: SourceMTASTS, level: LevelVerify}},
		},
		{
			name: "no MTA-STS: TLS mandatory under DANE",
			dns:  dnsWith(unusable, unusable),
			want: []want{{host: "mx1.d.test", source: SourceDANE, level: LevelEncrypt}, {host: "mx2.d.test", source: SourceDANE, level: LevelEncrypt}},
		},
		{
			name:  "no MTA-STS, verify floor: the floor",
			dns:   dnsWith(unusable, unusable),
			floor: LevelVerify,
			want:  []want{{host: "mx1.d.test", source: SourceFloor, level: LevelVerify}, {host: "mx2.d.test", source: SourceFloor, level: LevelVerify}},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := &Engine{DNS: tc.dns, Floor: tc.floor}
			if tc.sts != nil {
				e.STS = fixedSTS{tc.sts}
			}
			route, err := e.Resolve(context.Background(), "d.test")
			if tc.wantKind != 0 {
				if f, ok := AsFailure(err); !ok || f.Kind != tc.wantKind {
					t.Fatalf("err = %v, route %+v; want a failure of kind %v", err, route, tc.wantKind)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(route.Hosts) != len(tc.want) {
				t.Fatalf("hosts %+v, want %+v", route.Hosts, tc.want)
			}
			for i, h := range route.Hosts {
				w := tc.want[i]
				if h.Name != w.host || h.Req.Source != w.source || h.Req.Level != w.level {
					t.Errorf("host %d: %s %s/%s, want %s %s/%s", i, h.Name, h.Req.Source, h.Req.Level, w.host, w.source, w.level)
				}
			}
		})
	}
}
