package e2e

import (
	"bytes"
	"fmt"
	"testing"

	"github.com/emersion/go-smtp"

	"sealgate/certs/certstest"
	"sealgate/enforcement/dane"
	"sealgate/upstream/upstreamtest"
)

// TestDANEHostWithoutSTARTTLS: an MX host with secure usable TLSA records
// that does not offer STARTTLS, refuses it, or sits behind a man in the
// middle who strips it, never gets the message in cleartext (RFC 7672
// §2.2: with usable TLSA records "the SMTP client MUST use TLS" and
// authenticate the server; RFC 3207 §4 for the 454). The reply is
// 451 4.7.4, naming DANE, and the host sees no MAIL, RCPT or DATA.
func TestDANEHostWithoutSTARTTLS(t *testing.T) {
	w := newWorld(t)
	// The key the TLSA records name: a DANE-EE 3 1 1 match for it would
	// authenticate the host, had it offered TLS.
	cert := certstest.SelfSigned(t, "mx.dane.test")
	daneRecord := func(host string) {
		w.dns.Add(tlsaLine(host, dane.Expect(cert.Leaf, 3, 1, 1)))
	}

	plain := w.mx("plain.test", "mx.plain.test", 10, upstreamtest.MXOptions{})
	daneRecord("mx.plain.test")

	refused := w.mx("refused.test", "mx.refused.test", 10, upstreamtest.MXOptions{
		Certificate:   &cert,
		STARTTLSReply: &smtp.SMTPError{Code: 454, EnhancedCode: smtp.EnhancedCode{4, 7, 0}, Message: "TLS not available"},
	})
	daneRecord("mx.refused.test")

	// The real MX offers STARTTLS; DNS points at the attacker.
	behind := upstreamtest.NewMX(t, upstreamtest.MXOptions{Addr: nextIP() + ":0", Hostname: "mx.stripped.test", Certificate: &cert})
	ip := w.host("mx.stripped.test")
	w.dns.Add("stripped.test. 300 IN MX 10 mx.stripped.test.")
	mitm := upstreamtest.NewSTRIPTLS(t, behind.Addr(), fmt.Sprintf("%s:%d", ip, w.port))
	daneRecord("mx.stripped.test")

	for _, z := range []string{"plain.test.", "refused.test.", "stripped.test."} {
		w.dns.SetSecureZone(z, true)
	}
	// The floor is encrypt: DANE, not the floor, must be what refuses.
	g := w.start(nil)

	tests := []struct {
		name    string
		rcpt    string
		mx      *upstreamtest.MX
		reached func() int // connections that reached the host, or the attacker
		parts   []string
	}{
		{
			name: "STARTTLS not offered", rcpt: "b@plain.test", mx: plain, reached: plain.Connections,
			parts: []string{"plain.test: DANE: mx.plain.test", "STARTTLS"},
		},
		{
			name: "STARTTLS refused with 454", rcpt: "b@refused.test", mx: refused, reached: refused.Connections,
			parts: []string{"refused.test: DANE: mx.refused.test", "454"},
		},
		{
			name: "STARTTLS stripped by a man in the middle", rcpt: "b@stripped.test", mx: behind, reached: mitm.Connections,
			parts: []string{"stripped.test: DANE: mx.stripped.test", "STARTTLS"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			res := g.send("a@legacy.sealgate.test", []string{tc.rcpt}, message("secret body"))
			wantReply(t, "RCPT", res.Rcpt[0], 451, "4.7.4", tc.parts...)
			if tc.reached() == 0 {
				t.Fatal("the gateway never connected to the host: the test is void")
			}
			if tc.mx.SawCleartextTransaction() || tc.mx.SawMailFrom() {
				t.Fatalf("the DANE host saw a transaction: %q", tc.mx.Commands())
			}
			if len(tc.mx.Messages()) != 0 {
				t.Fatal("the DANE host received a message")
			}
		})
	}
	seen := mitm.ClientBytes()
	if bytes.Contains(bytes.ToUpper(seen), []byte("MAIL FROM")) || bytes.Contains(bytes.ToUpper(seen), []byte("RCPT TO")) || bytes.Contains(seen, []byte("secret body")) {
		t.Fatalf("the attacker saw the transaction:\n%s", seen)
	}
}
