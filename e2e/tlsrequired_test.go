package e2e

import (
	"testing"

	"sealgate/certs/certstest"
	"sealgate/upstream/upstreamtest"
)

func withHeader(h string) []byte {
	return []byte(h + "\r\nFrom: a@legacy.sealgate.test\r\nSubject: password reset\r\n\r\nhello\r\n")
}

// TestTLSRequiredNo: "TLS-Required: No" (RFC 8689 §5) waives a domain's
// TLS policy when the administrator allows it, and never the encrypt
// floor.
func TestTLSRequiredNo(t *testing.T) {
	w := newWorld(t)
	self := certstest.SelfSigned(t, "mx.strict.test")
	strict := w.mx("strict.test", "mx.strict.test", 10, upstreamtest.MXOptions{Certificate: &self})
	w.sts("strict.test", "1", enforce("mx.strict.test"))
	plain := w.mx("plain.test", "mx.plain.test", 10, upstreamtest.MXOptions{})

	honor := w.start(map[string]string{"SEALGATE_HONOR_TLS_REQUIRED_NO": "true"})
	t.Run("waived", func(t *testing.T) {
		res := honor.send("a@legacy.sealgate.test", []string{"b@strict.test"}, withHeader("TLS-Required: No"))
		if res.Rcpt[0] != nil || res.Data != nil {
			t.Fatalf("%+v", res)
		}
		m := strict.Messages()
		if len(m) != 1 || m[0].TLS == nil {
			t.Fatalf("not delivered over TLS: %+v", m)
		}
	})
	t.Run("no header: deferred at DATA", func(t *testing.T) {
		before := len(strict.Messages())
		res := honor.send("a@legacy.sealgate.test", []string{"b@strict.test"}, withHeader("X-Other: 1"))
		if res.Rcpt[0] != nil {
			t.Fatalf("RCPT: %v", res.Rcpt[0])
		}
		wantReply(t, "DATA", res.Data, 451, "4.7.5", "MTA-STS enforce", "no TLS-Required: No")
		if len(strict.Messages()) != before {
			t.Fatal("the MX received a message without the waiver")
		}
	})
	t.Run("the encrypt floor holds", func(t *testing.T) {
		res := honor.send("a@legacy.sealgate.test", []string{"b@plain.test"}, withHeader("TLS-Required: No"))
		wantReply(t, "RCPT", res.Rcpt[0], 451, "4.7.4", "plain.test")
		if plain.SawMailFrom() {
			t.Fatal("cleartext delivery")
		}
	})
	t.Run("not honoured by default", func(t *testing.T) {
		g := w.start(nil)
		res := g.send("a@legacy.sealgate.test", []string{"b@strict.test"}, withHeader("TLS-Required: No"))
		wantReply(t, "RCPT", res.Rcpt[0], 451, "4.7.5", "MTA-STS enforce")
	})
}
