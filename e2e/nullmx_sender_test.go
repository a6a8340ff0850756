package e2e

import (
	"strings"
	"testing"

	"github.com/emersion/go-smtp"

	"sealgate/upstream/upstreamtest"
)

// TestSenderNullMXLeftToTheMX: sealgate does not judge the sender domains
// of its own legacy servers. RFC 7505 §4.2 asks receivers to refuse mail
// from a domain with a null MX (550 5.7.27); sealgate is a relay, not the
// receiver: it looks nothing up for the sender domain, passes MAIL FROM on,
// and the receiving MX's refusal reaches the legacy server verbatim.
func TestSenderNullMXLeftToTheMX(t *testing.T) {
	w := newWorld(t)
	w.dns.Add("nullsender.test. 300 IN MX 0 .")
	mx := w.mx("example.test", "mx1.example.test", 10, upstreamtest.MXOptions{
		Certificate: w.cert("mx1.example.test"),
		MailReply:   &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 7, 27}, Message: "sender address has null MX"},
	})
	g := w.start(nil)
	w.dns.ResetQueries()

	res := g.send("a@nullsender.test", []string{"b@example.test"}, message("x"))
	wantReply(t, "RCPT", res.Rcpt[0], 550, "5.7.27", "sender address has null MX")
	if !mx.SawMailFrom() {
		t.Fatal("MAIL FROM did not reach the MX")
	}
	for _, q := range w.dns.Queries() {
		if strings.EqualFold(strings.TrimSuffix(q.Name, "."), "nullsender.test") {
			t.Errorf("the gateway looked up the sender domain: %+v", q)
		}
	}
}
