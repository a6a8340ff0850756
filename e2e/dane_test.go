package e2e

import (
	"fmt"
	"strings"
	"testing"

	"github.com/miekg/dns"

	"sealgate/certs/certstest"
	"sealgate/e2e/dnssec"
	"sealgate/enforcement/dane"
	"sealgate/upstream/upstreamtest"
)

// tlsa returns the zone line of a DANE-EE 3 1 1 record for cert at host.
func tlsaLine(host string, rec dane.TLSA) string {
	return fmt.Sprintf("_25._tcp.%s. 300 IN TLSA %s", host, strings.ToUpper(rec.String()))
}

func TestDANEWithFakeDNS(t *testing.T) {
	w := newWorld(t)
	// Self-signed certificates: only DANE can authenticate them.
	good := certstest.SelfSigned(t, "mx.good.test")
	other := certstest.SelfSigned(t, "mx.bad.test")
	mxGood := w.mx("good.test", "mx.good.test", 10, upstreamtest.MXOptions{Certificate: &good})
	mxBad := w.mx("bad.test", "mx.bad.test", 10, upstreamtest.MXOptions{Certificate: &other})
	mxInsecure := w.mx("insecure.test", "mx.insecure.test", 10, upstreamtest.MXOptions{Certificate: &other})
	mxFail := w.mx("fail.test", "mx.fail.test", 10, upstreamtest.MXOptions{Certificate: &good})

	// A record for a different key: a mismatch for mx.bad.test.
	w.dns.Add(tlsaLine("mx.good.test", dane.Expect(good.Leaf, 3, 1, 1)))
	w.dns.Add(tlsaLine("mx.bad.test", dane.Expect(good.Leaf, 3, 1, 1)))
	w.dns.Add(tlsaLine("mx.insecure.test", dane.Expect(good.Leaf, 3, 1, 1)))
	w.dns.Add(tlsaLine("mx.fail.test", dane.Expect(good.Leaf, 3, 1, 1)))
	for _, z := range []string{"good.test.", "bad.test.", "fail.test."} {
		w.dns.SetSecureZone(z, true)
	}
	// insecure.test: MX and addresses secure, TLSA RRset not.
	w.dns.SetSecureZone("insecure.test.", true)
	w.dns.SetSecure("_25._tcp.mx.insecure.test.", dns.TypeTLSA, false)
	w.dns.SetRcode("_25._tcp.mx.fail.test.", dns.TypeTLSA, dns.RcodeServerFailure)

	// The floor is verify: a self-signed MX passes only through DANE.
	g := w.start(map[string]string{"SEALGATE_MIN_TLS": "verify"})

	t.Run("match delivers", func(t *testing.T) {
		res := g.send("a@legacy.sealgate.test", []string{"b@good.test"}, message("x"))
		if res.Rcpt[0] != nil || res.Data != nil {
			t.Fatalf("DANE match refused: %+v", res)
		}
		if len(mxGood.Messages()) != 1 {
			t.Fatal("no message at the MX")
		}
		if sni := mxGood.Conns()[0].TLS.ServerName; sni != "mx.good.test" {
			t.Errorf("SNI %q, want the TLSA base domain", sni)
		}
		if !strings.Contains(g.logs.String(), `verification="DANE 3 1 1`) {
			t.Errorf("log does not say which record matched:\n%s", g.logs.String())
		}
	})
	t.Run("mismatch defers", func(t *testing.T) {
		res := g.send("a@legacy.sealgate.test", []string{"b@bad.test"}, message("x"))
		wantReply(t, "RCPT", res.Rcpt[0], 451, "4.7.5", "bad.test: DANE: mx.bad.test: TLSA")
		if mxBad.SawMailFrom() {
			t.Fatal("MX with a TLSA mismatch saw MAIL FROM")
		}
	})
	t.Run("insecure TLSA ignored", func(t *testing.T) {
		// Falls to the floor (verify), which refuses the self-signed
		// certificate: proof that the insecure TLSA did not count.
		res := g.send("a@legacy.sealgate.test", []string{"b@insecure.test"}, message("x"))
		wantReply(t, "RCPT", res.Rcpt[0], 451, "4.7.5", "floor verify")
		if mxInsecure.SawMailFrom() {
			t.Fatal("saw MAIL FROM")
		}
	})
	t.Run("TLSA SERVFAIL defers", func(t *testing.T) {
		res := g.send("a@legacy.sealgate.test", []string{"b@fail.test"}, message("x"))
		wantReply(t, "RCPT", res.Rcpt[0], 451, "4.4.3", "fail.test: DANE: mx.fail.test: TLSA lookup failed")
		if mxFail.Connections() != 0 {
			t.Fatal("an MX whose TLSA lookup failed got a connection")
		}
	})
}

