package enforcement

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"

	"sealgate/enforcement/dane"
	"sealgate/enforcement/mtasts"
)

// attemptLog is an AttemptRecorder that keeps what it is given.
type attemptLog struct {
	mu  sync.Mutex
	got []Attempt
}

func (l *attemptLog) RecordAttempt(a Attempt) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.got = append(l.got, a)
}

var _ AttemptRecorder = (*attemptLog)(nil)

// problemSTS answers every domain with its lookup, policy or problem.
type problemSTS map[string]mtasts.Lookup

func (s problemSTS) Policy(_ context.Context, domain string) (mtasts.Lookup, error) {
	return s[domain], nil
}

var _ STSSource = problemSTS(nil)

// TestRelayRouteRecordsFailures: the failures found while resolving the
// route through a smarthost are recorded for TLS-RPT as on an MX route,
// under the relay's policy domain (the relay domain of "host:port", the
// host of "[host]:port"), never under the recipient domain; the route's
// sessions report to the same domain, with the relay domain's MTA-STS
// problem when no policy is in force.
func TestRelayRouteRecordsFailures(t *testing.T) {
	usable := TLSAResult{Records: []dane.TLSA{ee311}, Secure: true}
	enforceMail := stsPolicy(mtasts.ModeEnforce, "mail.p.test")
	// rec is the part of an attempt the cases compare.
	type rec struct {
		domain, policyType, result, mxHost string
		mxHosts                            []string
	}
	recOf := func(a Attempt) rec {
		return rec{domain: a.Domain, policyType: a.PolicyType, result: a.Result, mxHost: a.MXHost, mxHosts: a.MXHosts}
	}
	same := func(a, b rec) bool {
		return a.domain == b.domain && a.policyType == b.policyType && a.result == b.result && a.mxHost == b.mxHost && slices.Equal(a.mxHosts, b.mxHosts)
	}
	tests := []struct {
		name  string
		relay string
		dns   *mapDNS
		sts   problemSTS
		local string
		// wantErr is the failure's kind; 0 when a route is found.
		wantErr Kind
		want    []rec
		// wantSession is the attempt a session with the route's first
		// host reports when it succeeds (routes only).
		wantSession rec
	}{
		{
			name:    "bracketed relay, TLSA lookup fails: dnssec-invalid for the host",
			relay:   "[smtp.p.test]:587",
			dns:     relayDNS(false, nil, "_587._tcp.smtp.p.test"),
			wantErr: KindDNS,
			want:    []rec{{domain: "smtp.p.test", policyType: PolicyTypeTLSA, result: ResultDNSSECInvalid, mxHost: "smtp.p.test", mxHosts: []string{"smtp.p.test"}}},
		},
		{
			name:        "relay domain, one MX host's TLSA lookup fails: recorded, the other used",
			relay:       "p.test:587",
			dns:         relayDNS(true, map[string]TLSAResult{"_587._tcp.out2.p.test": usable}, "_587._tcp.out1.p.test"),
			want:        []rec{{domain: "p.test", policyType: PolicyTypeTLSA, result: ResultDNSSECInvalid, mxHost: "out1.p.test", mxHosts: []string{"out1.p.test"}}},
			wantSession: rec{domain: "p.test", policyType: PolicyTypeTLSA, mxHost: "out2.p.test", mxHosts: []string{"out2.p.test"}},
		},
		{
			name:    "local dane-only for the bracketed relay without TLSA: dane-required",
			relay:   "[smtp.p.test]:587",
			dns:     relayDNS(false, nil),
			local:   "[smtp.p.test]:587 dane-only",
			wantErr: KindTLS,
			want:    []rec{{domain: "smtp.p.test", policyType: PolicyTypeNone, result: ResultDANERequired, mxHost: "smtp.p.test"}},
		},
		{
			name:    "local dane-only for the relay domain, insecure MX: dane-required per host",
			relay:   "p.test:587",
			dns:     relayDNS(false, nil),
			local:   "p.test:587 dane-only",
			wantErr: KindTLS,
			want: []rec{
				{domain: "p.test", policyType: PolicyTypeNone, result: ResultDANERequired, mxHost: "out1.p.test"},
				{domain: "p.test", policyType: PolicyTypeNone, result: ResultDANERequired, mxHost: "out2.p.test"},
			},
		},
		{
			name:    "relay domain's MTA-STS enforce names neither MX host: validation-failure per host",
			relay:   "p.test:587",
			dns:     relayDNS(false, nil),
			sts:     problemSTS{"p.test": {Policy: enforceMail}},
			wantErr: KindTLS,
			want: []rec{
				{domain: "p.test", policyType: PolicyTypeSTS, result: ResultValidationFailure, mxHost: "out1.p.test", mxHosts: []string{"mail.p.test"}},
				{domain: "p.test", policyType: PolicyTypeSTS, result: ResultValidationFailure, mxHost: "out2.p.test", mxHosts: []string{"mail.p.test"}},
			},
		},
		{
			name:        "relay domain's MTA-STS policy cannot be fetched: its sessions report it",
			relay:       "p.test:587",
			dns:         relayDNS(false, nil),
			sts:         problemSTS{"p.test": {Problem: errors.New("connection refused")}},
			wantSession: rec{domain: "p.test", policyType: PolicyTypeSTS, result: ResultSTSFetchError, mxHost: "out1.p.test"},
		},
		{
			name:        "the recipient domain's MTA-STS problem plays no part",
			relay:       "p.test:587",
			dns:         relayDNS(false, nil),
			sts:         problemSTS{"any.test": {Problem: errors.New("connection refused")}},
			wantSession: rec{domain: "p.test", policyType: PolicyTypeNone, mxHost: "out1.p.test"},
		},
		{
			name:    "relay domain's MX lookup fails: dnssec-invalid for the relay domain",
			relay:   "p.test:587",
			dns:     relayDNS(false, nil, "p.test"),
			wantErr: KindDNS,
			want:    []rec{{domain: "p.test", policyType: PolicyTypeNone, result: ResultDNSSECInvalid}},
		},
		{
			name:    "bracketed relay's address lookup fails: dnssec-invalid for the host",
			relay:   "[smtp.p.test]:587",
			dns:     relayDNS(false, nil, "smtp.p.test"),
			wantErr: KindDNS,
			want:    []rec{{domain: "smtp.p.test", policyType: PolicyTypeNone, result: ResultDNSSECInvalid}},
		},
		{
			name:        "bracketed relay, nothing wrong: nothing recorded, sessions under the host",
			relay:       "[smtp.p.test]:587",
			dns:         relayDNS(false, nil),
			wantSession: rec{domain: "smtp.p.test", policyType: PolicyTypeNone, mxHost: "smtp.p.test"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			log := &attemptLog{}
			e := relayEngine(t, tc.relay, tc.local, &Engine{DNS: tc.dns, STS: tc.sts, Attempts: log})
			r := e.Relay
			route, err := e.Resolve(context.Background(), "any.test")
			if tc.wantErr != 0 {
				if f, ok := AsFailure(err); !ok || f.Kind != tc.wantErr || f.Domain != "any.test" || !strings.Contains(f.Reason, "relay "+r.String()) {
					t.Fatalf("Resolve = %+v, %v; want a %v failure of any.test naming the relay", route, err, tc.wantErr)
				}
			} else if err != nil {
				t.Fatalf("Resolve: %v", err)
			}
			var got []rec
			for _, a := range log.got {
				got = append(got, recOf(a))
				if a.Reason == "" {
					t.Errorf("attempt %+v has no failure reason", a)
				}
			}
			if !slices.EqualFunc(got, tc.want, same) {
				t.Fatalf("recorded %+v; want %+v", got, tc.want)
			}
			if route == nil {
				return
			}
			if s := recOf(route.Attempt(route.Hosts[0], "", "")); !same(s, tc.wantSession) {
				t.Fatalf("a session reports %+v; want %+v", s, tc.wantSession)
			}
		})
	}
}

