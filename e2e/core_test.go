package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os/exec"
	"strings"
	"testing"

	"github.com/emersion/go-smtp"

	"sealgate/certs/certstest"
	"sealgate/upstream/upstreamtest"
)

func TestDeliveredOverVerifiedTLS(t *testing.T) {
	w := newWorld(t)
	mx := w.mx("example.test", "mx1.example.test", 10, upstreamtest.MXOptions{
		Certificate: w.cert("mx1.example.test"),
		DataReply:   &smtp.SMTPError{Code: 250, EnhancedCode: smtp.EnhancedCode{2, 0, 0}, Message: "Ok: queued as 4711"},
	})
	g := w.start(nil)
	res := g.send("a@legacy.sealgate.test", []string{"b@example.test"}, message("hello"))
	if res.Rcpt[0] != nil || res.Data != nil {
		t.Fatalf("delivery failed: %+v", res)
	}
	if !strings.Contains(res.DataReply, "queued as 4711") {
		t.Errorf("final reply %q is not the MX's", res.DataReply)
	}
	msgs := mx.Messages()
	if len(msgs) != 1 || msgs[0].TLS == nil || !msgs[0].Accepted {
		t.Fatalf("MX messages: %+v", msgs)
	}
	if msgs[0].EHLO != "gw.sealgate.test" {
		t.Errorf("EHLO name %q, want our hostname", msgs[0].EHLO)
	}
	for _, c := range mx.Conns() {
		for _, cmd := range c.Commands {
			if strings.HasPrefix(cmd, "EHLO") && cmd != "EHLO gw.sealgate.test" {
				t.Errorf("sent %q, want EHLO with our hostname", cmd)
			}
		}
	}
	recv, rest := stripReceived(t, msgs[0].Data)
	if !bytes.Equal(rest, message("hello")) {
		t.Errorf("message changed:\n%q", rest)
	}
	for _, want := range []string{"by gw.sealgate.test", "TLS 1.3", "mx1.example.test", "for <b@example.test>"} {
		if !strings.Contains(recv, want) {
			t.Errorf("Received header lacks %q:\n%s", want, recv)
		}
	}
	if !g.waitLog(`msg=delivery`) || !strings.Contains(g.logs.String(), "tls_version=\"TLS 1.3\"") {
		t.Errorf("no delivery log line with TLS version:\n%s", g.logs.String())
	}
}

func TestMXWithoutSTARTTLSNeverSeesMail(t *testing.T) {
	w := newWorld(t)
	mx := w.mx("example.test", "mx1.example.test", 10, upstreamtest.MXOptions{})
	g := w.start(nil)
	res := g.send("a@legacy.sealgate.test", []string{"b@example.test"}, message("x"))
	wantReply(t, "RCPT", res.Rcpt[0], 451, "4.7.4", "example.test", "floor", "mx1.example.test", "STARTTLS")
	if mx.SawMailFrom() {
		t.Fatal("MX without STARTTLS received MAIL FROM: cleartext delivery")
	}
}

func TestSTARTTLSRefused454(t *testing.T) {
	w := newWorld(t)
	mx := w.mx("example.test", "mx1.example.test", 10, upstreamtest.MXOptions{
		Certificate:   w.cert("mx1.example.test"),
		STARTTLSReply: &smtp.SMTPError{Code: 454, EnhancedCode: smtp.EnhancedCode{4, 7, 0}, Message: "TLS not available"},
	})
	g := w.start(nil)
	res := g.send("a@legacy.sealgate.test", []string{"b@example.test"}, message("x"))
	wantReply(t, "RCPT", res.Rcpt[0], 451, "4.7.4", "454")
	if mx.SawMailFrom() {
		t.Fatal("MX that refused STARTTLS received MAIL FROM")
	}
}

