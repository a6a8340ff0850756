package e2e

import (
	"crypto/tls"
	"strings"
	"testing"

	"github.com/emersion/go-smtp"

	"sealgate/certs/certstest"
	"sealgate/upstream/upstreamtest"
)

// sendOverSTARTTLS runs one transaction over STARTTLS, with REQUIRETLS on
// MAIL FROM when requireTLS is set, and returns the RCPT and the DATA
// reply.
func sendOverSTARTTLS(t *testing.T, g *gateway, requireTLS bool, rcpt string, body []byte) (rcptErr, dataErr error) {
	t.Helper()
	c, err := smtp.DialStartTLS(g.addr, &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Mail("a@legacy.sealgate.test", &smtp.MailOptions{RequireTLS: requireTLS}); err != nil {
		t.Fatalf("MAIL: %v", err)
	}
	if err := c.Rcpt(rcpt, nil); err != nil {
		return err, nil
	}
	wc, err := c.Data()
	if err != nil {
		return nil, err
	}
	if _, err := wc.Write(body); err != nil {
		return nil, err
	}
	return nil, wc.Close()
}

// mailCommands counts the MAIL commands mx has received so far.
func mailCommands(mx *upstreamtest.MX) int {
	n := 0
	for _, l := range mx.Commands() {
		if len(l) >= 4 && strings.EqualFold(l[:4], "MAIL") {
			n++
		}
	}
	return n
}

// TestREQUIRETLSIgnoresTLSRequiredNo: a message sent with REQUIRETLS
// that also carries "TLS-Required: No" is held to REQUIRETLS; the header
// field is ignored (RFC 8689 §4.1: "the TLS-Required header field MUST be
// ignored"), even where the administrator lets senders waive a domain's
// policy (SEALGATE_HONOR_TLS_REQUIRED_NO=true).
func TestREQUIRETLSIgnoresTLSRequiredNo(t *testing.T) {
	w := newWorld(t)
	ext := upstreamtest.Extensions{REQUIRETLS: true}
	// strict.test: MTA-STS enforce vouches for the MX name, so the route
	// qualifies for REQUIRETLS, but the MX certificate fails WebPKI.
	self := certstest.SelfSigned(t, "mx.strict.test")
	strict := w.mx("strict.test", "mx.strict.test", 10, upstreamtest.MXOptions{Certificate: &self, Extensions: ext})
	w.sts("strict.test", "1", enforce("mx.strict.test"))
	// floor.test: only the floor, which can never carry REQUIRETLS.
	floor := w.mx("floor.test", "mx.floor.test", 10, upstreamtest.MXOptions{Certificate: w.cert("mx.floor.test"), Extensions: ext})
	g := w.start(map[string]string{"SEALGATE_HONOR_TLS_REQUIRED_NO": "true"})
	waiver := withHeader("TLS-Required: No")

	tests := []struct {
		name       string
		requireTLS bool
		rcpt       string
		mx         *upstreamtest.MX
		// delivered: the message reaches the MX; otherwise the RCPT
		// reply is wantCode wantEnh and the MX never sees MAIL FROM.
		delivered bool
		wantCode  int
		wantEnh   string
		wantParts []string
	}{
		{
			// The control: the waiver works for this domain, so the
			// refusal below is REQUIRETLS's doing.
			name: "without REQUIRETLS the header waives the failing policy",
			rcpt: "b@strict.test", mx: strict, delivered: true,
		},
		{
			name:       "with REQUIRETLS the failing policy holds",
			requireTLS: true, rcpt: "b@strict.test", mx: strict,
			wantCode: 451, wantEnh: "4.7.5", wantParts: []string{"strict.test: MTA-STS enforce: mx.strict.test"},
		},
		{
			name:       "with REQUIRETLS a floor-only route is still refused",
			requireTLS: true, rcpt: "b@floor.test", mx: floor,
			wantCode: 550, wantEnh: "5.7.30", wantParts: []string{"floor.test", "REQUIRETLS"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before, mailsBefore := len(tc.mx.Messages()), mailCommands(tc.mx)
			rcptErr, dataErr := sendOverSTARTTLS(t, g, tc.requireTLS, tc.rcpt, waiver)
			if tc.delivered {
				if rcptErr != nil || dataErr != nil {
					t.Fatalf("refused: RCPT %v, DATA %v", rcptErr, dataErr)
				}
				if m := tc.mx.Messages(); len(m) != before+1 || m[len(m)-1].TLS == nil {
					t.Fatalf("not delivered over TLS: %+v", m)
				}
				return
			}
			wantReply(t, "RCPT", rcptErr, tc.wantCode, tc.wantEnh, tc.wantParts...)
			if mailCommands(tc.mx) != mailsBefore {
				t.Fatal("the MX saw MAIL FROM of a REQUIRETLS message its route cannot carry")
			}
			if len(tc.mx.Messages()) != before {
				t.Fatal("the MX received the message")
			}
		})
	}
}
