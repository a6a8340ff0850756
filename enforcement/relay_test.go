package enforcement

import (
	"context"
	"slices"
	"strings"
	"sync"
	"testing"

	"sealgate/enforcement/dane"
	"sealgate/enforcement/localpolicy"
	"sealgate/enforcement/mtasts"
)

// domainSTS hands out the policy of each domain and records which domains
// were asked for.
type domainSTS struct {
	policies map[string]*mtasts.Policy
	mu       sync.Mutex
	asked    []string
}

func (s *domainSTS) Policy(_ context.Context, domain string) (mtasts.Lookup, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.asked = append(s.asked, domain)
	return mtasts.Lookup{Policy: s.policies[domain]}, nil
}

var _ STSSource = (*domainSTS)(nil)

// relayDNS publishes the bracketed relay smtp.p.test, the relay domain
// p.test with MX hosts out1 and out2 (a secure MX RRset if secureMX),
// the given TLSA records, and SERVFAIL for the names in fail.
func relayDNS(secureMX bool, tlsa map[string]TLSAResult, fail ...string) *mapDNS {
	d := &mapDNS{
		mx:    map[string]MXResult{"p.test": {Hosts: []string{"out1.p.test", "out2.p.test"}, Secure: secureMX}},
		addrs: map[string]AddrResult{"smtp.p.test": addr1, "out1.p.test": addr1, "out2.p.test": addr1},
		tlsa:  tlsa,
		fail:  map[string]bool{},
	}
	for _, f := range fail {
		d.fail[f] = true
	}
	return d
}

// relayEngine is e with the relay written relay and, unless local is
// empty, the local policy of that one line.
func relayEngine(t *testing.T, relay, local string, e *Engine) *Engine {
	t.Helper()
	r, err := ParseRelayHost(relay)
	if err != nil {
		t.Fatal(err)
	}
	e.Relay = &r
	if local != "" {
		p, err := localpolicy.Parse("policy", strings.NewReader(local+"\n"))
		if err != nil {
			t.Fatal(err)
		}
		e.Local = p
	}
	return e
}