func TestSTRIPTLSManInTheMiddle(t *testing.T) {
	w := newWorld(t)
	// The real MX offers STARTTLS; DNS points at the attacker.
	real := upstreamtest.NewMX(t, upstreamtest.MXOptions{Addr: nextIP() + ":0", Hostname: "mx1.example.test", Certificate: w.cert("mx1.example.test")})
	ip := w.host("mx1.example.test")
	w.dns.Add("example.test. 300 IN MX 10 mx1.example.test.")
	mitm := upstreamtest.NewSTRIPTLS(t, real.Addr(), fmt.Sprintf("%s:%d", ip, w.port))
	g := w.start(nil)
	res := g.send("a@legacy.sealgate.test", []string{"b@example.test"}, message("secret body"))
	wantReply(t, "RCPT", res.Rcpt[0], 451, "4.7.4", "mx1.example.test")
	seen := mitm.ClientBytes()
	if mitm.Connections() == 0 {
		t.Fatal("the gateway never connected through the attacker: test is void")
	}
	if bytes.Contains(bytes.ToUpper(seen), []byte("MAIL FROM")) || bytes.Contains(seen, []byte("secret body")) {
		t.Fatalf("the attacker saw the transaction:\n%s", seen)
	}
	if real.SawMailFrom() {
		t.Fatal("the MX behind the attacker saw MAIL FROM")
	}
}

func TestFallsToNextMXButNeverToCleartext(t *testing.T) {
	w := newWorld(t)
	plain := w.mx("example.test", "mx1.example.test", 10, upstreamtest.MXOptions{})
	good := w.mx("example.test", "mx2.example.test", 20, upstreamtest.MXOptions{Certificate: w.cert("mx2.example.test")})
	g := w.start(nil)
	res := g.send("a@legacy.sealgate.test", []string{"b@example.test"}, message("x"))
	if res.Rcpt[0] != nil || res.Data != nil {
		t.Fatalf("delivery failed: %+v", res)
	}
	if plain.Connections() == 0 || plain.SawMailFrom() {
		t.Errorf("first MX: %d connections, saw MAIL %v; want tried and skipped", plain.Connections(), plain.SawMailFrom())
	}
	if len(good.Messages()) != 1 {
		t.Errorf("second MX got %d messages", len(good.Messages()))
	}
}

func TestUpstreamRepliesRelayedVerbatim(t *testing.T) {
	w := newWorld(t)
	w.mx("example.test", "mx1.example.test", 10, upstreamtest.MXOptions{
		Certificate: w.cert("mx1.example.test"),
		RejectRcpt: map[string]*smtp.SMTPError{
			"nobody@example.test": {Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "<nobody@example.test>: Recipient address rejected: User unknown"},
			"full@example.test":   {Code: 452, EnhancedCode: smtp.EnhancedCode{4, 2, 2}, Message: "Mailbox full"},
		},
	})
	g := w.start(nil)
	res := g.send("a@legacy.sealgate.test", []string{"nobody@example.test", "full@example.test", "b@example.test"}, message("x"))
	wantReply(t, "RCPT nobody", res.Rcpt[0], 550, "5.1.1", "<nobody@example.test>: Recipient address rejected: User unknown")
	wantReply(t, "RCPT full", res.Rcpt[1], 452, "4.2.2", "Mailbox full")
	if res.Rcpt[2] != nil || res.Data != nil {
		t.Fatalf("good recipient: %+v", res)
	}
}

func TestDataRejectionRelayed(t *testing.T) {
	w := newWorld(t)
	w.mx("example.test", "mx1.example.test", 10, upstreamtest.MXOptions{
		Certificate: w.cert("mx1.example.test"),
		DataReply:   &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 7, 1}, Message: "spam detected"},
	})
	g := w.start(nil)
	res := g.send("a@legacy.sealgate.test", []string{"b@example.test"}, message("x"))
	wantReply(t, "DATA", res.Data, 554, "5.7.1", "spam detected")
}

func TestTwoDomainsInOneTransaction(t *testing.T) {
	w := newWorld(t)
	a := w.mx("a.test", "mx.a.test", 10, upstreamtest.MXOptions{Certificate: w.cert("mx.a.test")})
	b := w.mx("b.test", "mx.b.test", 10, upstreamtest.MXOptions{Certificate: w.cert("mx.b.test")})
	// c.test shares a.test's MX: same route, same transaction.
	w.dns.Add("c.test. 300 IN MX 10 mx.a.test.")
	g := w.start(nil)
	res := g.send("s@legacy.sealgate.test", []string{"x@a.test", "y@b.test", "z@c.test"}, message("x"))
	if res.Rcpt[0] != nil || res.Rcpt[2] != nil {
		t.Fatalf("same-route recipients refused: %+v", res.Rcpt)
	}
	wantReply(t, "RCPT other route", res.Rcpt[1], 452, "4.5.3", "b.test")
	if res.Data != nil {
		t.Fatal(res.Data)
	}
	// The legacy server retries the deferred recipient in a new transaction.
	res = g.send("s@legacy.sealgate.test", []string{"y@b.test"}, message("x"))
	if res.Rcpt[0] != nil || res.Data != nil {
		t.Fatalf("retry failed: %+v", res)
	}
	if m := a.Messages(); len(m) != 1 || len(m[0].Rcpts) != 2 {
		t.Errorf("a.test MX: %+v", m)
	}
	if m := b.Messages(); len(m) != 1 || m[0].Rcpts[0].To != "y@b.test" {
		t.Errorf("b.test MX: %+v", m)
	}
}

