package e2e

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"sealgate/upstream/upstreamtest"
)

// faultReply is a reply of the fake MX, its text marked so that the test
// can find it in what the legacy client sees.
func faultReply(code int, enh smtp.EnhancedCode, text string) *smtp.SMTPError {
	return &smtp.SMTPError{Code: code, EnhancedCode: enh, Message: text}
}

var enh432 = smtp.EnhancedCode{4, 3, 2}

func hangupAt(s upstreamtest.Stage) map[upstreamtest.Stage]bool {
	return map[upstreamtest.Stage]bool{s: true}
}

// TestFaultInjection breaks the MX at every stage of the upstream
// conversation, either closing the connection or answering 421 (and
// closing, as RFC 5321 §3.8 has it), and checks what the legacy client
// sees: a 4xx of sealgate's own naming the cause, 451 4.4.2 once the
// transaction was under way, an upstream 4xx/5xx relayed; never a 250, and
// never a 421 for a transaction (a 421 would tell the client that sealgate
// itself is closing). Whatever the fault: no MAIL, RCPT or DATA before TLS,
// no message completed at the MX, and the inbound session goes on to
// deliver its next transaction.
func TestFaultInjection(t *testing.T) {
	tests := []struct {
		name string
		opts upstreamtest.MXOptions
		// at is where the client sees the failure: "RCPT" or "DATA".
		at string
		// code and enh are the reply wanted; code 0 means any 4xx but
		// 421 (an upstream 421 made into a reply for the transaction).
		code int
		enh  string
		// parts must appear in the reply text; the domain too, unless the
		// reply is the MX's, relayed verbatim.
		parts   []string
		relayed bool
		big     bool // send a 1 MiB body
	}{
		{name: "greeting/hangup", opts: upstreamtest.MXOptions{Hangup: hangupAt(upstreamtest.StageGreeting)},
			at: "RCPT", code: 451, enh: "4.4.1", parts: []string{"greeting"}},
		{name: "greeting/421", opts: upstreamtest.MXOptions{GreetingReply: faultReply(421, enh432, "greeting-busy")},
			at: "RCPT", code: 451, enh: "4.4.1", parts: []string{"421", "greeting-busy"}},
		{name: "EHLO/hangup", opts: upstreamtest.MXOptions{Hangup: hangupAt(upstreamtest.StageEHLO)},
			at: "RCPT", code: 451, enh: "4.4.1", parts: []string{"EHLO"}},
		{name: "EHLO/421", opts: upstreamtest.MXOptions{EHLOReply: faultReply(421, enh432, "ehlo-busy"), CloseOn421: true},
			at: "RCPT", code: 451, enh: "4.4.1", parts: []string{"421", "ehlo-busy"}},
		{name: "STARTTLS/hangup", opts: upstreamtest.MXOptions{Hangup: hangupAt(upstreamtest.StageSTARTTLS)},
			at: "RCPT", code: 451, enh: "4.4.1", parts: []string{"STARTTLS"}},
		{name: "STARTTLS/421", opts: upstreamtest.MXOptions{STARTTLSReply: faultReply(421, enh432, "starttls-busy"), CloseOn421: true},
			at: "RCPT", code: 451, enh: "4.7.4", parts: []string{"421", "starttls-busy"}},
		{name: "handshake/hangup", opts: upstreamtest.MXOptions{Hangup: hangupAt(upstreamtest.StageHandshake)},
			at: "RCPT", code: 451, enh: "4.7.5", parts: []string{"handshake"}},
		{name: "MAIL/hangup", opts: upstreamtest.MXOptions{Hangup: hangupAt(upstreamtest.StageMail)},
			at: "RCPT", code: 451, enh: "4.4.2", parts: []string{"MAIL"}},
		{name: "MAIL/421", opts: upstreamtest.MXOptions{MailReply: faultReply(421, enh432, "mail-busy"), CloseOn421: true},
			at: "RCPT", parts: []string{"mail-busy"}},
		{name: "RCPT/hangup", opts: upstreamtest.MXOptions{Hangup: hangupAt(upstreamtest.StageRcpt)},
			at: "RCPT", code: 451, enh: "4.4.2", parts: []string{"RCPT"}},
		{name: "RCPT/421", opts: upstreamtest.MXOptions{RcptReply: faultReply(421, enh432, "rcpt-busy"), CloseOn421: true},
			at: "RCPT", parts: []string{"rcpt-busy"}},
		{name: "RCPT/550 relayed", opts: upstreamtest.MXOptions{RcptReply: faultReply(550, smtp.EnhancedCode{5, 1, 1}, "no-such-user")},
			at: "RCPT", code: 550, enh: "5.1.1", parts: []string{"no-such-user"}, relayed: true},
		{name: "DATA command/hangup", opts: upstreamtest.MXOptions{Hangup: hangupAt(upstreamtest.StageDataCommand)},
			at: "DATA", code: 451, enh: "4.4.2", parts: []string{"DATA"}},
		{name: "DATA command/421", opts: upstreamtest.MXOptions{DataCommandReply: faultReply(421, enh432, "data-busy"), CloseOn421: true},
			at: "DATA", parts: []string{"data-busy"}},
		{name: "DATA command/452 relayed", opts: upstreamtest.MXOptions{DataCommandReply: faultReply(452, smtp.EnhancedCode{4, 3, 1}, "data-full")},
			at: "DATA", code: 452, enh: "4.3.1", parts: []string{"data-full"}, relayed: true},
		{name: "mid-body/hangup", opts: upstreamtest.MXOptions{DropInData: 100 << 10},
			at: "DATA", code: 451, enh: "4.4.2", parts: []string{"connection lost"}, big: true},
		// The 421 and the reset race: either may reach sealgate first,
		// so only the class of the reply is fixed.
		{name: "mid-body/421", opts: upstreamtest.MXOptions{DropInData: 100 << 10, DropInDataReply: faultReply(421, enh432, "body-busy")},
			at: "DATA", big: true},
		{name: "final reply/hangup", opts: upstreamtest.MXOptions{Hangup: hangupAt(upstreamtest.StageData)},
			at: "DATA", code: 451, enh: "4.4.2", parts: []string{"end of DATA"}},
		{name: "final reply/421", opts: upstreamtest.MXOptions{DataReply: faultReply(421, enh432, "final-busy"), CloseOn421: true},
			at: "DATA", parts: []string{"final-busy"}},
		{name: "final reply/452 relayed", opts: upstreamtest.MXOptions{DataReply: faultReply(452, smtp.EnhancedCode{4, 2, 2}, "final-full")},
			at: "DATA", code: 452, enh: "4.2.2", parts: []string{"final-full"}, relayed: true},
	}
	w := newWorld(t)
	ok := w.mx("ok.test", "mx1.ok.test", 10, upstreamtest.MXOptions{Certificate: w.cert("mx1.ok.test")})
	// Every case waits for the faulty MX's connection to end: no pooling.
	g := w.start(map[string]string{"SEALGATE_UPSTREAM_MAX_REUSE": "1"})
	for i, tc := range tests {
		domain := fmt.Sprintf("f%d.test", i)
		opts := tc.opts
		opts.Certificate = w.cert("mx1." + domain)
		mx := w.mx(domain, "mx1."+domain, 10, opts)
		t.Run(tc.name, func(t *testing.T) {
			body := message(tc.name)
			if tc.big {
				body = bigMessage(1 << 20)
			}
			before := len(ok.Messages())
			res := g.sendThenNext("b@"+domain, body, "b@ok.test")
			got := res.Rcpt
			if tc.at == "DATA" {
				if res.Rcpt != nil {
					t.Fatalf("RCPT: %v, want 250 (the fault is at DATA)", res.Rcpt)
				}
				got = res.Data
			}
			switch {
			case tc.relayed:
				wantReply(t, tc.at, got, tc.code, tc.enh, tc.parts...)
			case tc.code != 0:
				wantReply(t, tc.at, got, tc.code, tc.enh, append([]string{domain}, tc.parts...)...)
			default:
				wantTransactionTempfail(t, tc.at, got, tc.parts...)
			}
			if res.Next != nil {
				t.Errorf("the next transaction in the same session: %v, want 250", res.Next)
			}
			if n := len(ok.Messages()) - before; res.Next == nil && n != 1 {
				t.Errorf("the next transaction reached the healthy MX %d times", n)
			}
			mx.WaitIdle(10e9)
			if mx.SawCleartextTransaction() {
				t.Fatal("the MX saw MAIL, RCPT or DATA before TLS")
			}
			for _, m := range mx.Messages() {
				if m.Accepted {
					t.Fatal("the MX completed a message the client got no 250 for")
				}
			}
		})
	}
}

