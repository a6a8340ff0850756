package e2e

import (
	"crypto/tls"
	"strings"
	"testing"

	"github.com/emersion/go-smtp"

	"sealgate/certs/certstest"
	"sealgate/enforcement/dane"
	"sealgate/upstream/upstreamtest"
)

// TestUnusableTLSAKeepsMTASTSEnforce: a DNSSEC-secure TLSA RRset with
// only unusable records (usage 1, PKIX-EE, a common publishing mistake)
// authenticates nothing, so it must not switch off MTA-STS enforce
// (RFC 8461 §2): an MX outside the policy's mx: patterns, or one with a
// certificate that fails WebPKI, still gets no message.
func TestUnusableTLSAKeepsMTASTSEnforce(t *testing.T) {
	w := newWorld(t)
	pkixEE := func(host string, cert *tls.Certificate) {
		w.dns.Add(tlsaLine(host, dane.Expect(cert.Leaf, 1, 1, 1)))
	}

	goodCert := w.cert("mx.good.test")
	good := w.mx("good.test", "mx.good.test", 10, upstreamtest.MXOptions{Certificate: goodCert})
	pkixEE("mx.good.test", goodCert)
	w.sts("good.test", "1", enforce("mx.good.test"))

	outsideCert := w.cert("mx.outside.test")
	outside := w.mx("outside.test", "mx.outside.test", 10, upstreamtest.MXOptions{Certificate: outsideCert})
	pkixEE("mx.outside.test", outsideCert)
	w.sts("outside.test", "1", enforce("mail.outside.test"))

	self := certstest.SelfSigned(t, "mx.self.test")
	bad := w.mx("self.test", "mx.self.test", 10, upstreamtest.MXOptions{Certificate: &self})
	pkixEE("mx.self.test", &self)
	w.sts("self.test", "1", enforce("mx.self.test"))

	for _, z := range []string{"good.test.", "outside.test.", "self.test."} {
		w.dns.SetSecureZone(z, true)
	}
	g := w.start(nil)

	t.Run("MX inside mx: with a valid certificate delivers under MTA-STS", func(t *testing.T) {
		res := g.send("a@legacy.sealgate.test", []string{"b@good.test"}, message("x"))
		if res.Rcpt[0] != nil || res.Data != nil {
			t.Fatalf("%+v", res)
		}
		if len(good.Messages()) != 1 {
			t.Fatal("no message at the MX")
		}
		if !strings.Contains(g.logs.String(), `policy="MTA-STS enforce"`) {
			t.Error("the delivery was not made under MTA-STS enforce")
		}
	})
	t.Run("MX outside mx: gets nothing", func(t *testing.T) {
		res := g.send("a@legacy.sealgate.test", []string{"b@outside.test"}, message("x"))
		wantReply(t, "RCPT", res.Rcpt[0], 451, "4.7.5", "outside.test: MTA-STS enforce", "no MX host matches")
		if outside.Connections() != 0 {
			t.Fatal("an MX outside the policy got a connection")
		}
	})
	t.Run("MX inside mx: with a certificate that fails WebPKI gets nothing", func(t *testing.T) {
		res := g.send("a@legacy.sealgate.test", []string{"b@self.test"}, message("x"))
		wantReply(t, "RCPT", res.Rcpt[0], 451, "4.7.5", "self.test: MTA-STS enforce: mx.self.test")
		if bad.SawMailFrom() {
			t.Fatal("an MX with an invalid certificate saw MAIL FROM")
		}
	})
}

