package e2e

import (
	"fmt"
	"strings"
	"testing"

	"github.com/miekg/dns"

	"sealgate/certs/certstest"
	"sealgate/enforcement/dane"
	"sealgate/upstream/upstreamtest"
)

// relayTLSA is the zone line of rec at the relay's port (RFC 7672 §2.2.2).
func relayTLSA(port int, host string, rec dane.TLSA) string {
	return fmt.Sprintf("_%d._tcp.%s. 300 IN TLSA %s", port, host, strings.ToUpper(rec.String()))
}

// TestSmarthostDANE: a bracketed relay whose address records are
// DNSSEC-secure is authenticated by its TLSA records at
// _PORT._tcp.<relay>, in place of the WebPKI check of its name.
func TestSmarthostDANE(t *testing.T) {
	const name = "relay.sealgate.test"
	tests := []struct {
		name string
		port int
		// tlsa is the record published for the relay's key: usage 3
		// matches, usage 1 is unusable for SMTP; none if 0.
		usage uint8
		// wrongKey publishes the record of another key.
		wrongKey bool
		// insecure leaves the zone unsigned.
		insecure bool
		servfail bool
		// wantCode is the RCPT reply, 0 for delivery.
		wantCode  int
		wantEnh   string
		wantParts []string
	}{
		{name: "DANE-EE match delivers over STARTTLS on 587", port: 587, usage: 3},
		{name: "DANE-EE match delivers over implicit TLS on 465", port: 465, usage: 3},
		{name: "wrong TLSA defers", port: 587, usage: 3, wrongKey: true,
			wantCode: 451, wantEnh: "4.7.5", wantParts: []string{"DANE", name, "TLSA"}},
		{name: "TLSA lookup failure defers", port: 587, usage: 3, servfail: true,
			wantCode: 451, wantEnh: "4.4.3", wantParts: []string{"DANE", name, "TLSA lookup failed"}},
		{name: "unsigned zone: TLSA ignored, WebPKI applies", port: 587, usage: 3, insecure: true,
			wantCode: 451, wantEnh: "4.7.5", wantParts: []string{name, "not signed by a trusted authority"}},
		{name: "only unusable TLSA: WebPKI still applies", port: 587, usage: 1,
			wantCode: 451, wantEnh: "4.7.5", wantParts: []string{name, "not signed by a trusted authority"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			w := newWorld(t)
			// Self-signed: only DANE can authenticate it.
			self := certstest.SelfSigned(t, name)
			relay, hostport := w.relay(tc.port, upstreamtest.MXOptions{Certificate: &self, ImplicitTLS: tc.port == 465})
			key := self.Leaf
			if tc.wrongKey {
				key = certstest.SelfSigned(t, name).Leaf
			}
			w.dns.Add(relayTLSA(tc.port, name, dane.Expect(key, tc.usage, 1, 1)))
			// A record at _25 must not count for a relay on another port.
			w.dns.Add(relayTLSA(25, name, dane.Expect(certstest.SelfSigned(t, name).Leaf, 3, 1, 1)))
			w.dns.SetSecureZone(name+".", !tc.insecure)
			if tc.servfail {
				w.dns.SetRcode(fmt.Sprintf("_%d._tcp.%s.", tc.port, name), dns.TypeTLSA, dns.RcodeServerFailure)
			}
			g := w.start(map[string]string{"SEALGATE_RELAY_HOST": hostport})
			res := g.send("a@legacy.sealgate.test", []string{"x@one.test"}, message("x"))
			if tc.wantCode != 0 {
				wantReply(t, "RCPT", res.Rcpt[0], tc.wantCode, tc.wantEnh, tc.wantParts...)
				if relay.SawMailFrom() {
					t.Fatal("a relay that failed its requirement saw MAIL FROM")
				}
				if tc.servfail && relay.Connections() != 0 {
					t.Fatal("a relay whose TLSA lookup failed got a connection")
				}
				return
			}
			if res.Rcpt[0] != nil || res.Data != nil {
				t.Fatalf("relay authenticated by DANE refused: %+v", res)
			}
			if len(relay.Messages()) != 1 {
				t.Fatal("no message at the relay")
			}
			if sni := relay.Conns()[0].TLS.ServerName; sni != name {
				t.Errorf("SNI %q, want the relay's name", sni)
			}
			if !strings.Contains(g.logs.String(), `verification="DANE 3 1 1`) {
				t.Errorf("log does not say which record matched:\n%s", g.logs.String())
			}
		})
	}
}