func TestRelayDenied(t *testing.T) {
	w := newWorld(t)
	mx := w.mx("example.test", "mx1.example.test", 10, upstreamtest.MXOptions{Certificate: w.cert("mx1.example.test")})
	g := w.start(map[string]string{"SEALGATE_ALLOWED_NETWORKS": "10.0.0.0/8"})
	res := g.send("a@legacy.sealgate.test", []string{"b@example.test"}, message("x"))
	wantReply(t, "RCPT", res.Rcpt[0], 554, "5.7.1")
	if mx.Connections() != 0 {
		t.Error("an unauthorised client caused an upstream connection")
	}
}

func TestLargeMessageArrivesByteIdentical(t *testing.T) {
	w := newWorld(t)
	mx := w.mx("example.test", "mx1.example.test", 10, upstreamtest.MXOptions{Certificate: w.cert("mx1.example.test")})
	g := w.start(nil)
	body := bigMessage(3 << 20)
	res := g.send("a@legacy.sealgate.test", []string{"b@example.test"}, body)
	if res.Rcpt[0] != nil || res.Data != nil {
		t.Fatalf("delivery failed: %+v", res)
	}
	_, rest := stripReceived(t, mx.Messages()[0].Data)
	if !bytes.Equal(rest, body) {
		t.Fatalf("body changed: got %d bytes, want %d", len(rest), len(body))
	}
}

// bigMessage makes about n bytes of message with dot-leading lines, lone
// dots in the text, 8-bit text and long lines.
func bigMessage(n int) []byte {
	r := rand.New(rand.NewPCG(1, 2))
	var b bytes.Buffer
	b.WriteString("From: a@legacy.sealgate.test\r\nTo: b@example.test\r\nSubject: big\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n")
	lines := []string{".", "..", ".leading dot", "Grüße aus Köln — ½ € ✓", "..double", strings.Repeat("x", 990), "", "From the start"}
	for b.Len() < n {
		b.WriteString(lines[r.IntN(len(lines))])
		b.WriteString("\r\n")
	}
	return b.Bytes()
}

func TestDropInDataNeverYields250(t *testing.T) {
	w := newWorld(t)
	w.mx("example.test", "mx1.example.test", 10, upstreamtest.MXOptions{Certificate: w.cert("mx1.example.test"), DropInData: 100 << 10})
	g := w.start(nil)
	res := g.send("a@legacy.sealgate.test", []string{"b@example.test"}, bigMessage(1<<20))
	if res.Rcpt[0] != nil {
		t.Fatal(res.Rcpt[0])
	}
	wantReply(t, "DATA", res.Data, 451, "4.4.2", "mx1.example.test", "connection lost")
}

func TestMinTLSVerify(t *testing.T) {
	w := newWorld(t)
	self := certstest.SelfSigned(t, "mx.self.test")
	bad := w.mx("self.test", "mx.self.test", 10, upstreamtest.MXOptions{Certificate: &self})
	wrong := w.mx("wrong.test", "mx.wrong.test", 10, upstreamtest.MXOptions{Certificate: w.cert("other.wrong.test")})
	good := w.mx("good.test", "mx.good.test", 10, upstreamtest.MXOptions{Certificate: w.cert("mx.good.test")})
	g := w.start(map[string]string{"SEALGATE_MIN_TLS": "verify"})

	res := g.send("a@legacy.sealgate.test", []string{"b@self.test"}, message("x"))
	wantReply(t, "self-signed", res.Rcpt[0], 451, "4.7.5", "self.test", "floor verify", "mx.self.test", "trusted")
	res = g.send("a@legacy.sealgate.test", []string{"b@wrong.test"}, message("x"))
	wantReply(t, "wrong name", res.Rcpt[0], 451, "4.7.5", "mx.wrong.test", "not valid for name")
	res = g.send("a@legacy.sealgate.test", []string{"b@good.test"}, message("x"))
	if res.Rcpt[0] != nil || res.Data != nil {
		t.Fatalf("valid certificate refused: %+v", res)
	}
	if bad.SawMailFrom() || wrong.SawMailFrom() {
		t.Fatal("an MX that failed verification saw MAIL FROM")
	}
	if len(good.Messages()) != 1 {
		t.Fatal("valid MX got no message")
	}
	// Under the default floor (encrypt), the self-signed MX is fine.
	g2 := w.start(nil)
	if res := g2.send("a@legacy.sealgate.test", []string{"b@self.test"}, message("x")); res.Rcpt[0] != nil || res.Data != nil {
		t.Fatalf("encrypt floor refused a self-signed MX: %+v", res)
	}
}

