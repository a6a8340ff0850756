package enforcement

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"testing"

	"sealgate/enforcement/dane"
)

// mapDNS answers from maps; a name in fail gets ErrDNSTemporary (a
// SERVFAIL), one in silent gets no answer at all (ErrDNSUnanswered).
type mapDNS struct {
	mx     map[string]MXResult
	addrs  map[string]AddrResult
	tlsa   map[string]TLSAResult
	fail   map[string]bool
	silent map[string]bool
}

func (d *mapDNS) lookup(name string) error {
	if d.fail[name] {
		return fmt.Errorf("lookup %s: SERVFAIL: %w", name, ErrDNSTemporary)
	}
	if d.silent[name] {
		return fmt.Errorf("lookup %s: timeout: %w", name, errors.Join(ErrDNSTemporary, ErrDNSUnanswered))
	}
	return nil
}

func (d *mapDNS) LookupMX(_ context.Context, n string) (MXResult, error) {
	if err := d.lookup(n); err != nil {
		return MXResult{}, err
	}
	r, ok := d.mx[n]
	if !ok {
		return r, fmt.Errorf("lookup MX %s: NXDOMAIN: %w", n, ErrNotFound)
	}
	return r, nil
}

func (d *mapDNS) LookupAddrs(_ context.Context, n string) (AddrResult, error) {
	if err := d.lookup(n); err != nil {
		return AddrResult{}, err
	}
	r, ok := d.addrs[n]
	if !ok {
		return r, fmt.Errorf("lookup A %s: NXDOMAIN: %w", n, ErrNotFound)
	}
	if r.Name == "" {
		r.Name = n
	}
	return r, nil
}

func (d *mapDNS) LookupTLSA(_ context.Context, n string) (TLSAResult, error) {
	if err := d.lookup(n); err != nil {
		return TLSAResult{}, err
	}
	r, ok := d.tlsa[n]
	if !ok {
		return r, fmt.Errorf("lookup TLSA %s: NXDOMAIN: %w", n, ErrNotFound)
	}
	return r, nil
}

func (d *mapDNS) LookupTXT(context.Context, string) (TXTResult, error) { return TXTResult{}, nil }

var (
	ee311  = dane.TLSA{Usage: 3, Selector: 1, MatchingType: 1, Data: make([]byte, 32)}
	pkixEE = dane.TLSA{Usage: 1, Selector: 1, MatchingType: 1, Data: make([]byte, 32)}
	addr1  = AddrResult{Addrs: []netip.Addr{netip.MustParseAddr("192.0.2.1")}, Secure: true}
)