// sendRequireTLS runs one REQUIRETLS transaction over STARTTLS (where
// REQUIRETLS must be advertised) and returns the RCPT and the DATA reply.
func sendRequireTLS(t *testing.T, g *gateway, rcpt string) (rcptErr, dataErr error) {
	t.Helper()
	c, err := smtp.DialStartTLS(g.addr, &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if ok, _ := c.Extension("REQUIRETLS"); !ok {
		t.Fatal("REQUIRETLS not advertised under TLS")
	}
	if err := c.Mail("a@legacy.sealgate.test", &smtp.MailOptions{RequireTLS: true}); err != nil {
		t.Fatal(err)
	}
	if err := c.Rcpt(rcpt, nil); err != nil {
		return err, nil
	}
	wc, err := c.Data()
	if err != nil {
		return nil, err
	}
	wc.Write(message("requiretls"))
	return nil, wc.Close()
}

// TestREQUIRETLSTriesTheNextMX: an MX that does not advertise REQUIRETLS
// is left with QUIT and the next MX of the route gets the message
// (RFC 8689 §4.2.1); 550 5.7.30 only when none advertises it.
func TestREQUIRETLSTriesTheNextMX(t *testing.T) {
	w := newWorld(t)
	ext := upstreamtest.Extensions{REQUIRETLS: true}
	first := w.mx("two.test", "mx1.two.test", 10, upstreamtest.MXOptions{Certificate: w.cert("mx1.two.test")})
	second := w.mx("two.test", "mx2.two.test", 20, upstreamtest.MXOptions{Certificate: w.cert("mx2.two.test"), Extensions: ext})
	w.sts("two.test", "1", enforce("*.two.test"))
	none1 := w.mx("none.test", "mx1.none.test", 10, upstreamtest.MXOptions{Certificate: w.cert("mx1.none.test")})
	none2 := w.mx("none.test", "mx2.none.test", 20, upstreamtest.MXOptions{Certificate: w.cert("mx2.none.test")})
	w.sts("none.test", "1", enforce("*.none.test"))
	g := w.start(nil)

	t.Run("second MX advertises REQUIRETLS", func(t *testing.T) {
		if r, d := sendRequireTLS(t, g, "b@two.test"); r != nil || d != nil {
			t.Fatalf("refused: %v %v", r, d)
		}
		m := second.Messages()
		if len(m) != 1 || !m[0].MailOptions.RequireTLS {
			t.Fatalf("the MX with REQUIRETLS did not get the message with REQUIRETLS: %+v", m)
		}
		if first.SawMailFrom() {
			t.Fatal("the MX without REQUIRETLS saw MAIL FROM")
		}
		if first.Connections() != 1 {
			t.Fatalf("the first MX got %d connections, want 1 (tried, then left)", first.Connections())
		}
	})
	t.Run("no MX advertises REQUIRETLS", func(t *testing.T) {
		r, _ := sendRequireTLS(t, g, "b@none.test")
		wantReply(t, "RCPT", r, 550, "5.7.30", "none.test", "REQUIRETLS", "mx1.none.test", "mx2.none.test")
		if none1.SawMailFrom() || none2.SawMailFrom() {
			t.Fatal("an MX without REQUIRETLS saw MAIL FROM")
		}
	})
}

// TestREQUIRETLSNeedsVouchedMXNames: a certificate for an MX name taken
// from unsigned DNS does not carry a REQUIRETLS message (whoever forged
// the MX answer can hold one for the name it chose); DNSSEC or names the
// configuration gives do.
func TestREQUIRETLSNeedsVouchedMXNames(t *testing.T) {
	w := newWorld(t)
	ext := upstreamtest.Extensions{REQUIRETLS: true}
	unsigned := w.mx("unsigned.test", "mx.unsigned.test", 10, upstreamtest.MXOptions{Certificate: w.cert("mx.unsigned.test"), Extensions: ext})
	signed := w.mx("signed.test", "mx.signed.test", 10, upstreamtest.MXOptions{Certificate: w.cert("mx.signed.test"), Extensions: ext})
	w.dns.SetSecureZone("signed.test.", true)
	named := w.mx("named.test", "mx.named.test", 10, upstreamtest.MXOptions{Certificate: w.cert("mx.named.test"), Extensions: ext})
	policy := writePolicy(t, "unsigned.test verify\nsigned.test verify\nnamed.test verify match=mx.named.test\n")
	g := w.start(map[string]string{"SEALGATE_POLICY_FILE": policy})

	t.Run("local verify, MX name from unsigned DNS", func(t *testing.T) {
		r, _ := sendRequireTLS(t, g, "b@unsigned.test")
		wantReply(t, "RCPT", r, 550, "5.7.30", "unsigned.test", "REQUIRETLS", "MX name from DNS without DNSSEC")
		if unsigned.Connections() != 0 {
			t.Fatal("an MX whose name DNS could have forged got a connection")
		}
	})
	t.Run("local verify, DNSSEC-secure MX", func(t *testing.T) {
		if r, d := sendRequireTLS(t, g, "b@signed.test"); r != nil || d != nil {
			t.Fatalf("refused: %v %v", r, d)
		}
		if len(signed.Messages()) != 1 {
			t.Fatal("no message at the MX")
		}
	})
	t.Run("local verify, name from the policy file", func(t *testing.T) {
		if r, d := sendRequireTLS(t, g, "b@named.test"); r != nil || d != nil {
			t.Fatalf("refused: %v %v", r, d)
		}
		if len(named.Messages()) != 1 {
			t.Fatal("no message at the MX")
		}
	})
}
