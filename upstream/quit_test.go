package upstream

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"sealgate/certs/certstest"
	"sealgate/enforcement"
	"sealgate/upstream/upstreamtest"
)

// TestQuitWithoutTLS: an MX we leave because it offers no TLS gets a QUIT
// (RFC 3207 §4.1, RFC 5321 §4.1.1.10), and nothing else after EHLO or the
// refused STARTTLS. After a failed handshake there is no TLS session to
// send QUIT in, and QUIT in cleartext after STARTTLS would break RFC 3207:
// the connection is just closed.
func TestQuitWithoutTLS(t *testing.T) {
	ca := certstest.NewCA(t, "root")
	cert := ca.Leaf("mx.example.test")
	refused := func(code int, enh smtp.EnhancedCode) *smtp.SMTPError {
		return &smtp.SMTPError{Code: code, EnhancedCode: enh, Message: "no"}
	}
	tests := []struct {
		name         string
		opts         upstreamtest.MXOptions
		req          enforcement.Requirement
		wantKind     enforcement.Kind
		wantCommands string // every command line the MX saw, "|"-joined
	}{
		{name: "STARTTLS not offered", opts: upstreamtest.MXOptions{},
			wantKind: enforcement.KindNoSTARTTLS, wantCommands: "EHLO gw.example.test|QUIT"},
		{name: "STARTTLS answered 454", opts: upstreamtest.MXOptions{Certificate: &cert, STARTTLSReply: refused(454, smtp.EnhancedCode{4, 7, 0})},
			wantKind: enforcement.KindNoSTARTTLS, wantCommands: "EHLO gw.example.test|STARTTLS|QUIT"},
		{name: "EHLO answered 502", opts: upstreamtest.MXOptions{Certificate: &cert, EHLOReply: refused(502, smtp.EnhancedCode{5, 5, 1})},
			wantKind: enforcement.KindNoSTARTTLS, wantCommands: "EHLO gw.example.test|QUIT"},
		{name: "certificate refused", opts: upstreamtest.MXOptions{Certificate: &cert},
			req:      enforcement.Requirement{Source: enforcement.SourceFloor, Level: enforcement.LevelVerify, Names: []string{"other.example.test"}},
			wantKind: enforcement.KindTLS, wantCommands: "EHLO gw.example.test|STARTTLS"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.opts.Hostname = "mx.example.test"
			mx := upstreamtest.NewMX(t, tc.opts)
			_, err := deliverer(ca).Open(context.Background(), route("example.test", hostAt(t, "mx.example.test", mx.Addr(), tc.req)))
			f, ok := enforcement.AsFailure(err)
			if !ok || f.Kind != tc.wantKind {
				t.Fatalf("err = %v, want kind %v", err, tc.wantKind)
			}
			mx.WaitIdle(5 * time.Second)
			conns := mx.Conns()
			if len(conns) != 1 {
				t.Fatalf("%d connections, want 1", len(conns))
			}
			if got := strings.Join(conns[0].Commands, "|"); got != tc.wantCommands {
				t.Errorf("MX saw %q, want %q", got, tc.wantCommands)
			}
		})
	}
}
