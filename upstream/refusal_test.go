package upstream

import (
	"context"
	"errors"
	"testing"

	"github.com/emersion/go-smtp"

	"sealgate/certs/certstest"
	"sealgate/enforcement"
	"sealgate/upstream/upstreamtest"
)

// TestMailRefusalsAreClassified: what Conn.Mail refuses on its own (a
// parameter the MX or the route cannot honour) comes back as an
// *enforcement.Failure of its own kind, for proxy.Reply to turn into the
// one reply; the MX sees no MAIL FROM. A refusal of the MX itself stays
// its *smtp.SMTPError, verbatim.
func TestMailRefusalsAreClassified(t *testing.T) {
	self := certstest.SelfSigned(t, "mx.example.test")
	tests := []struct {
		name      string
		ext       upstreamtest.Extensions
		vetted    bool            // Route.REQUIRETLS
		mailReply *smtp.SMTPError // the MX's reply to MAIL
		opts      *smtp.MailOptions
		wantKind  enforcement.Kind // 0: the MX's reply
		wantText  string
		wantCode  int // of the MX's reply
	}{
		{name: "SMTPUTF8 to an MX without it", opts: &smtp.MailOptions{UTF8: true},
			wantKind: enforcement.KindSMTPUTF8, wantText: "example.test: mx.example.test: MX does not support SMTPUTF8"},
		{name: "REQUIRETLS on a route not vetted for it", ext: upstreamtest.Extensions{REQUIRETLS: true}, opts: &smtp.MailOptions{RequireTLS: true},
			wantKind: enforcement.KindRequireTLS, wantText: "example.test: mx.example.test: route not vetted for REQUIRETLS"},
		{name: "REQUIRETLS to an MX without it", vetted: true, opts: &smtp.MailOptions{RequireTLS: true},
			wantKind: enforcement.KindRequireTLS, wantText: "example.test: mx.example.test: MX does not support REQUIRETLS"},
		{name: "the MX refuses MAIL", mailReply: &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 7, 1}, Message: "sender refused"},
			wantCode: 550, wantText: "sender refused"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			mx := upstreamtest.NewMX(t, upstreamtest.MXOptions{Hostname: "mx.example.test", Certificate: &self, Extensions: tc.ext, MailReply: tc.mailReply})
			r := route("example.test", hostAt(t, "mx.example.test", mx.Addr(), enforcement.Requirement{}))
			c, err := deliverer(nil).Open(context.Background(), r)
			if err != nil {
				t.Fatal(err)
			}
			// Open skips an MX without REQUIRETLS on a vetted route; the
			// flag is set afterwards to reach Mail's own check.
			r.REQUIRETLS = tc.vetted
			defer c.Close()
			err = c.Mail("a@example.test", tc.opts)
			if tc.wantKind == 0 {
				var se *smtp.SMTPError
				if !errors.As(err, &se) || se.Code != tc.wantCode || se.Message != tc.wantText {
					t.Fatalf("Mail = %v, want the MX's %d %s", err, tc.wantCode, tc.wantText)
				}
				if _, ok := enforcement.AsFailure(err); ok {
					t.Fatalf("the MX's reply came back as a failure of ours: %v", err)
				}
				return
			}
			f, ok := enforcement.AsFailure(err)
			if !ok || f.Kind != tc.wantKind {
				t.Fatalf("Mail = %#v, want a failure of kind %v", err, tc.wantKind)
			}
			if f.Error() != tc.wantText {
				t.Errorf("failure text %q, want %q", f.Error(), tc.wantText)
			}
			if mx.SawMailFrom() {
				t.Error("the MX saw MAIL FROM")
			}
		})
	}
}