func TestDNSOutcomes(t *testing.T) {
	w := newWorld(t)
	w.dns.Add("null.test. 300 IN MX 0 .")
	w.dns.Add("fail.test. 300 IN A 127.0.0.9")
	w.dns.SetRcode("fail.test.", 15, 2) // MX SERVFAIL
	g := w.start(nil)
	tests := []struct {
		rcpt string
		code int
		enh  string
	}{
		{rcpt: "b@null.test", code: 556, enh: "5.1.10"},
		{rcpt: "b@nowhere.test", code: 550, enh: "5.1.2"},
		{rcpt: "b@fail.test", code: 451, enh: "4.4.3"},
	}
	for _, tc := range tests {
		t.Run(tc.rcpt, func(t *testing.T) {
			res := g.send("a@legacy.sealgate.test", []string{tc.rcpt}, message("x"))
			domain := tc.rcpt[strings.IndexByte(tc.rcpt, '@')+1:]
			wantReply(t, "RCPT", res.Rcpt[0], tc.code, tc.enh, domain)
		})
	}
}

func TestBadVariableStopsStart(t *testing.T) {
	for _, tc := range []struct{ name, value string }{
		{"SEALGATE_MIN_TLS", "none"},
		{"SEALGATE_MX_PORT", "smtp"},
		{"SEALGATE_ALLOWED_NETWORKS", "everyone"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cmd := exec.Command(binPath, "serve")
			cmd.Env = []string{tc.name + "=" + tc.value, "SEALGATE_LISTEN=127.0.0.1:0"}
			out, err := cmd.CombinedOutput()
			if err == nil {
				t.Fatal("started with a bad variable")
			}
			if !strings.Contains(string(out), tc.name) {
				t.Errorf("message does not name %s: %s", tc.name, out)
			}
		})
	}
}

// TestUpstreamLostAfterRecipients: when the MX goes away after some
// recipients were accepted, the transaction must not end in 250 for a
// message that reached only part of them.
func TestUpstreamLostAfterRecipients(t *testing.T) {
	w := newWorld(t)
	mx := w.mx("example.test", "mx1.example.test", 10, upstreamtest.MXOptions{
		Certificate: w.cert("mx1.example.test"),
		RejectRcpt:  map[string]*smtp.SMTPError{"second@example.test": {Code: 421, EnhancedCode: smtp.EnhancedCode{4, 3, 2}, Message: "shutting down"}},
	})
	g := w.start(nil)
	res := g.send("a@legacy.sealgate.test", []string{"first@example.test", "second@example.test", "third@example.test"}, message("x"))
	if res.Rcpt[0] != nil {
		t.Fatalf("first recipient: %v", res.Rcpt[0])
	}
	// An MX's 421 closes its connection (RFC 5321 §3.8) but not the
	// client's session: a 4xx for the transaction, the MX's text kept.
	wantReply(t, "second", res.Rcpt[1], 451, "4.4.2", "421 4.3.2 shutting down")
	wantReply(t, "third", res.Rcpt[2], 451, "4.4.2", "connection to the MX lost")
	wantReply(t, "DATA", res.Data, 451, "4.4.2")
	for _, m := range mx.Messages() {
		if m.Accepted {
			t.Fatal("a message reached the MX for part of the recipients")
		}
	}
}