// wantTransactionTempfail fails unless err is a 4xx reply other than 421
// whose text contains every part.
func wantTransactionTempfail(t *testing.T, what string, err error, parts ...string) {
	t.Helper()
	var se *smtp.SMTPError
	if !errors.As(err, &se) {
		t.Fatalf("%s: got %v, want a 4xx reply", what, err)
	}
	if se.Code/100 != 4 || se.Code == 421 {
		t.Fatalf("%s: got %d %v %s, want a 4xx other than 421 (421 closes the client's session)", what, se.Code, se.EnhancedCode, se.Message)
	}
	for _, p := range parts {
		if !strings.Contains(se.Message, p) {
			t.Errorf("%s: reply %q does not contain %q", what, se.Message, p)
		}
	}
}

// twoResults is what the legacy client saw in sendThenNext.
type twoResults struct {
	Rcpt, Data error // the first transaction; Data only when RCPT got 250
	Next       error // the second, nil when it ended in 250
}

// sendThenNext runs a transaction to rcpt and then, in the same session
// after RSET, a second one to next.
func (g *gateway) sendThenNext(rcpt string, body []byte, next string) twoResults {
	g.t.Helper()
	c := g.dialHello()
	if err := c.Mail("a@legacy.sealgate.test", nil); err != nil {
		g.t.Fatalf("MAIL: %v", err)
	}
	var res twoResults
	if res.Rcpt = c.Rcpt(rcpt, nil); res.Rcpt == nil {
		res.Data = writeData(c, body)
	}
	if err := c.Reset(); err != nil {
		res.Next = fmt.Errorf("RSET: %w", err)
		return res
	}
	if err := c.Mail("a@legacy.sealgate.test", nil); err != nil {
		res.Next = fmt.Errorf("MAIL: %w", err)
		return res
	}
	if err := c.Rcpt(next, nil); err != nil {
		res.Next = fmt.Errorf("RCPT: %w", err)
		return res
	}
	res.Next = writeData(c, message("next"))
	return res
}