// TestSmarthostMXLookupPolicies: a relay written host:port is found by MX
// lookup of its domain, the next-hop domain whose MTA-STS policy applies
// (RFC 8461 §3.4) and whose secure MX hosts get DANE at the relay's port
// (RFC 7672 §2.2.1). The recipient domain's policies play no part. The
// relay listens on the world's port, which no MX of a recipient uses here.
func TestSmarthostMXLookupPolicies(t *testing.T) {
	const domain, mxName = "provider.test", "out.provider.test"
	relayAt := func(w *world, opts upstreamtest.MXOptions) (*upstreamtest.MX, map[string]string) {
		return w.mx(domain, mxName, 10, opts), map[string]string{"SEALGATE_RELAY_HOST": fmt.Sprintf("%s:%d", domain, w.port)}
	}
	t.Run("MTA-STS enforce without the MX host defers", func(t *testing.T) {
		w := newWorld(t)
		relay, env := relayAt(w, upstreamtest.MXOptions{Certificate: w.cert(mxName)})
		w.sts(domain, "1", enforce("mail.provider.test"))
		g := w.start(env)
		res := g.send("a@legacy.sealgate.test", []string{"x@one.test"}, message("x"))
		wantReply(t, "RCPT", res.Rcpt[0], 451, "4.7.5", "one.test: MTA-STS enforce", "relay "+env["SEALGATE_RELAY_HOST"], mxName, "mail.provider.test")
		if relay.Connections() != 0 {
			t.Fatal("an MX host outside the relay domain's policy got a connection")
		}
	})
	t.Run("MTA-STS enforce with the MX host delivers", func(t *testing.T) {
		w := newWorld(t)
		relay, env := relayAt(w, upstreamtest.MXOptions{Certificate: w.cert(mxName)})
		w.sts(domain, "1", enforce("*.provider.test"))
		// The recipient domain's own policy does not apply to the relay.
		w.sts("one.test", "1", enforce("mx.one.test"))
		g := w.start(env)
		res := g.send("a@legacy.sealgate.test", []string{"x@one.test"}, message("x"))
		if res.Rcpt[0] != nil || res.Data != nil {
			t.Fatalf("%+v", res)
		}
		if len(relay.Messages()) != 1 {
			t.Fatal("no message at the relay")
		}
		if !strings.Contains(g.logs.String(), `policy="MTA-STS enforce"`) {
			t.Errorf("delivery log does not name the relay domain's MTA-STS policy:\n%s", g.logs.String())
		}
	})
	t.Run("secure MX host with DANE-EE delivers", func(t *testing.T) {
		w := newWorld(t)
		self := certstest.SelfSigned(t, mxName)
		relay, env := relayAt(w, upstreamtest.MXOptions{Certificate: &self})
		w.dns.Add(relayTLSA(w.port, mxName, dane.Expect(self.Leaf, 3, 1, 1)))
		w.dns.SetSecureZone(domain+".", true)
		g := w.start(env)
		res := g.send("a@legacy.sealgate.test", []string{"x@one.test"}, message("x"))
		if res.Rcpt[0] != nil || res.Data != nil {
			t.Fatalf("relay MX host authenticated by DANE refused: %+v", res)
		}
		if sni := relay.Conns()[0].TLS.ServerName; sni != mxName {
			t.Errorf("SNI %q, want the MX host name", sni)
		}
	})
}

// TestSmarthostTLSRequiredNoKeepsRelayAuthentication: a message with
// "TLS-Required: No" waives nothing on the way to the smarthost, which
// receives the relay credentials. An impostor in the relay's place, whose
// key the relay's DNSSEC TLSA records do not match (its certificate valid
// under the WebPKI or not), gets neither the
// credentials nor the message: the message is deferred, as without the
// header field.
func TestSmarthostTLSRequiredNoKeepsRelayAuthentication(t *testing.T) {
	const name = "relay.sealgate.test"
	for _, tc := range []struct {
		name  string
		local string // the relay's local policy entry, if any
	}{
		{name: "DNSSEC TLSA only"},
		{name: "local dane entry", local: "[" + name + "]:587 dane"},
		{name: "local dane-only entry", local: "[" + name + "]:587 dane-only"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := newWorld(t)
			// The impostor's certificate is even valid under the WebPKI
			// (mis-issued, say): what DANE pinning is there for.
			relay, hostport := w.relay(587, upstreamtest.MXOptions{Certificate: w.cert(name)})
			legit := certstest.SelfSigned(t, name)
			w.dns.Add(relayTLSA(587, name, dane.Expect(legit.Leaf, 3, 1, 1)))
			w.dns.SetSecureZone(name+".", true)
			env := map[string]string{
				"SEALGATE_RELAY_HOST":            hostport,
				"SEALGATE_RELAY_USERNAME":        "gateway",
				"SEALGATE_RELAY_PASSWORD":        "s3cret",
				"SEALGATE_HONOR_TLS_REQUIRED_NO": "true",
			}
			if tc.local != "" {
				env["SEALGATE_POLICY_FILE"] = writePolicy(t, tc.local)
			}
			g := w.start(env)
			body := []byte("From: a@legacy.sealgate.test\r\nTLS-Required: No\r\nSubject: waive\r\n\r\nhello\r\n")
			res := g.send("a@legacy.sealgate.test", []string{"x@one.test"}, body)
			if res.Rcpt[0] != nil {
				t.Fatalf("RCPT: %v, want it accepted on condition of TLS-Required: No", res.Rcpt[0])
			}
			wantReply(t, "DATA", res.Data, 451, "4.7.5", name)
			if relay.SawMailFrom() || len(relay.Messages()) != 0 {
				t.Fatalf("the impostor got the message (and the credentials before it): %+v", relay.Messages())
			}
		})
	}
}