// TestUnansweredLookupsNotReported: a lookup that no DNS server answered
// (sealgate's resolver down or too slow) defers the mail like any DNS
// failure, but is not reported to the domain: it says nothing about the
// domain's DNSSEC or policy. The same lookups answered SERVFAIL are.
func TestUnansweredLookupsNotReported(t *testing.T) {
	usable := TLSAResult{Records: []dane.TLSA{ee311}, Secure: true}
	dnsFor := func(broken string, silent bool) *mapDNS {
		d := &mapDNS{
			mx:     map[string]MXResult{"d.test": {Hosts: []string{"mx.d.test"}, Secure: true}},
			addrs:  map[string]AddrResult{"mx.d.test": addr1},
			tlsa:   map[string]TLSAResult{"_25._tcp.mx.d.test": usable},
			fail:   map[string]bool{},
			silent: map[string]bool{},
		}
		if silent {
			d.silent[broken] = true
		} else {
			d.fail[broken] = true
		}
		return d
	}
	unanswered := fmt.Errorf("lookup TXT _mta-sts.d.test: timeout: %w", errors.Join(ErrDNSTemporary, ErrDNSUnanswered))
	servfail := fmt.Errorf("lookup TXT _mta-sts.d.test: SERVFAIL: %w", ErrDNSTemporary)
	for _, tc := range []struct {
		name   string
		broken string
		// stsProblem, when set, is the MTA-STS lookup's problem.
		stsProblem, stsSERVFAIL error
	}{
		{name: "MX lookup", broken: "d.test"},
		{name: "address lookup", broken: "mx.d.test"},
		{name: "TLSA lookup", broken: "_25._tcp.mx.d.test"},
		{name: "MTA-STS TXT lookup", stsProblem: unanswered, stsSERVFAIL: servfail},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, silent := range []bool{true, false} {
				log := &attemptLog{}
				e := &Engine{DNS: dnsFor(tc.broken, silent), Attempts: log}
				if tc.stsProblem != nil {
					d := dnsFor("none.test", silent)
					d.tlsa = nil // no DANE: MTA-STS decides
					e.DNS = d
					problem := tc.stsSERVFAIL
					if silent {
						problem = tc.stsProblem
					}
					e.STS = problemSTS{"d.test": {Problem: problem}}
				}
				route, err := e.Resolve(context.Background(), "d.test")
				if tc.stsProblem == nil {
					if f, ok := AsFailure(err); !ok || f.Kind != KindDNS {
						t.Fatalf("silent=%v: Resolve = %+v, %v; want a DNS failure (deferral)", silent, route, err)
					}
				} else {
					if err != nil {
						t.Fatalf("silent=%v: Resolve: %v", silent, err)
					}
					if got := route.Attempt(route.Hosts[0], "", ""); (got.Result != "") == silent {
						t.Fatalf("silent=%v: a session reports %q (%s)", silent, got.Result, got.Reason)
					}
					continue
				}
				if silent && len(log.got) != 0 {
					t.Fatalf("an unanswered lookup was reported: %+v", log.got)
				}
				if !silent && (len(log.got) != 1 || log.got[0].Result != ResultDNSSECInvalid) {
					t.Fatalf("a SERVFAIL was reported as %+v, want one dnssec-invalid", log.got)
				}
			}
		})
	}
}
