package proxy

import (
	"errors"
	"fmt"
	"testing"

	"github.com/emersion/go-smtp"

	"sealgate/enforcement"
)

// TestReply: every failure kind becomes the one reply of README's "What
// the legacy server sees" table, its text the failure's; the MX's own
// replies pass through verbatim; anything else is an internal 451 that
// does not leak its text.
func TestReply(t *testing.T) {
	failure := func(k enforcement.Kind, policy string) error {
		return &enforcement.Failure{Kind: k, Domain: "example.test", Policy: policy, Host: "mx.example.test", Reason: "why"}
	}
	mxReply := &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "user unknown"}
	tests := []struct {
		name string
		err  error
		want string // code, enhanced code and text
	}{
		{name: "no STARTTLS", err: failure(enforcement.KindNoSTARTTLS, "floor encrypt"), want: "451 4.7.4 example.test: floor encrypt: mx.example.test: why"},
		{name: "TLS", err: failure(enforcement.KindTLS, "DANE"), want: "451 4.7.5 example.test: DANE: mx.example.test: why"},
		{name: "DNS", err: failure(enforcement.KindDNS, ""), want: "451 4.4.3 example.test: mx.example.test: why"},
		{name: "unreachable", err: failure(enforcement.KindUnreachable, ""), want: "451 4.4.1 example.test: mx.example.test: why"},
		{name: "lost", err: failure(enforcement.KindLost, ""), want: "451 4.4.2 example.test: mx.example.test: why"},
		{name: "null MX", err: failure(enforcement.KindNullMX, ""), want: "556 5.1.10 example.test: mx.example.test: why"},
		{name: "no domain", err: failure(enforcement.KindNoDomain, ""), want: "550 5.1.2 example.test: mx.example.test: why"},
		{name: "REQUIRETLS", err: failure(enforcement.KindRequireTLS, ""), want: "550 5.7.30 example.test: mx.example.test: why"},
		{name: "local state", err: failure(enforcement.KindLocal, ""), want: "451 4.3.0 example.test: mx.example.test: why"},
		{name: "relay credentials", err: failure(enforcement.KindAuth, ""), want: "451 4.7.8 example.test: mx.example.test: why"},
		{name: "SMTPUTF8", err: failure(enforcement.KindSMTPUTF8, ""), want: "550 5.6.7 example.test: mx.example.test: why"},
		{name: "wrapped failure", err: fmt.Errorf("opening: %w", failure(enforcement.KindTLS, "MTA-STS enforce")), want: "451 4.7.5 example.test: MTA-STS enforce: mx.example.test: why"},
		{name: "a failure wrapping an MX reply", err: &enforcement.Failure{Kind: enforcement.KindLost, Domain: "example.test", Host: "mx.example.test", Reason: "421", Err: mxReply},
			want: "451 4.4.2 example.test: mx.example.test: 421"},
		{name: "the MX's reply", err: mxReply, want: "550 5.1.1 user unknown"},
		{name: "an MX reply without enhanced code", err: &smtp.SMTPError{Code: 452, EnhancedCode: smtp.NoEnhancedCode, Message: "mailbox full"}, want: "452 mailbox full"},
		{name: "anything else", err: errors.New("internal detail"), want: "451 4.3.0 internal error, try again later"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := Reply(tc.err)
			got := fmt.Sprint(r.Code)
			if r.EnhancedCode != smtp.NoEnhancedCode {
				got += fmt.Sprintf(" %d.%d.%d", r.EnhancedCode[0], r.EnhancedCode[1], r.EnhancedCode[2])
			}
			got += " " + r.Message
			if got != tc.want {
				t.Errorf("Reply = %q, want %q", got, tc.want)
			}
		})
	}
}
