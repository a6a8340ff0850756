package e2e

import (
	"fmt"
	"strings"
	"testing"

	"github.com/emersion/go-smtp"

	"sealgate/upstream/upstreamtest"
)

// TestRecipientsBuffer: one transaction takes SEALGATE_MAX_RECIPIENTS
// recipients, 100 by default as RFC 5321 §4.5.3.1.8 demands ("MUST be
// able to accept and transfer at least 100 recipients"); the next gets
// 452 4.5.3, a temporary reply (§4.5.3.1.10: "452 Too many recipients"),
// so the legacy server sends it in a later transaction. A recipient the
// MX refused does not use up a place.
func TestRecipientsBuffer(t *testing.T) {
	w := newWorld(t)
	mx := w.mx("many.test", "mx.many.test", 10, upstreamtest.MXOptions{
		Certificate: w.cert("mx.many.test"),
		RejectRcpt: map[string]*smtp.SMTPError{
			"unknown@many.test": {Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "user unknown"},
		},
	})

	tests := []struct {
		name  string
		env   map[string]string
		limit int
	}{
		{name: "default of 100", limit: 100},
		{name: "SEALGATE_MAX_RECIPIENTS=5", env: map[string]string{"SEALGATE_MAX_RECIPIENTS": "5"}, limit: 5},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			g := w.start(tc.env)
			before := len(mx.Messages())
			rcpts := make([]string, tc.limit+1)
			for i := range rcpts {
				rcpts[i] = fmt.Sprintf("r%d@many.test", i)
			}

			c, err := smtp.Dial(g.addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if err := c.Hello("legacy.sealgate.test"); err != nil {
				t.Fatal(err)
			}
			if ok, v := c.Extension("LIMITS"); !ok || v != fmt.Sprintf("RCPTMAX=%d", tc.limit) {
				t.Errorf("EHLO LIMITS %q (advertised %v), want RCPTMAX=%d", v, ok, tc.limit)
			}
			if err := c.Mail("a@legacy.sealgate.test", nil); err != nil {
				t.Fatal(err)
			}
			err = c.Rcpt("unknown@many.test", nil)
			wantReply(t, "RCPT of a recipient the MX refuses", err, 550, "5.1.1", "user unknown")
			for _, r := range rcpts[:tc.limit] {
				if err := c.Rcpt(r, nil); err != nil {
					t.Fatalf("RCPT %s: %v", r, err)
				}
			}
			err = c.Rcpt(rcpts[tc.limit], nil)
			wantReply(t, fmt.Sprintf("RCPT number %d", tc.limit+1), err, 452, "4.5.3", "recipients")
			wc, err := c.Data()
			if err != nil {
				t.Fatal(err)
			}
			wc.Write(message("many"))
			if err := wc.Close(); err != nil {
				t.Fatalf("DATA: %v", err)
			}

			m := mx.Messages()
			if len(m) != before+1 {
				t.Fatalf("%d messages at the MX, want %d", len(m), before+1)
			}
			var got []string
			for _, r := range m[before].Rcpts {
				got = append(got, r.To)
			}
			if want := rcpts[:tc.limit]; strings.Join(got, " ") != strings.Join(want, " ") {
				t.Fatalf("the MX got %d recipients %q, want the %d accepted", len(got), got, len(want))
			}

			// The legacy server retries the one left over.
			if err := c.Mail("a@legacy.sealgate.test", nil); err != nil {
				t.Fatal(err)
			}
			if err := c.Rcpt(rcpts[tc.limit], nil); err != nil {
				t.Fatalf("the recipient left over, in a new transaction: %v", err)
			}
		})
	}
}