// TestIPv6MX: an MX reachable only over IPv6 (AAAA on ::1), and a legacy
// client on ::1.
func TestIPv6MX(t *testing.T) {
	w := newWorld(t)
	mx := upstreamtest.NewMX(t, upstreamtest.MXOptions{Addr: fmt.Sprintf("[::1]:%d", w.port), Hostname: "mx6.example.test", Certificate: w.cert("mx6.example.test")})
	w.dns.Add("v6.test. 300 IN MX 10 mx6.example.test.", "mx6.example.test. 300 IN AAAA ::1")
	g := w.start(map[string]string{"SEALGATE_LISTEN": "[::1]:0", "SEALGATE_ALLOWED_NETWORKS": "::1/128"})
	if !strings.HasPrefix(g.addr, "[::1]:") {
		t.Fatalf("gateway listens on %s", g.addr)
	}
	res := g.send("a@legacy.sealgate.test", []string{"b@v6.test"}, message("x"))
	if res.Rcpt[0] != nil || res.Data != nil {
		t.Fatalf("%+v", res)
	}
	if len(mx.Messages()) != 1 || !strings.Contains(g.logs.String(), "ip=::1") {
		t.Fatalf("not delivered over IPv6:\n%s", g.logs.String())
	}
}

// TestParametersGoUpstream: SIZE, SMTPUTF8 and the DSN parameters reach an
// MX that supports them; SMTPUTF8 to an MX without it is refused.
func TestParametersGoUpstream(t *testing.T) {
	w := newWorld(t)
	mx := w.mx("dsn.test", "mx.dsn.test", 10, upstreamtest.MXOptions{Certificate: w.cert("mx.dsn.test"),
		Extensions: upstreamtest.Extensions{DSN: true, SMTPUTF8: true, Size: 1 << 20}})
	w.mx("ascii.test", "mx.ascii.test", 10, upstreamtest.MXOptions{Certificate: w.cert("mx.ascii.test")})
	g := w.start(nil)
	c, err := smtp.Dial(g.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Mail("a@legacy.sealgate.test", &smtp.MailOptions{Size: 1234, UTF8: true, Return: smtp.DSNReturnHeaders, EnvelopeID: "QQ314159"}); err != nil {
		t.Fatal(err)
	}
	if err := c.Rcpt("bö@dsn.test", &smtp.RcptOptions{Notify: []smtp.DSNNotify{smtp.DSNNotifySuccess, smtp.DSNNotifyFailure}, OriginalRecipientType: smtp.DSNAddressTypeRFC822, OriginalRecipient: "b@dsn.test"}); err != nil {
		t.Fatal(err)
	}
	wc, _ := c.Data()
	wc.Write(message("params"))
	if err := wc.Close(); err != nil {
		t.Fatal(err)
	}
	m := mx.Messages()
	if len(m) != 1 {
		t.Fatal("no message")
	}
	o, r := m[0].MailOptions, m[0].Rcpts[0]
	if o.Size != 1234 || !o.UTF8 || o.Return != smtp.DSNReturnHeaders || o.EnvelopeID != "QQ314159" {
		t.Errorf("MAIL parameters lost: %+v", o)
	}
	if r.To != "bö@dsn.test" || len(r.Options.Notify) != 2 || r.Options.OriginalRecipient != "b@dsn.test" {
		t.Errorf("RCPT parameters lost: %+v", r)
	}
	c.Reset()
	c.Mail("a@legacy.sealgate.test", &smtp.MailOptions{UTF8: true})
	wantReply(t, "SMTPUTF8 to an MX without it", c.Rcpt("b@ascii.test", nil), 550, "5.6.7", "SMTPUTF8")
}

func TestJSONLogs(t *testing.T) {
	w := newWorld(t)
	w.mx("example.test", "mx1.example.test", 10, upstreamtest.MXOptions{Certificate: w.cert("mx1.example.test")})
	g := w.start(map[string]string{"SEALGATE_LOG_FORMAT": "json"})
	if res := g.send("a@legacy.sealgate.test", []string{"b@example.test"}, message("x")); res.Data != nil {
		t.Fatal(res.Data)
	}
	var delivery map[string]any
	for _, line := range strings.Split(strings.TrimSpace(g.logs.String()), "\n") {
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("not a JSON log line: %q", line)
		}
		if rec["msg"] == "delivery" {
			delivery = rec
		}
	}
	for _, k := range []string{"domain", "mx", "ip", "tls_version", "cipher", "policy", "verification", "reply", "duration"} {
		if _, ok := delivery[k]; !ok {
			t.Errorf("delivery line lacks %q: %v", k, delivery)
		}
	}
}
