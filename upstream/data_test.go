package upstream

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/emersion/go-smtp"

	"sealgate/certs/certstest"
	"sealgate/enforcement"
	"sealgate/upstream/upstreamtest"
)

// TestDataUnexpectedReplies: an MX that answers DATA with a 2xx (no body
// was sent) or the end of data with anything but 2xx, 4xx or 5xx is not
// believed: the connection counts as lost (451 4.4.2 for the client),
// never as an answer that a client could take for acceptance.
func TestDataUnexpectedReplies(t *testing.T) {
	ca := certstest.NewCA(t, "root")
	cert := ca.Leaf("mx.example.test")
	tests := []struct {
		name string
		opts upstreamtest.MXOptions
	}{
		{"250 to DATA", upstreamtest.MXOptions{DataCommandReply: &smtp.SMTPError{Code: 250, EnhancedCode: smtp.EnhancedCode{2, 0, 0}, Message: "ok"}}},
		{"354 to the end of data", upstreamtest.MXOptions{DataReply: &smtp.SMTPError{Code: 354, EnhancedCode: smtp.NoEnhancedCode, Message: "more"}}},
		{"150 to the end of data", upstreamtest.MXOptions{DataReply: &smtp.SMTPError{Code: 150, EnhancedCode: smtp.NoEnhancedCode, Message: "hm"}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			opts := tc.opts
			opts.Hostname, opts.Certificate = "mx.example.test", &cert
			mx := upstreamtest.NewMX(t, opts)
			c, err := deliverer(ca).Open(context.Background(), route("example.test", hostAt(t, "mx.example.test", mx.Addr(), enforcement.Requirement{})))
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if err := c.Mail("a@example.test", nil); err != nil {
				t.Fatal(err)
			}
			if err := c.Rcpt("b@example.test", nil); err != nil {
				t.Fatal(err)
			}
			final, err := c.Data(nil, strings.NewReader("Subject: s\r\n\r\nx\r\n"))
			f, ok := enforcement.AsFailure(err)
			if final != nil || !ok || f.Kind != enforcement.KindLost || !c.Broken() {
				t.Fatalf("got final %v, err %v; want the connection lost", final, err)
			}
		})
	}
	// A 2xx other than 250 after the end of data is acceptance, relayed.
	mx := upstreamtest.NewMX(t, upstreamtest.MXOptions{Hostname: "mx.example.test", Certificate: &cert,
		DataReply: &smtp.SMTPError{Code: 251, EnhancedCode: smtp.EnhancedCode{2, 1, 5}, Message: "accepted, forwarded"}})
	c, err := deliverer(ca).Open(context.Background(), route("example.test", hostAt(t, "mx.example.test", mx.Addr(), enforcement.Requirement{})))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Mail("a@example.test", nil)
	c.Rcpt("b@example.test", nil)
	if final, err := c.Data(nil, strings.NewReader("Subject: s\r\n\r\nx\r\n")); err != nil || final.Code != 251 || final.EnhancedCode != (smtp.EnhancedCode{2, 1, 5}) {
		t.Fatalf("got %v, %v; want the MX's 251 relayed", final, err)
	}
}

// TestCommandUnexpectedReplies: a reply to MAIL or RCPT outside the
// classes of those commands (a 2xx other than 25x, a 354, a 1xx) means the
// MX and sealgate no longer agree on the dialogue. It is never relayed (a
// 220 would tell the client that a recipient the MX never took was
// accepted): the connection counts as lost. 4xx and 5xx are relayed.
func TestCommandUnexpectedReplies(t *testing.T) {
	ca := certstest.NewCA(t, "root")
	cert := ca.Leaf("mx.example.test")
	odd := []*smtp.SMTPError{
		{Code: 220, EnhancedCode: smtp.EnhancedCode{2, 0, 0}, Message: "weird"},
		{Code: 221, EnhancedCode: smtp.EnhancedCode{2, 0, 0}, Message: "bye"},
		{Code: 354, EnhancedCode: smtp.NoEnhancedCode, Message: "go ahead"},
		{Code: 199, EnhancedCode: smtp.NoEnhancedCode, Message: "what"},
		{Code: 334, EnhancedCode: smtp.NoEnhancedCode, Message: "VXNlcm5hbWU6"},
	}
	for _, reply := range odd {
		for _, stage := range []string{"MAIL", "RCPT"} {
			t.Run(fmt.Sprintf("%d to %s", reply.Code, stage), func(t *testing.T) {
				opts := upstreamtest.MXOptions{Hostname: "mx.example.test", Certificate: &cert}
				if stage == "MAIL" {
					opts.MailReply = reply
				} else {
					opts.RcptReply = reply
				}
				mx := upstreamtest.NewMX(t, opts)
				c, err := deliverer(ca).Open(context.Background(), route("example.test", hostAt(t, "mx.example.test", mx.Addr(), enforcement.Requirement{})))
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
				err = c.Mail("a@example.test", nil)
				if stage == "RCPT" {
					if err != nil {
						t.Fatal(err)
					}
					err = c.Rcpt("b@example.test", nil)
				}
				if f, ok := enforcement.AsFailure(err); !ok || f.Kind != enforcement.KindLost || !c.Broken() {
					t.Fatalf("%s answered %d: err %v; want the connection lost", stage, reply.Code, err)
				}
			})
		}
	}
	mx := upstreamtest.NewMX(t, upstreamtest.MXOptions{Hostname: "mx.example.test", Certificate: &cert,
		RcptReply: &smtp.SMTPError{Code: 452, EnhancedCode: smtp.EnhancedCode{4, 2, 2}, Message: "full"}})
	c, err := deliverer(ca).Open(context.Background(), route("example.test", hostAt(t, "mx.example.test", mx.Addr(), enforcement.Requirement{})))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Mail("a@example.test", nil)
	var se *smtp.SMTPError
	if err := c.Rcpt("b@example.test", nil); !errors.As(err, &se) || se.Code != 452 || c.Broken() {
		t.Fatalf("RCPT answered 452: %v; want it relayed, the connection kept", err)
	}
}

// TestDataEndlessReply: an MX that answers the end of data with
// continuation lines past any sensible size is a lost connection; the
// reply is not read into memory for as long as it goes on.
func TestDataEndlessReply(t *testing.T) {
	ca := certstest.NewCA(t, "root")
	cert := ca.Leaf("mx.example.test")
	mx := upstreamtest.NewMX(t, upstreamtest.MXOptions{Hostname: "mx.example.test", Certificate: &cert,
		DataReply: &smtp.SMTPError{Code: 250, EnhancedCode: smtp.EnhancedCode{2, 0, 0}, Message: strings.Repeat("continued\n", 20000)}})
	c, err := deliverer(ca).Open(context.Background(), route("example.test", hostAt(t, "mx.example.test", mx.Addr(), enforcement.Requirement{})))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Mail("a@example.test", nil)
	c.Rcpt("b@example.test", nil)
	final, err := c.Data(nil, strings.NewReader("Subject: s\r\n\r\nx\r\n"))
	if f, ok := enforcement.AsFailure(err); final != nil || !ok || f.Kind != enforcement.KindLost {
		t.Fatalf("a reply of %d KiB: final %v, err %v; want the connection lost", 20000*len("250-2.0.0 continued\r\n")>>10, final, err)
	}
}
