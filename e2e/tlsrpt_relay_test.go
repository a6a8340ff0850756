package e2e

import (
	"fmt"
	"maps"
	"slices"
	"testing"

	"github.com/miekg/dns"

	"sealgate/certs/certstest"
	"sealgate/enforcement/dane"
	"sealgate/upstream/upstreamtest"
)

// TestTLSRPTRelayRouteFailures: through a smarthost (SEALGATE_RELAY_HOST),
// the failures found while working out the relay's route are recorded
// for TLS-RPT like those of MX routes, and so are the sessions with it,
// under the relay's policy domain: the host of "[host]:port", the relay
// domain of "host:port". The recipient domain gets no report: its
// policies play no part.
func TestTLSRPTRelayRouteFailures(t *testing.T) {
	const relayName, relayDomain, relayMX = "relay.sealgate.test", "provider.test", "out.provider.test"
	tests := []struct {
		name string
		// setup builds the world and returns SEALGATE_RELAY_HOST.
		setup      func(w *world) string
		policyFile []string
		// wantDomain is the policy domain of the report.
		wantDomain string
		wantType   string
		wantMX     string
		wantResult string // "" for a delivery
		wantRcpt   string // the enhanced code the legacy server sees
	}{
		{name: "bracketed relay, TLSA lookup SERVFAIL: dnssec-invalid", setup: func(w *world) string {
			self := certstest.SelfSigned(t, relayName)
			_, hostport := w.relay(587, upstreamtest.MXOptions{Certificate: &self})
			w.dns.Add(relayTLSA(587, relayName, dane.Expect(self.Leaf, 3, 1, 1)))
			w.dns.SetSecureZone(relayName+".", true)
			w.dns.SetRcode(fmt.Sprintf("_587._tcp.%s.", relayName), dns.TypeTLSA, dns.RcodeServerFailure)
			return hostport
		}, wantDomain: relayName, wantType: "tlsa", wantMX: relayName, wantResult: "dnssec-invalid", wantRcpt: "4.4.3"},
		{name: "bracketed relay, local dane-only without TLSA: dane-required", setup: func(w *world) string {
			self := certstest.SelfSigned(t, relayName)
			_, hostport := w.relay(587, upstreamtest.MXOptions{Certificate: &self})
			w.dns.SetSecureZone(relayName+".", true)
			return hostport
		}, policyFile: []string{fmt.Sprintf("[%s]:587 dane-only", relayName)},
			wantDomain: relayName, wantType: "no-policy-found", wantMX: relayName, wantResult: "dane-required", wantRcpt: "4.7.5"},
		{name: "relay domain's MTA-STS enforce excludes its MX host: validation-failure", setup: func(w *world) string {
			w.mx(relayDomain, relayMX, 10, upstreamtest.MXOptions{Certificate: w.cert(relayMX)})
			w.sts(relayDomain, "1", enforce("mail.provider.test"))
			return fmt.Sprintf("%s:%d", relayDomain, w.port)
		}, wantDomain: relayDomain, wantType: "sts", wantMX: relayMX, wantResult: "validation-failure", wantRcpt: "4.7.5"},
		{name: "relay domain's MTA-STS policy invalid: sts-policy-invalid on the delivered session", setup: func(w *world) string {
			w.mx(relayDomain, relayMX, 10, upstreamtest.MXOptions{Certificate: w.cert(relayMX)})
			w.sts(relayDomain, "1", "version: STSv1\r\nmode: bogus\r\nmx: "+relayMX+"\r\nmax_age: 86400\r\n")
			return fmt.Sprintf("%s:%d", relayDomain, w.port)
		}, wantDomain: relayDomain, wantType: "sts", wantMX: relayMX, wantResult: "sts-policy-invalid"},
		{name: "bracketed relay, delivered: a success for the relay", setup: func(w *world) string {
			_, hostport := w.relay(587, upstreamtest.MXOptions{})
			return hostport
		}, wantDomain: relayName, wantType: "no-policy-found"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			w := newWorld(t)
			env := map[string]string{"SEALGATE_RELAY_HOST": tc.setup(w)}
			// The recipient domain has its own MX and policy, which
			// the relay route must not consult or report to.
			w.mx("one.test", "mx.one.test", 10, upstreamtest.MXOptions{Certificate: w.cert("mx.one.test")})
			w.sts("one.test", "1", enforce("mx.one.test"))
			if tc.policyFile != nil {
				env["SEALGATE_POLICY_FILE"] = writePolicy(t, tc.policyFile...)
			}
			g := w.start(env)
			res := g.send("a@legacy.sealgate.test", []string{"x@one.test"}, message("x"))
			if tc.wantRcpt == "" {
				if res.Rcpt[0] != nil || res.Data != nil {
					t.Fatalf("not delivered through the relay: %+v", res)
				}
			} else {
				wantReply(t, "RCPT", res.Rcpt[0], 451, tc.wantRcpt, "one.test", "relay "+env["SEALGATE_RELAY_HOST"])
			}
			reps, raw := g.showAll(t)
			t.Logf("tlsrpt show: %v", raw)
			if got := slices.Sorted(maps.Keys(reps)); !slices.Equal(got, []string{tc.wantDomain}) {
				t.Fatalf("reports for %v; want one, for the relay's policy domain %s", got, tc.wantDomain)
			}
			ps := reps[tc.wantDomain].Policies
			if len(ps) != 1 || ps[0].Policy.Type != tc.wantType {
				t.Fatalf("report %s: want one policy of type %s", raw[tc.wantDomain], tc.wantType)
			}
			p := ps[0]
			if tc.wantResult == "" {
				if p.Summary.Success != 1 || p.Summary.Failure != 0 {
					t.Fatalf("summary %+v; want one success", p.Summary)
				}
				return
			}
			if p.Summary.Failure != 1 || len(p.Details) != 1 {
				t.Fatalf("summary %+v, details %+v; want one failure", p.Summary, p.Details)
			}
			if d := p.Details[0]; d.Result != tc.wantResult || d.Count != 1 || d.MX != tc.wantMX || d.Reason == "" {
				t.Fatalf("failure %+v; want %s once at %s with a reason", d, tc.wantResult, tc.wantMX)
			}
		})
	}
}
