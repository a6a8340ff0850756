package e2e

import (
	"crypto/tls"
	"fmt"
	"strings"
	"testing"

	"github.com/miekg/dns"

	"sealgate/certs/certstest"
	"sealgate/enforcement/dane"
	"sealgate/upstream/upstreamtest"
)

// TestDANECNAMEFallsBackToTheOriginalName: an MX host that is a CNAME
// whose expanded name has no secure TLSA records is authenticated by the
// TLSA records of its original name, with that name as SNI (RFC 7672
// §2.2.3): after a secure denial at the expanded name, after an insecure
// TLSA answer there, and when the expanded name itself is insecure (a
// secure CNAME into an unsigned zone). The floor is verify, so the
// self-signed certificates pass only through DANE.
func TestDANECNAMEFallsBackToTheOriginalName(t *testing.T) {
	w := newWorld(t)
	w.dns.SetSecureZone("signed.test.", true)
	w.dns.SetSecureZone("unsigned.test.", false)
	tests := []struct {
		name   string
		target string // the CNAME target of mx.<name>.signed.test
		setup  func(target string)
	}{
		{name: "denial", target: "denial.host.signed.test"},
		{name: "insecure", target: "insecure.host.signed.test", setup: func(target string) {
			w.dns.Add(tlsaLine(target, dane.TLSA{Usage: 3, Selector: 1, MatchingType: 1, Data: make([]byte, 32)}))
			w.dns.SetSecure("_25._tcp."+target+".", dns.TypeTLSA, false)
		}},
		{name: "unsigned", target: "mx.unsigned.test"},
	}
	mxs := map[string]*upstreamtest.MX{}
	for _, tc := range tests {
		domain := tc.name + ".signed.test"
		host := "mx." + domain
		cert := certstest.SelfSigned(t, host)
		ip := w.host(tc.target)
		w.dns.Add(fmt.Sprintf("%s. 300 IN MX 10 %s.", domain, host), fmt.Sprintf("%s. 300 IN CNAME %s.", host, tc.target))
		w.dns.Add(tlsaLine(host, dane.Expect(cert.Leaf, 3, 1, 1)))
		if tc.setup != nil {
			tc.setup(tc.target)
		}
		mxs[tc.name] = upstreamtest.NewMX(t, upstreamtest.MXOptions{Addr: fmt.Sprintf("%s:%d", ip, w.port), Hostname: tc.target, Certificate: &cert})
	}
	g := w.start(map[string]string{"SEALGATE_MIN_TLS": "verify"})
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			res := g.send("a@legacy.sealgate.test", []string{"b@" + tc.name + ".signed.test"}, message("x"))
			if res.Rcpt[0] != nil || res.Data != nil {
				t.Fatalf("refused: %+v", res)
			}
			if sni := mxs[tc.name].Conns()[0].TLS.ServerName; sni != "mx."+tc.name+".signed.test" {
				t.Errorf("SNI %q, want the original name", sni)
			}
		})
	}
}

// TestDANEDigestAgilityAndBareKey: a host publishing a matching SHA2-256
// record beside a SHA2-512 record that does not match is refused (RFC 7671
// §9: only the strongest digest counts); a DANE-TA "2 1 0" record holding
// the key of a root the server does not send authenticates a chain that key
// signed (RFC 7671 §5.2.2).
func TestDANEDigestAgilityAndBareKey(t *testing.T) {
	w := newWorld(t)
	self := certstest.SelfSigned(t, "mx.agile.test")
	agile := w.mx("agile.test", "mx.agile.test", 10, upstreamtest.MXOptions{Certificate: &self})
	w.dns.Add(tlsaLine("mx.agile.test", dane.Expect(self.Leaf, 3, 1, 1)))
	w.dns.Add(tlsaLine("mx.agile.test", dane.TLSA{Usage: 3, Selector: 1, MatchingType: 2, Data: make([]byte, 64)}))
	private := certstest.NewCA(t, "private root").Intermediate("private issuer")
	leaf := private.Leaf("mx.key.test")
	keyed := w.mx("key.test", "mx.key.test", 10, upstreamtest.MXOptions{Certificate: &leaf})
	w.dns.Add(tlsaLine("mx.key.test", dane.Expect(private.Root(), 2, 1, 0)))
	w.dns.SetSecureZone("agile.test.", true)
	w.dns.SetSecureZone("key.test.", true)
	g := w.start(map[string]string{"SEALGATE_MIN_TLS": "verify"})

	res := g.send("a@legacy.sealgate.test", []string{"b@agile.test"}, message("x"))
	wantReply(t, "RCPT", res.Rcpt[0], 451, "4.7.5", "agile.test: DANE: mx.agile.test: TLSA")
	if agile.SawMailFrom() {
		t.Error("the MX saw MAIL FROM though only its SHA2-256 record matched")
	}
	res = g.send("a@legacy.sealgate.test", []string{"b@key.test"}, message("x"))
	if res.Rcpt[0] != nil || res.Data != nil {
		t.Fatalf("2 1 0 key of an unsent root refused: %+v", res)
	}
	if len(keyed.Messages()) != 1 {
		t.Error("no message at the MX")
	}
}

// TestMTASTSTestingKeepsTLSMinVersion: with SEALGATE_TLS_MIN_VERSION=1.0, a
// domain whose MTA-STS policy is in testing mode and whose MX speaks only
// TLS 1.0 (with a certificate the policy refuses) is delivered under the
// floor like a domain without policy, not refused for its TLS version.
func TestMTASTSTestingKeepsTLSMinVersion(t *testing.T) {
	w := newWorld(t)
	tls10 := func(name string) upstreamtest.MXOptions {
		self := certstest.SelfSigned(t, name)
		return upstreamtest.MXOptions{Certificate: &self, MinVersion: tls.VersionTLS10, MaxVersion: tls.VersionTLS10}
	}
	plain := w.mx("plain.test", "mx.plain.test", 10, tls10("mx.plain.test"))
	tested := w.mx("tested.test", "mx.tested.test", 10, tls10("mx.tested.test"))
	w.sts("tested.test", "1", "version: STSv1\nmode: testing\nmax_age: 600\nmx: mx.tested.test\n")
	g := w.start(map[string]string{"SEALGATE_TLS_MIN_VERSION": "1.0"})

	for _, tc := range []struct {
		rcpt string
		mx   *upstreamtest.MX
	}{
		{rcpt: "b@plain.test", mx: plain},
		{rcpt: "b@tested.test", mx: tested},
	} {
		t.Run(tc.rcpt, func(t *testing.T) {
			res := g.send("a@legacy.sealgate.test", []string{tc.rcpt}, message("x"))
			if res.Rcpt[0] != nil || res.Data != nil {
				t.Fatalf("refused: %+v", res)
			}
			if m := tc.mx.Messages(); len(m) != 1 || m[0].TLS.Version != tls.VersionTLS10 {
				t.Fatalf("messages at the MX: %+v", m)
			}
		})
	}
	if !strings.Contains(g.logs.String(), "testing policy failed") {
		t.Error("the failed testing policy is not logged")
	}
}