// dialHello connects to the gateway as a legacy client and says EHLO; the
// connection is closed when the test ends.
func (g *gateway) dialHello() *smtp.Client {
	g.t.Helper()
	c, err := smtp.Dial(g.addr)
	if err != nil {
		g.t.Fatal(err)
	}
	g.t.Cleanup(func() { c.Close() })
	if err := c.Hello("legacy.sealgate.test"); err != nil {
		g.t.Fatal(err)
	}
	return c
}

// writeData sends DATA and body and returns the final reply's error.
func writeData(c *smtp.Client, body []byte) error {
	w, err := c.Data()
	if err != nil {
		return err
	}
	if _, err := w.Write(body); err != nil {
		return err
	}
	return w.Close()
}

// TestFaultSTRIPTLSForged421: an attacker in the path strips STARTTLS or
// answers it with a forged 421; sealgate defers with 451 4.7.4 and the
// attacker sees no part of the transaction.
func TestFaultSTRIPTLSForged421(t *testing.T) {
	tests := []struct {
		name string
		opts upstreamtest.MITMOptions
	}{
		{name: "stripped", opts: upstreamtest.MITMOptions{}},
		{name: "forged 421", opts: upstreamtest.MITMOptions{KeepSTARTTLS: true, STARTTLSReply: faultReply(421, enh432, "mitm-busy")}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			w := newWorld(t)
			real := upstreamtest.NewMX(t, upstreamtest.MXOptions{Addr: nextIP() + ":0", Hostname: "mx1.example.test", Certificate: w.cert("mx1.example.test")})
			ip := w.host("mx1.example.test")
			w.dns.Add("example.test. 300 IN MX 10 mx1.example.test.")
			opts := tc.opts
			opts.Upstream, opts.Addr = real.Addr(), fmt.Sprintf("%s:%d", ip, w.port)
			mitm := upstreamtest.NewMITM(t, opts)
			g := w.start(nil)
			res := g.send("a@legacy.sealgate.test", []string{"b@example.test"}, message("secret body"))
			wantReply(t, "RCPT", res.Rcpt[0], 451, "4.7.4", "example.test", "mx1.example.test")
			if mitm.Connections() == 0 {
				t.Fatal("the gateway never connected through the attacker: test is void")
			}
			seen := bytes.ToUpper(mitm.ClientBytes())
			for _, verb := range []string{"MAIL FROM", "RCPT TO", "DATA", "SECRET BODY"} {
				if bytes.Contains(seen, []byte(verb)) {
					t.Fatalf("the attacker saw %q:\n%s", verb, seen)
				}
			}
			if real.SawMailFrom() {
				t.Fatal("the MX behind the attacker saw MAIL FROM")
			}
		})
	}
}

// TestBDATShortLastChunkNeverCompletes: a client announces its last BDAT
// chunk, sends only part of it and closes the connection. The message is
// incomplete: the MX must not complete it. (go-smtp's server copies the
// chunk with io.Copy over a LimitReader, which takes the early end of the
// connection for the end of the chunk.)
func TestBDATShortLastChunkNeverCompletes(t *testing.T) {
	w := newWorld(t)
	mxs := map[string]*upstreamtest.MX{}
	for _, d := range []string{"bdat.test", "data.test"} {
		mxs[d] = w.mx(d, "mx1."+d, 10, upstreamtest.MXOptions{Certificate: w.cert("mx1." + d)})
	}
	g := w.start(nil)
	for _, kind := range []soakKind{
		{name: "abandoned BDAT", domain: "bdat.test", bdat: true, abandon: true, size: 16 << 10},
		{name: "abandoned DATA", domain: "data.test", abandon: true, size: 16 << 10},
	} {
		t.Run(kind.name, func(t *testing.T) {
			if got := soakSession(g.addr, nil, kind, "short"); got != "abandoned" {
				t.Fatalf("session ended %q, want abandoned", got)
			}
			mx := mxs[kind.domain]
			mx.WaitIdle(10 * time.Second)
			if n := len(acceptedMessages(mx)); n != 0 {
				t.Fatalf("the MX completed %d messages the client never finished", n)
			}
		})
	}
}
