package e2e

import (
	"testing"

	"sealgate/certs/certstest"
	"sealgate/upstream/upstreamtest"
)

// TestMTASTSEnforceIgnoresCommonName: under MTA-STS enforce the MX
// certificate "MUST have" a subject alternative name of type DNS-ID
// matching the MX host (RFC 8461 §4.2, RFC 6125 §6.4.4): a certificate
// from a trusted authority whose name is only in the subject common name
// is refused (451 4.7.5) before MAIL FROM, while the same name as a DNS
// SAN delivers.
func TestMTASTSEnforceIgnoresCommonName(t *testing.T) {
	w := newWorld(t)
	cnOnly := w.ca.Issue(certstest.CommonName("mx.cn.test"))
	if len(cnOnly.Leaf.DNSNames) != 0 || cnOnly.Leaf.Subject.CommonName != "mx.cn.test" {
		t.Fatalf("test certificate: SANs %q, CN %q; want no SAN and the name in the CN", cnOnly.Leaf.DNSNames, cnOnly.Leaf.Subject.CommonName)
	}
	cn := w.mx("cn.test", "mx.cn.test", 10, upstreamtest.MXOptions{Certificate: &cnOnly})
	w.sts("cn.test", "1", enforce("mx.cn.test"))
	san := w.mx("san.test", "mx.san.test", 10, upstreamtest.MXOptions{Certificate: w.cert("mx.san.test")})
	w.sts("san.test", "1", enforce("mx.san.test"))
	g := w.start(nil)

	t.Run("name in the common name only is refused", func(t *testing.T) {
		res := g.send("a@legacy.sealgate.test", []string{"b@cn.test"}, message("x"))
		wantReply(t, "RCPT", res.Rcpt[0], 451, "4.7.5", "cn.test: MTA-STS enforce: mx.cn.test", "not valid for name mx.cn.test")
		if cn.Connections() == 0 {
			t.Fatal("the MX got no connection: the certificate was never judged")
		}
		if cn.SawMailFrom() || len(cn.Messages()) != 0 {
			t.Fatal("an MX whose certificate names it only in the common name saw MAIL FROM")
		}
	})
	t.Run("the same name as a DNS SAN delivers", func(t *testing.T) {
		res := g.send("a@legacy.sealgate.test", []string{"b@san.test"}, message("x"))
		if res.Rcpt[0] != nil || res.Data != nil {
			t.Fatalf("%+v", res)
		}
		if len(san.Messages()) != 1 {
			t.Fatal("no message at the MX")
		}
	})
}