func TestDANECNAMEdMXHost(t *testing.T) {
	w := newWorld(t)
	cert := certstest.SelfSigned(t, "real.hosting.test")
	ip := w.host("real.hosting.test")
	w.dns.Add("cname.test. 300 IN MX 10 mx.cname.test.")
	w.dns.Add("mx.cname.test. 300 IN CNAME real.hosting.test.")
	// TLSA at the expanded name takes precedence (RFC 7672 §2.2.3).
	w.dns.Add(tlsaLine("real.hosting.test", dane.Expect(cert.Leaf, 3, 1, 1)))
	w.dns.SetSecureZone("cname.test.", true)
	w.dns.SetSecureZone("hosting.test.", true)
	mx := upstreamtest.NewMX(t, upstreamtest.MXOptions{Addr: fmt.Sprintf("%s:%d", ip, w.port), Hostname: "real.hosting.test", Certificate: &cert})
	g := w.start(map[string]string{"SEALGATE_MIN_TLS": "verify"})
	res := g.send("a@legacy.sealgate.test", []string{"b@cname.test"}, message("x"))
	if res.Rcpt[0] != nil || res.Data != nil {
		t.Fatalf("CNAME'd MX with DANE refused: %+v", res)
	}
	if sni := mx.Conns()[0].TLS.ServerName; sni != "real.hosting.test" {
		t.Errorf("SNI %q, want the expanded TLSA base domain", sni)
	}
}

// TestDANERealDNSSECChain runs sealgate against unbound validating zones
// signed at test time and served by nsd.
func TestDANERealDNSSECChain(t *testing.T) {
	w := newWorld(t)
	good := certstest.SelfSigned(t, "mx.signed.test")
	other := certstest.SelfSigned(t, "mx.mismatch.test")
	ips := map[string]string{}
	for _, h := range []string{"signed", "mismatch", "bogus", "unsigned"} {
		ips[h] = nextIP()
	}
	rec := strings.ToUpper(dane.Expect(good.Leaf, 3, 1, 1).String())
	env := dnssec.Start(t,
		dnssec.Zone{Origin: "signed.test.", Sign: true, Records: []string{
			"@ MX 10 mx", "mx A " + ips["signed"], "_25._tcp.mx TLSA " + rec}},
		dnssec.Zone{Origin: "mismatch.test.", Sign: true, Records: []string{
			"@ MX 10 mx", "mx A " + ips["mismatch"], "_25._tcp.mx TLSA " + rec}},
		dnssec.Zone{Origin: "bogus.test.", Sign: true, Break: true, Records: []string{
			"@ MX 10 mx", "mx A " + ips["bogus"], "_25._tcp.mx TLSA " + rec}},
		dnssec.Zone{Origin: "unsigned.test.", Records: []string{
			"@ MX 10 mx", "mx A " + ips["unsigned"], "_25._tcp.mx TLSA " + rec}},
	)
	mxs := map[string]*upstreamtest.MX{}
	for h, ip := range ips {
		cert := good
		if h != "signed" {
			cert = other
		}
		mxs[h] = upstreamtest.NewMX(t, upstreamtest.MXOptions{Addr: fmt.Sprintf("%s:%d", ip, w.port), Hostname: "mx." + h + ".test", Certificate: &cert})
	}
	g := w.start(map[string]string{"SEALGATE_DNS_RESOLVER": env.Resolver()})

	res := g.send("a@legacy.sealgate.test", []string{"b@signed.test"}, message("x"))
	if res.Rcpt[0] != nil || res.Data != nil {
		t.Fatalf("signed zone, matching TLSA: %+v", res)
	}
	res = g.send("a@legacy.sealgate.test", []string{"b@mismatch.test"}, message("x"))
	wantReply(t, "mismatch", res.Rcpt[0], 451, "4.7.5", "DANE", "mx.mismatch.test")
	res = g.send("a@legacy.sealgate.test", []string{"b@bogus.test"}, message("x"))
	wantReply(t, "bogus", res.Rcpt[0], 451, "4.4.3", "bogus.test")
	// Unsigned: the TLSA record (which does not match) is ignored and
	// the floor (encrypt) lets the message through.
	res = g.send("a@legacy.sealgate.test", []string{"b@unsigned.test"}, message("x"))
	if res.Rcpt[0] != nil || res.Data != nil {
		t.Fatalf("unsigned zone did not fall back to the floor: %+v", res)
	}
	if mxs["mismatch"].SawMailFrom() || mxs["bogus"].SawMailFrom() {
		t.Fatal("a refused MX saw MAIL FROM")
	}
	if mxs["bogus"].Connections() != 0 {
		t.Error("the MX of a bogus zone got a connection")
	}
	if !strings.Contains(g.logs.String(), "authenticated=true") {
		t.Error("log never says a host was DANE-authenticated")
	}
}