// TestRelayPolicy resolves routes through a smarthost: the local policy
// for the relay, then DANE at the relay's port (RFC 7672 §2.2.2), then the
// MTA-STS policy of the relay's domain when it was found by MX lookup
// (RFC 8461 §3.4), then WebPKI for the relay's name, which stays the floor.
func TestRelayPolicy(t *testing.T) {
	usable := TLSAResult{Records: []dane.TLSA{ee311}, Secure: true}
	unusable := TLSAResult{Records: []dane.TLSA{pkixEE}, Secure: true}
	insecureAddr := AddrResult{Addrs: addr1.Addrs}
	type want struct {
		host    string
		source  Source
		level   Level
		mode    string
		sni     string
		testing bool
		floor   Level
	}
	webPKI := func(host string) want {
		return want{host: host, source: SourceLocal, level: LevelVerify, mode: "relay"}
	}
	daneAuth := func(host string) want {
		return want{host: host, source: SourceDANE, level: LevelDANE, sni: host}
	}
	tests := []struct {
		name     string
		relay    string
		dns      *mapDNS
		sts      map[string]*mtasts.Policy
		local    string
		floor    Level
		want     []want
		wantKind Kind
		// wantText are parts of the failure's text.
		wantText []string
	}{
		{
			name:  "bracketed relay, secure usable TLSA at the relay's port: DANE",
			relay: "[smtp.p.test]:587",
			dns:   relayDNS(false, map[string]TLSAResult{"_587._tcp.smtp.p.test": usable}),
			want:  []want{daneAuth("smtp.p.test")},
		},
		{
			name:  "bracketed relay on 465: TLSA at _465",
			relay: "[smtp.p.test]:465",
			dns:   relayDNS(false, map[string]TLSAResult{"_465._tcp.smtp.p.test": usable}),
			want:  []want{daneAuth("smtp.p.test")},
		},
		{
			name:  "bracketed relay, TLSA at _25 only: not the relay's port, WebPKI",
			relay: "[smtp.p.test]:587",
			dns:   relayDNS(false, map[string]TLSAResult{"_25._tcp.smtp.p.test": usable}),
			want:  []want{webPKI("smtp.p.test")},
		},
		{
			name:  "bracketed relay, insecure addresses: TLSA not used",
			relay: "[smtp.p.test]:587",
			dns: func() *mapDNS {
				d := relayDNS(false, map[string]TLSAResult{"_587._tcp.smtp.p.test": usable})
				d.addrs["smtp.p.test"] = insecureAddr
				return d
			}(),
			want: []want{webPKI("smtp.p.test")},
		},
		{
			name:  "bracketed relay, insecure TLSA ignored",
			relay: "[smtp.p.test]:587",
			dns:   relayDNS(false, map[string]TLSAResult{"_587._tcp.smtp.p.test": {Records: []dane.TLSA{ee311}}}),
			want:  []want{webPKI("smtp.p.test")},
		},
		{
			name:  "bracketed relay, only unusable records: WebPKI still applies",
			relay: "[smtp.p.test]:587",
			dns:   relayDNS(false, map[string]TLSAResult{"_587._tcp.smtp.p.test": unusable}),
			want:  []want{webPKI("smtp.p.test")},
		},
		{
			name:     "bracketed relay, TLSA lookup fails: deferred, never downgraded",
			relay:    "[smtp.p.test]:587",
			dns:      relayDNS(false, nil, "_587._tcp.smtp.p.test"),
			wantKind: KindDNS,
			wantText: []string{"any.test: DANE: smtp.p.test: ", "relay [smtp.p.test]:587", "TLSA lookup failed"},
		},
		{
			name:  "bracketed relay: no MTA-STS (no next-hop domain), not even the host's own",
			relay: "[smtp.p.test]:587",
			dns:   relayDNS(false, nil),
			sts: map[string]*mtasts.Policy{
				"p.test":      stsPolicy(mtasts.ModeEnforce, "mail.p.test"),
				"smtp.p.test": stsPolicy(mtasts.ModeEnforce, "mail.p.test"),
				"any.test":    stsPolicy(mtasts.ModeEnforce, "mail.p.test"),
			},
			want: []want{webPKI("smtp.p.test")},
		},
		{
			name:  "MX lookup, secure MX set, usable TLSA at _587 of the MX host: DANE",
			relay: "p.test:587",
			dns:   relayDNS(true, map[string]TLSAResult{"_587._tcp.out1.p.test": usable}),
			want:  []want{daneAuth("out1.p.test"), webPKI("out2.p.test")},
		},
		{
			name:  "MX lookup, insecure MX set: no DANE",
			relay: "p.test:587",
			dns:   relayDNS(false, map[string]TLSAResult{"_587._tcp.out1.p.test": usable}),
			want:  []want{webPKI("out1.p.test"), webPKI("out2.p.test")},
		},
		{
			name:     "MX lookup, TLSA failure on every MX host defers",
			relay:    "p.test:587",
			dns:      relayDNS(true, nil, "_587._tcp.out1.p.test", "_587._tcp.out2.p.test"),
			wantKind: KindDNS,
			wantText: []string{"DANE", "TLSA lookup failed"},
		},
		{
			name:  "MX lookup, TLSA failure on one MX host: the other is used",
			relay: "p.test:587",
			dns:   relayDNS(true, nil, "_587._tcp.out1.p.test"),
			want:  []want{webPKI("out2.p.test")},
		},
		{
			name:  "MX lookup, MTA-STS enforce of the relay domain: only hosts in mx:",
			relay: "p.test:587",
			dns:   relayDNS(false, nil),
			sts:   map[string]*mtasts.Policy{"p.test": stsPolicy(mtasts.ModeEnforce, "out2.p.test"), "any.test": stsPolicy(mtasts.ModeEnforce, "out1.p.test")},
			want:  []want{{host: "out2.p.test", source: SourceMTASTS, level: LevelVerify, mode: "enforce"}},
		},
		{
			name:     "MX lookup, MTA-STS enforce matching no MX host: refused",
			relay:    "p.test:587",
			dns:      relayDNS(false, nil),
			sts:      map[string]*mtasts.Policy{"p.test": stsPolicy(mtasts.ModeEnforce, "mail.p.test")},
			wantKind: KindTLS,
			wantText: []string{"any.test: MTA-STS enforce: relay p.test:587", "mail.p.test", "out1.p.test"},
		},
		{
			name:  "MX lookup, MTA-STS testing: reported, the relay's WebPKI is the floor",
			relay: "p.test:587",
			dns:   relayDNS(false, nil),
			sts:   map[string]*mtasts.Policy{"p.test": stsPolicy(mtasts.ModeTesting, "mail.p.test")},
			want:  []want{{host: "out1.p.test", source: SourceMTASTS, level: LevelVerify, mode: "testing", testing: true, floor: LevelVerify}, {host: "out2.p.test", source: SourceMTASTS, level: LevelVerify, mode: "testing", testing: true, floor: LevelVerify}},
		},
		{
			name:  "MX lookup, usable TLSA beats MTA-STS enforce",
			relay: "p.test:587",
			dns:   relayDNS(true, map[string]TLSAResult{"_587._tcp.out1.p.test": usable}),
			sts:   map[string]*mtasts.Policy{"p.test": stsPolicy(mtasts.ModeEnforce, "mail.p.test")},
			want:  []want{daneAuth("out1.p.test")},
		},
		{
			name:     "MX lookup, unusable TLSA does not weaken MTA-STS enforce",
			relay:    "p.test:587",
			dns:      relayDNS(true, map[string]TLSAResult{"_587._tcp.out1.p.test": unusable, "_587._tcp.out2.p.test": unusable}),
			sts:      map[string]*mtasts.Policy{"p.test": stsPolicy(mtasts.ModeEnforce, "mail.p.test")},
			wantKind: KindTLS,
			wantText: []string{"MTA-STS enforce"},
		},
		{
			name:  "local policy for the relay beats DANE",
			relay: "[smtp.p.test]:587",
			dns:   relayDNS(false, map[string]TLSAResult{"_587._tcp.smtp.p.test": usable}),
			local: "[smtp.p.test]:587 encrypt",
			want:  []want{{host: "smtp.p.test", source: SourceLocal, level: LevelEncrypt, mode: "encrypt"}},
		},
		{
			name:  "local policy for the relay domain beats MTA-STS",
			relay: "p.test:587",
			dns:   relayDNS(false, nil),
			sts:   map[string]*mtasts.Policy{"p.test": stsPolicy(mtasts.ModeEnforce, "mail.p.test")},
			local: "p.test:587 encrypt",
			want: []want{
				{host: "out1.p.test", source: SourceLocal, level: LevelEncrypt, mode: "encrypt"},
				{host: "out2.p.test", source: SourceLocal, level: LevelEncrypt, mode: "encrypt"},
			},
		},
		{
			name:  "local dane-only for the relay uses TLSA at the relay's port",
			relay: "[smtp.p.test]:587",
			dns:   relayDNS(false, map[string]TLSAResult{"_587._tcp.smtp.p.test": usable}),
			local: "[smtp.p.test]:587 dane-only",
			want:  []want{{host: "smtp.p.test", source: SourceLocal, level: LevelDANE, mode: "dane-only", sni: "smtp.p.test"}},
		},
		{
			name:     "local dane-only for the relay without TLSA: refused",
			relay:    "[smtp.p.test]:587",
			dns:      relayDNS(false, nil),
			local:    "[smtp.p.test]:587 dane-only",
			wantKind: KindTLS,
			wantText: []string{"any.test: local policy dane-only: relay [smtp.p.test]:587"},
		},
		{
			name:  "engine floor verify: still DANE for a relay with TLSA",
			relay: "[smtp.p.test]:587",
			dns:   relayDNS(false, map[string]TLSAResult{"_587._tcp.smtp.p.test": usable}),
			floor: LevelVerify,
			want:  []want{daneAuth("smtp.p.test")},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			sts := &domainSTS{policies: tc.sts}
			e := relayEngine(t, tc.relay, tc.local, &Engine{DNS: tc.dns, STS: sts, Floor: tc.floor})
			r := *e.Relay
			route, err := e.Resolve(context.Background(), "any.test")
			// MTA-STS of the relay domain, never of the recipient
			// domain, and none for a bracketed relay or under a local
			// policy.
			var wantAsked []string
			if r.MXLookup && tc.local == "" {
				wantAsked = []string{"p.test"}
			}
			if !slices.Equal(sts.asked, wantAsked) {
				t.Errorf("MTA-STS asked for %v, want %v", sts.asked, wantAsked)
			}
			if tc.wantKind != 0 {
				f, ok := AsFailure(err)
				if !ok || f.Kind != tc.wantKind {
					t.Fatalf("err = %v, route %+v; want a failure of kind %v", err, route, tc.wantKind)
				}
				for _, part := range tc.wantText {
					if !strings.Contains(f.Error(), part) {
						t.Errorf("failure %q does not contain %q", f.Error(), part)
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !route.Relay || route.Domain != "any.test" {
				t.Errorf("route %+v is not the relay route of any.test", route)
			}
			if len(route.Hosts) != len(tc.want) {
				t.Fatalf("hosts %+v, want %+v", route.Hosts, tc.want)
			}
			for i, h := range route.Hosts {
				w := tc.want[i]
				got := want{host: h.Name, source: h.Req.Source, level: h.Req.Level, mode: h.Req.Mode, sni: h.Req.ServerName, testing: h.Req.Testing, floor: h.Req.Floor}
				if got != w {
					t.Errorf("host %d: %+v, want %+v", i, got, w)
				}
				if h.Port != r.Port || h.ImplicitTLS != (r.Port == 465) {
					t.Errorf("host %d: port %d implicit %t, want the relay's %d", i, h.Port, h.ImplicitTLS, r.Port)
				}
			}
		})
	}
}

// TestRelaxedRelayRouteIsTheRelayRoute: "TLS-Required: No" (and TLS-RPT
// report mail, which takes the same route) waives nothing on the way to a
// smarthost: the relay receives the relay credentials, and what
// authenticates it (a local entry such as dane or dane-only, its DNSSEC
// TLSA records, its domain's MTA-STS policy, the WebPKI for its name) is
// what an attacker on the path would make fail to get a weaker route.
func TestRelaxedRelayRouteIsTheRelayRoute(t *testing.T) {
	usable := TLSAResult{Records: []dane.TLSA{ee311}, Secure: true}
	for _, tc := range []struct {
		name, relay, local string
		tlsa               map[string]TLSAResult
		sts                bool
		want               Source
		wantLevel          Level
	}{
		{name: "local dane entry, secure TLSA", relay: "[smtp.p.test]:587", local: "[smtp.p.test]:587 dane",
			tlsa: map[string]TLSAResult{"_587._tcp.smtp.p.test": usable}, want: SourceLocal, wantLevel: LevelDANE},
		{name: "local dane-only entry", relay: "[smtp.p.test]:587", local: "[smtp.p.test]:587 dane-only",
			tlsa: map[string]TLSAResult{"_587._tcp.smtp.p.test": usable}, want: SourceLocal, wantLevel: LevelDANE},
		{name: "DNSSEC TLSA of the relay", relay: "[smtp.p.test]:587",
			tlsa: map[string]TLSAResult{"_587._tcp.smtp.p.test": usable}, want: SourceDANE, wantLevel: LevelDANE},
		{name: "MTA-STS enforce of the relay domain", relay: "p.test:587", sts: true, want: SourceMTASTS, wantLevel: LevelVerify},
		{name: "nothing published: the WebPKI for its name", relay: "[smtp.p.test]:587", want: SourceLocal, wantLevel: LevelVerify},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dns := &mapDNS{
				mx:    map[string]MXResult{"p.test": {Hosts: []string{"mail.p.test"}, Secure: true}},
				addrs: map[string]AddrResult{"smtp.p.test": addr1, "mail.p.test": addr1},
				tlsa:  tc.tlsa,
			}
			var sts STSSource
			if tc.sts {
				sts = &domainSTS{policies: map[string]*mtasts.Policy{"p.test": stsPolicy(mtasts.ModeEnforce, "mail.p.test")}}
			}
			log := &attemptLog{}
			e := relayEngine(t, tc.relay, tc.local, &Engine{DNS: dns, STS: sts, Attempts: log})
			normal, err := e.Resolve(context.Background(), "any.test")
			if err != nil {
				t.Fatal(err)
			}
			relaxed, err := e.RelaxedRoute(context.Background(), "any.test")
			if err != nil {
				t.Fatal(err)
			}
			if !relaxed.Equal(normal) {
				t.Fatalf("relaxed relay route %+v differs from the relay route %+v", relaxed.Hosts, normal.Hosts)
			}
			req := relaxed.Hosts[0].Req
			if req.Source != tc.want || req.Level != tc.wantLevel || !req.Authenticates() {
				t.Fatalf("relaxed relay requirement %+v, want %v at %v, authenticating", req, tc.want, tc.wantLevel)
			}
			if a := relaxed.Attempt(relaxed.Hosts[0], "", ""); a.Domain != e.Relay.PolicyDomain() {
				t.Errorf("a session is reported for %q, want the relay's %q", a.Domain, e.Relay.PolicyDomain())
			}
		})
	}
	// A relay whose DANE check cannot be made (the TLSA lookup fails) is
	// deferred on the relaxed route too, and that is recorded only once.
	dns := &mapDNS{addrs: map[string]AddrResult{"smtp.p.test": addr1}, fail: map[string]bool{"_587._tcp.smtp.p.test": true}}
	log := &attemptLog{}
	e := relayEngine(t, "[smtp.p.test]:587", "[smtp.p.test]:587 dane-only", &Engine{DNS: dns, Attempts: log})
	if _, err := e.Resolve(context.Background(), "any.test"); err == nil {
		t.Fatal("Resolve: a relay whose TLSA lookup fails was routed")
	}
	if _, err := e.RelaxedRoute(context.Background(), "any.test"); err == nil {
		t.Fatal("RelaxedRoute: a relay whose TLSA lookup fails was routed")
	}
	if len(log.got) != 1 {
		t.Errorf("%d attempts recorded, want the one of Resolve", len(log.got))
	}
}