func TestResolve(t *testing.T) {
	tests := []struct {
		name      string
		dns       *mapDNS
		floor     Level
		wantKind  Kind
		wantHosts []string
		wantReq   []Requirement // Source and Level compared
	}{
		{
			name:      "insecure MX gets the floor",
			dns:       &mapDNS{mx: map[string]MXResult{"d.test": {Hosts: []string{"mx.d.test"}}}, addrs: map[string]AddrResult{"mx.d.test": addr1}, tlsa: map[string]TLSAResult{"_25._tcp.mx.d.test": {Records: []dane.TLSA{ee311}, Secure: true}}},
			wantHosts: []string{"mx.d.test"},
			wantReq:   []Requirement{{Source: SourceFloor, Level: LevelEncrypt}},
		},
		{
			name:      "floor verify",
			dns:       &mapDNS{mx: map[string]MXResult{"d.test": {Hosts: []string{"mx.d.test"}}}, addrs: map[string]AddrResult{"mx.d.test": addr1}},
			floor:     LevelVerify,
			wantHosts: []string{"mx.d.test"},
			wantReq:   []Requirement{{Source: SourceFloor, Level: LevelVerify}},
		},
		{
			name:      "secure MX with usable TLSA is DANE",
			dns:       &mapDNS{mx: map[string]MXResult{"d.test": {Hosts: []string{"mx.d.test"}, Secure: true}}, addrs: map[string]AddrResult{"mx.d.test": addr1}, tlsa: map[string]TLSAResult{"_25._tcp.mx.d.test": {Records: []dane.TLSA{ee311}, Secure: true}}},
			wantHosts: []string{"mx.d.test"},
			wantReq:   []Requirement{{Source: SourceDANE, Level: LevelDANE}},
		},
		{
			name:      "insecure addresses: no TLSA lookup",
			dns:       &mapDNS{mx: map[string]MXResult{"d.test": {Hosts: []string{"mx.d.test"}, Secure: true}}, addrs: map[string]AddrResult{"mx.d.test": {Addrs: addr1.Addrs}}, tlsa: map[string]TLSAResult{"_25._tcp.mx.d.test": {Records: []dane.TLSA{ee311}, Secure: true}}},
			wantHosts: []string{"mx.d.test"},
			wantReq:   []Requirement{{Source: SourceFloor, Level: LevelEncrypt}},
		},
		{
			name:      "insecure TLSA ignored",
			dns:       &mapDNS{mx: map[string]MXResult{"d.test": {Hosts: []string{"mx.d.test"}, Secure: true}}, addrs: map[string]AddrResult{"mx.d.test": addr1}, tlsa: map[string]TLSAResult{"_25._tcp.mx.d.test": {Records: []dane.TLSA{ee311}}}},
			wantHosts: []string{"mx.d.test"},
			wantReq:   []Requirement{{Source: SourceFloor, Level: LevelEncrypt}},
		},
		{
			name:      "unusable only: encrypt under DANE",
			dns:       &mapDNS{mx: map[string]MXResult{"d.test": {Hosts: []string{"mx.d.test"}, Secure: true}}, addrs: map[string]AddrResult{"mx.d.test": addr1}, tlsa: map[string]TLSAResult{"_25._tcp.mx.d.test": {Records: []dane.TLSA{pkixEE}, Secure: true}}},
			wantHosts: []string{"mx.d.test"},
			wantReq:   []Requirement{{Source: SourceDANE, Level: LevelEncrypt}},
		},
		{
			name:      "CNAME: TLSA at expanded name first",
			dns:       &mapDNS{mx: map[string]MXResult{"d.test": {Hosts: []string{"mx.d.test"}, Secure: true}}, addrs: map[string]AddrResult{"mx.d.test": {Name: "real.h.test", Addrs: addr1.Addrs, Secure: true}}, tlsa: map[string]TLSAResult{"_25._tcp.real.h.test": {Records: []dane.TLSA{ee311}, Secure: true}}},
			wantHosts: []string{"mx.d.test"},
			wantReq:   []Requirement{{Source: SourceDANE, Level: LevelDANE, ServerName: "real.h.test"}},
		},
		{
			name:      "TLSA failure skips the host, next host used",
			dns:       &mapDNS{mx: map[string]MXResult{"d.test": {Hosts: []string{"mx1.d.test", "mx2.d.test"}, Secure: true}}, addrs: map[string]AddrResult{"mx1.d.test": addr1, "mx2.d.test": addr1}, fail: map[string]bool{"_25._tcp.mx1.d.test": true}},
			wantHosts: []string{"mx2.d.test"},
			wantReq:   []Requirement{{Source: SourceFloor, Level: LevelEncrypt}},
		},
		{
			name:     "TLSA failure on every host defers",
			dns:      &mapDNS{mx: map[string]MXResult{"d.test": {Hosts: []string{"mx1.d.test"}, Secure: true}}, addrs: map[string]AddrResult{"mx1.d.test": addr1}, fail: map[string]bool{"_25._tcp.mx1.d.test": true}},
			wantKind: KindDNS,
		},
		{name: "null MX", dns: &mapDNS{mx: map[string]MXResult{"d.test": {Null: true}}}, wantKind: KindNullMX},
		{name: "NXDOMAIN", dns: &mapDNS{}, wantKind: KindNoDomain},
		{name: "no MX, no address", dns: &mapDNS{mx: map[string]MXResult{"d.test": {}}}, wantKind: KindNoDomain},
		{name: "SERVFAIL", dns: &mapDNS{fail: map[string]bool{"d.test": true}}, wantKind: KindDNS},
		{
			name:     "MX address SERVFAIL",
			dns:      &mapDNS{mx: map[string]MXResult{"d.test": {Hosts: []string{"mx.d.test"}}}, fail: map[string]bool{"mx.d.test": true}},
			wantKind: KindDNS,
		},
		{
			name:     "MX without address",
			dns:      &mapDNS{mx: map[string]MXResult{"d.test": {Hosts: []string{"mx.d.test"}}}},
			wantKind: KindUnreachable,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := &Engine{DNS: tc.dns, Floor: tc.floor}
			route, err := e.Resolve(context.Background(), "D.test.")
			if tc.wantKind != 0 {
				f, ok := AsFailure(err)
				if !ok || f.Kind != tc.wantKind {
					t.Fatalf("err = %v, want failure of kind %v", err, tc.wantKind)
				}
				if f.Domain != "d.test" {
					t.Errorf("failure names domain %q", f.Domain)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(route.Hosts) != len(tc.wantHosts) {
				t.Fatalf("hosts %+v, want %v", route.Hosts, tc.wantHosts)
			}
			for i, h := range route.Hosts {
				w := tc.wantReq[i]
				if h.Name != tc.wantHosts[i] || h.Req.Source != w.Source || h.Req.Level != w.Level {
					t.Errorf("host %d: %s %s/%s, want %s %s/%s", i, h.Name, h.Req.Source, h.Req.Level, tc.wantHosts[i], w.Source, w.Level)
				}
				if w.ServerName != "" && h.Req.ServerName != w.ServerName {
					t.Errorf("SNI %q, want %q", h.Req.ServerName, w.ServerName)
				}
			}
		})
	}
}

func TestRouteKeySharing(t *testing.T) {
	dns := &mapDNS{
		mx: map[string]MXResult{
			"a.test": {Hosts: []string{"mx.shared.test"}},
			"b.test": {Hosts: []string{"mx.shared.test"}},
			"c.test": {Hosts: []string{"mx.c.test"}},
		},
		addrs: map[string]AddrResult{"mx.shared.test": addr1, "mx.c.test": addr1},
	}
	e := &Engine{DNS: dns}
	route := func(d string) *Route {
		r, err := e.Resolve(context.Background(), d)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	if !route("a.test").Equal(route("b.test")) {
		t.Error("domains with the same MX and requirement do not share a route")
	}
	if route("a.test").Equal(route("c.test")) {
		t.Error("domains with different MX hosts share a route")
	}
}

func TestFailureText(t *testing.T) {
	f := &Failure{Kind: KindTLS, Domain: "example.org", Policy: "MTA-STS enforce", Host: "mx1.example.org", Reason: "certificate not valid for name"}
	if got, want := f.Error(), "example.org: MTA-STS enforce: mx1.example.org: certificate not valid for name"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	wrapped := fmt.Errorf("open: %w", f)
	if g, ok := AsFailure(wrapped); !ok || g != f {
		t.Error("AsFailure does not find a wrapped failure")
	}
	if !Worse(KindTLS, KindNoSTARTTLS) || !Worse(KindNoSTARTTLS, KindUnreachable) || Worse(KindUnreachable, KindTLS) {
		t.Error("Worse orders kinds wrongly")
	}
	if !errors.Is(&Failure{Err: ErrDNSTemporary}, ErrDNSTemporary) {
		t.Error("Failure does not unwrap")
	}
}

func TestRelayRoute(t *testing.T) {
	dns := &mapDNS{
		mx:    map[string]MXResult{"provider.test": {Hosts: []string{"out1.provider.test", "out2.provider.test"}}, "nullrelay.test": {Null: true}},
		addrs: map[string]AddrResult{"smtp.provider.test": addr1, "out1.provider.test": addr1, "out2.provider.test": addr1},
	}
	tests := []struct {
		relay     string
		wantHosts []string
		wantKind  Kind
	}{
		{relay: "[smtp.provider.test]:587", wantHosts: []string{"smtp.provider.test"}},
		{relay: "provider.test:587", wantHosts: []string{"out1.provider.test", "out2.provider.test"}},
		// A relay that does not resolve is our configuration's fault:
		// never a 5xx that would bounce the message.
		{relay: "[missing.test]:587", wantKind: KindUnreachable},
		{relay: "nullrelay.test:25", wantKind: KindUnreachable},
	}
	for _, tc := range tests {
		t.Run(tc.relay, func(t *testing.T) {
			r, err := ParseRelayHost(tc.relay)
			if err != nil {
				t.Fatal(err)
			}
			e := &Engine{DNS: dns, Relay: &r}
			route, err := e.Resolve(context.Background(), "any.test")
			if tc.wantKind != 0 {
				f, ok := AsFailure(err)
				if !ok || f.Kind != tc.wantKind || f.Domain != "any.test" {
					t.Fatalf("err = %v, want kind %v for any.test", err, tc.wantKind)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var names []string
			for _, h := range route.Hosts {
				names = append(names, h.Name)
				if h.Port != 587 || h.Req.Level != LevelVerify || !route.Relay {
					t.Errorf("host %+v", h)
				}
			}
			if fmt.Sprint(names) != fmt.Sprint(tc.wantHosts) {
				t.Errorf("hosts %v, want %v", names, tc.wantHosts)
			}
		})
	}
}
