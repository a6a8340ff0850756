package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"sealgate/upstream/upstreamtest"
)

// relay starts a provider's relay at relay.sealgate.test on a fresh
// address and the given port.
func (w *world) relay(port int, opts upstreamtest.MXOptions) (*upstreamtest.MX, string) {
	w.t.Helper()
	ip := w.host("relay.sealgate.test")
	opts.Addr = fmt.Sprintf("%s:%d", ip, port)
	opts.Hostname = "relay.sealgate.test"
	if opts.Certificate == nil {
		opts.Certificate = w.cert("relay.sealgate.test")
	}
	opts.AuthUsers = map[string]string{"gateway": "s3cret"}
	return upstreamtest.NewMX(w.t, opts), fmt.Sprintf("[relay.sealgate.test]:%d", port)
}

func TestSmarthost(t *testing.T) {
	for _, tc := range []struct {
		name string
		port int
		opts upstreamtest.MXOptions
	}{
		{name: "submission with STARTTLS", port: 587},
		{name: "implicit TLS on 465", port: 465, opts: upstreamtest.MXOptions{ImplicitTLS: true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := newWorld(t)
			relay, hostport := w.relay(tc.port, tc.opts)
			pwFile := filepath.Join(t.TempDir(), "relay-password")
			os.WriteFile(pwFile, []byte("s3cret\n"), 0o600)
			g := w.start(map[string]string{
				"SEALGATE_RELAY_HOST":          hostport,
				"SEALGATE_RELAY_USERNAME":      "gateway",
				"SEALGATE_RELAY_PASSWORD_FILE": pwFile,
			})
			// No MX records exist: every domain goes through the relay, in
			// one transaction.
			res := g.send("a@legacy.sealgate.test", []string{"x@one.test", "y@two.test"}, message("x"))
			if res.Rcpt[0] != nil || res.Rcpt[1] != nil || res.Data != nil {
				t.Fatalf("%+v", res)
			}
			msgs := relay.Messages()
			if len(msgs) != 1 || len(msgs[0].Rcpts) != 2 || msgs[0].AuthUser != "gateway" || msgs[0].TLS == nil {
				t.Fatalf("relay messages: %+v", msgs)
			}
		})
	}
}

func TestSmarthostWrongPassword(t *testing.T) {
	w := newWorld(t)
	relay, hostport := w.relay(587, upstreamtest.MXOptions{})
	g := w.start(map[string]string{
		"SEALGATE_RELAY_HOST":     hostport,
		"SEALGATE_RELAY_USERNAME": "gateway",
		"SEALGATE_RELAY_PASSWORD": "wrong",
	})
	res := g.send("a@legacy.sealgate.test", []string{"x@one.test"}, message("x"))
	wantReply(t, "RCPT", res.Rcpt[0], 451, "4.7.8", "relay.sealgate.test", "authentication failed", "535")
	if relay.SawMailFrom() {
		t.Fatal("relay saw MAIL FROM without authentication")
	}
}

func TestSmarthostVerifiesRelayName(t *testing.T) {
	w := newWorld(t)
	relay, hostport := w.relay(587, upstreamtest.MXOptions{Certificate: w.cert("other.sealgate.test")})
	g := w.start(map[string]string{"SEALGATE_RELAY_HOST": hostport})
	res := g.send("a@legacy.sealgate.test", []string{"x@one.test"}, message("x"))
	wantReply(t, "RCPT", res.Rcpt[0], 451, "4.7.5", "relay.sealgate.test", "not valid for name")
	if relay.SawMailFrom() {
		t.Fatal("relay with a wrong certificate saw MAIL FROM")
	}
}

// TestSmarthostAuthParameterNotVouched: the identity a legacy client
// claims with MAIL FROM's AUTH= parameter is checked against nothing, and
// upstream sealgate's own relay login would vouch for it: the relay gets
// AUTH=<> ("submitter not known", RFC 4954 §5) instead.
func TestSmarthostAuthParameterNotVouched(t *testing.T) {
	w := newWorld(t)
	relay, hostport := w.relay(587, upstreamtest.MXOptions{})
	g := w.start(map[string]string{
		"SEALGATE_RELAY_HOST":     hostport,
		"SEALGATE_RELAY_USERNAME": "gateway",
		"SEALGATE_RELAY_PASSWORD": "s3cret",
	})
	// go-smtp's client drops AUTH= where the server offers no AUTH, as
	// sealgate does here: raw commands.
	c := g.dialRaw()
	for _, cmd := range []string{"EHLO legacy.sealgate.test", "MAIL FROM:<a@legacy.sealgate.test> AUTH=ceo@provider.test", "RCPT TO:<x@one.test>", "DATA"} {
		if r := c.cmd(cmd); r[0] != '2' && r[0] != '3' {
			t.Fatalf("%s: %s", cmd, r)
		}
	}
	if r := c.cmd(string(message("auth param")) + "."); !strings.HasPrefix(r, "250") {
		t.Fatalf("end of DATA: %s", r)
	}
	msgs := relay.Messages()
	if len(msgs) != 1 || msgs[0].AuthUser != "gateway" {
		t.Fatalf("relay messages: %+v", msgs)
	}
	if a := msgs[0].MailOptions.Auth; a == nil || *a != "" {
		t.Fatalf("the relay got AUTH=%v under sealgate's login, want AUTH=<>; commands %q", ptrString(a), relay.Conns()[0].Commands)
	}
}

func ptrString(p *string) string {
	if p == nil {
		return "(none)"
	}
	return *p
}
