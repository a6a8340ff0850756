package upstreamtest_test

import (
	"crypto/tls"
	"fmt"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"sealgate/certs/certstest"
	"sealgate/upstream/upstreamtest"
)

const mxName = "mx1.example.test"

func tlsMX(t *testing.T, opts upstreamtest.MXOptions) (*upstreamtest.MX, *certstest.CA) {
	t.Helper()
	ca := certstest.NewCA(t, "test root")
	leaf := ca.Leaf(mxName)
	opts.Certificate = &leaf
	return upstreamtest.NewMX(t, opts), ca
}

func clientTLS(ca *certstest.CA) *tls.Config {
	return &tls.Config{RootCAs: ca.Pool(), ServerName: mxName}
}

func TestDeliverOverSTARTTLS(t *testing.T) {
	mx, ca := tlsMX(t, upstreamtest.MXOptions{
		Extensions: upstreamtest.Extensions{REQUIRETLS: true, DSN: true},
	})
	conn, err := net.Dial("tcp", mx.Addr())
	if err != nil {
		t.Fatal(err)
	}
	c, err := smtp.NewClientStartTLS(conn, clientTLS(ca))
	if err != nil {
		t.Fatalf("NewClientStartTLS: %v", err)
	}
	defer c.Close()
	if err := c.Hello("client.test"); err != nil {
		t.Fatalf("EHLO after STARTTLS: %v", err)
	}
	if ok, _ := c.Extension("REQUIRETLS"); !ok {
		t.Errorf("REQUIRETLS not advertised after TLS")
	}
	if ok, _ := c.Extension("STARTTLS"); ok {
		t.Errorf("STARTTLS advertised after TLS")
	}
	if err := c.Mail("alice@sender.test", &smtp.MailOptions{RequireTLS: true, EnvelopeID: "env-1"}); err != nil {
		t.Fatalf("MAIL: %v", err)
	}
	for _, rcpt := range []string{"bob@example.test", "carol@example.test"} {
		if err := c.Rcpt(rcpt, &smtp.RcptOptions{Notify: []smtp.DSNNotify{smtp.DSNNotifyFailure}}); err != nil {
			t.Fatalf("RCPT %s: %v", rcpt, err)
		}
	}
	body := "Subject: test\r\n\r\nline one\r\n.leading dot\r\n..two dots\r\n"
	w, err := c.Data()
	if err != nil {
		t.Fatalf("DATA: %v", err)
	}
	if _, err := w.Write([]byte(body)); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatalf("end of DATA: %v", err)
	}
	if err := c.Quit(); err != nil {
		t.Fatalf("QUIT: %v", err)
	}

	msgs := mx.Messages()
	if len(msgs) != 1 {
		t.Fatalf("MX recorded %d messages, want 1", len(msgs))
	}
	m := msgs[0]
	if m.From != "alice@sender.test" || !m.MailOptions.RequireTLS || m.MailOptions.EnvelopeID != "env-1" {
		t.Errorf("MAIL recorded as %q %+v", m.From, m.MailOptions)
	}
	var rcpts []string
	for _, r := range m.Rcpts {
		rcpts = append(rcpts, r.To)
		if !slices.Equal(r.Options.Notify, []smtp.DSNNotify{smtp.DSNNotifyFailure}) {
			t.Errorf("RCPT %s NOTIFY = %v", r.To, r.Options.Notify)
		}
	}
	if !slices.Equal(rcpts, []string{"bob@example.test", "carol@example.test"}) {
		t.Errorf("recipients = %v", rcpts)
	}
	if string(m.Data) != body {
		t.Errorf("body = %q, want %q", m.Data, body)
	}
	if !m.Accepted || m.Dropped || m.EHLO != "client.test" {
		t.Errorf("Accepted=%v Dropped=%v EHLO=%q", m.Accepted, m.Dropped, m.EHLO)
	}
	if m.TLS == nil {
		t.Fatalf("message recorded without TLS")
	}
	if m.TLS.Version != tls.VersionTLS13 || m.TLS.ServerName != mxName || m.TLS.CipherSuite == 0 || m.TLS.PeerCertificates != nil {
		t.Errorf("TLS = %+v", *m.TLS)
	}

	conns := mx.Conns()
	if len(conns) != 1 || mx.Connections() != 1 {
		t.Fatalf("%d connections recorded", len(conns))
	}
	if want := []string{"localhost", "client.test"}; !slices.Equal(conns[0].EHLO, want) {
		t.Errorf("EHLO names = %v, want %v", conns[0].EHLO, want)
	}
	if !slices.Equal(mx.EHLONames(), conns[0].EHLO) {
		t.Errorf("EHLONames() = %v", mx.EHLONames())
	}
	if !slices.Contains(conns[0].Commands, "STARTTLS") || !mx.SawMailFrom() {
		t.Errorf("commands = %q", conns[0].Commands)
	}
}

func TestEHLOAdvertisement(t *testing.T) {
	tests := []struct {
		name     string
		opts     upstreamtest.MXOptions
		withCert bool
		afterTLS bool
		want     map[string]string // keyword -> argument
		notWant  []string
	}{
		{
			name:    "no certificate offers no STARTTLS",
			want:    map[string]string{"PIPELINING": "", "SIZE": ""},
			notWant: []string{"STARTTLS", "REQUIRETLS", "AUTH", "DSN", "SMTPUTF8"},
		},
		{
			name: "certificate offers STARTTLS", withCert: true,
			opts:    upstreamtest.MXOptions{Extensions: upstreamtest.Extensions{REQUIRETLS: true}},
			want:    map[string]string{"STARTTLS": ""},
			notWant: []string{"REQUIRETLS"},
		},
		{
			name: "after TLS: REQUIRETLS, no STARTTLS", withCert: true, afterTLS: true,
			opts:    upstreamtest.MXOptions{Extensions: upstreamtest.Extensions{REQUIRETLS: true}},
			want:    map[string]string{"REQUIRETLS": ""},
			notWant: []string{"STARTTLS"},
		},
		{
			name: "extensions and size limit",
			opts: upstreamtest.MXOptions{Extensions: upstreamtest.Extensions{DSN: true, SMTPUTF8: true, Size: 1000}},
			want: map[string]string{"DSN": "", "SMTPUTF8": "", "SIZE": "1000"},
		},
		{
			name: "hidden keywords", withCert: true,
			opts:    upstreamtest.MXOptions{Extensions: upstreamtest.Extensions{Hide: []string{"size", "CHUNKING", "STARTTLS"}}},
			want:    map[string]string{"PIPELINING": ""},
			notWant: []string{"SIZE", "CHUNKING", "STARTTLS"},
		},
		{
			name: "AUTH hidden before TLS", withCert: true,
			opts:    upstreamtest.MXOptions{AuthUsers: map[string]string{"u": "p"}},
			notWant: []string{"AUTH"},
		},
		{
			name: "AUTH PLAIN after TLS", withCert: true, afterTLS: true,
			opts: upstreamtest.MXOptions{AuthUsers: map[string]string{"u": "p"}},
			want: map[string]string{"AUTH": "PLAIN"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var mx *upstreamtest.MX
			var ca *certstest.CA
			if tc.withCert {
				mx, ca = tlsMX(t, tc.opts)
			} else {
				mx = upstreamtest.NewMX(t, tc.opts)
			}
			c := dialRaw(t, mx.Addr())
			c.expect(220)
			caps := c.ehlo("client.test")
			if tc.afterTLS {
				if err := c.startTLS(clientTLS(ca)); err != nil {
					t.Fatal(err)
				}
				caps = c.ehlo("client.test")
			}
			for kw, arg := range tc.want {
				if got, ok := caps[kw]; !ok || got != arg {
					t.Errorf("capability %s = %q (present %v), want %q; all: %v", kw, got, ok, arg, caps)
				}
			}
			for _, kw := range tc.notWant {
				if _, ok := caps[kw]; ok {
					t.Errorf("capability %s advertised; all: %v", kw, caps)
				}
			}
		})
	}
}

func TestFaults(t *testing.T) {
	rej := func(code int, ec smtp.EnhancedCode, msg string) *smtp.SMTPError {
		return &smtp.SMTPError{Code: code, EnhancedCode: ec, Message: msg}
	}
	type step struct {
		line string // "" reads the greeting
		code int
		text string // substring of the reply text
	}
	tests := []struct {
		name        string
		opts        upstreamtest.MXOptions
		withCert    bool
		steps       []step
		closedAfter bool
		sawMail     bool
	}{
		{
			name:        "greeting refused",
			opts:        upstreamtest.MXOptions{GreetingReply: rej(554, smtp.EnhancedCode{5, 3, 2}, "no service here")},
			steps:       []step{{code: 554, text: "5.3.2 no service here"}},
			closedAfter: true,
		},
		{
			name: "EHLO refused",
			opts: upstreamtest.MXOptions{EHLOReply: rej(421, smtp.EnhancedCode{4, 3, 2}, "go away")},
			steps: []step{
				{code: 220},
				{line: "EHLO client.test", code: 421, text: "4.3.2 go away"},
				{line: "HELO client.test", code: 421},
			},
		},
		{
			name:     "STARTTLS refused with 454",
			withCert: true,
			opts:     upstreamtest.MXOptions{STARTTLSReply: rej(454, smtp.EnhancedCode{4, 7, 0}, "TLS not available now")},
			steps: []step{
				{code: 220},
				{line: "EHLO client.test", code: 250, text: "STARTTLS"},
				{line: "STARTTLS", code: 454, text: "4.7.0 TLS not available now"},
				{line: "NOOP", code: 250},
			},
		},
		{
			name: "STARTTLS without a certificate",
			steps: []step{
				{code: 220},
				{line: "EHLO client.test", code: 250},
				{line: "STARTTLS", code: 502, text: "5.5.1"},
			},
		},
		{
			name: "MAIL refused",
			opts: upstreamtest.MXOptions{MailReply: rej(451, smtp.EnhancedCode{4, 3, 0}, "try later")},
			steps: []step{
				{code: 220},
				{line: "EHLO client.test", code: 250},
				{line: "MAIL FROM:<a@sender.test>", code: 451, text: "4.3.0 try later"},
			},
			sawMail: true,
		},
		{
			name: "one recipient refused",
			opts: upstreamtest.MXOptions{RejectRcpt: map[string]*smtp.SMTPError{
				"Nobody@Example.test": rej(550, smtp.EnhancedCode{5, 1, 1}, "no such user"),
			}},
			steps: []step{
				{code: 220},
				{line: "EHLO client.test", code: 250},
				{line: "MAIL FROM:<a@sender.test>", code: 250},
				{line: "RCPT TO:<nobody@example.test>", code: 550, text: "5.1.1 no such user"},
				{line: "RCPT TO:<bob@example.test>", code: 250},
			},
			sawMail: true,
		},
		{
			name: "every recipient refused",
			opts: upstreamtest.MXOptions{RcptReply: rej(452, smtp.EnhancedCode{4, 2, 2}, "mailbox full")},
			steps: []step{
				{code: 220},
				{line: "EHLO client.test", code: 250},
				{line: "MAIL FROM:<a@sender.test>", code: 250},
				{line: "RCPT TO:<bob@example.test>", code: 452, text: "4.2.2 mailbox full"},
			},
			sawMail: true,
		},
		{
			name: "multi-line reply without enhanced code",
			opts: upstreamtest.MXOptions{MailReply: rej(550, smtp.NoEnhancedCode, "first\nsecond")},
			steps: []step{
				{code: 220},
				{line: "EHLO client.test", code: 250},
				{line: "MAIL FROM:<a@sender.test>", code: 550, text: "first\nsecond"},
			},
			sawMail: true,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var mx *upstreamtest.MX
			if tc.withCert {
				mx, _ = tlsMX(t, tc.opts)
			} else {
				mx = upstreamtest.NewMX(t, tc.opts)
			}
			c := dialRaw(t, mx.Addr())
			for _, s := range tc.steps {
				var code int
				var text string
				if s.line == "" {
					code, text, _ = c.reply()
				} else {
					code, text = c.cmd(s.line)
				}
				if code != s.code || !strings.Contains(text, s.text) {
					t.Fatalf("%q: reply %d %q, want %d containing %q", s.line, code, text, s.code, s.text)
				}
			}
			if got := c.closed(); got != tc.closedAfter {
				t.Errorf("connection closed = %v, want %v", got, tc.closedAfter)
			}
			if got := mx.SawMailFrom(); got != tc.sawMail {
				t.Errorf("SawMailFrom = %v, want %v", got, tc.sawMail)
			}
		})
	}
}

func TestDataReply(t *testing.T) {
	mx := upstreamtest.NewMX(t, upstreamtest.MXOptions{
		DataReply: &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 7, 1}, Message: "spam"},
	})
	c := dialRaw(t, mx.Addr())
	c.expect(220)
	c.ehlo("client.test")
	c.expectCmd("MAIL FROM:<a@sender.test>", 250)
	c.expectCmd("RCPT TO:<b@example.test>", 250)
	code, msg, err := c.data("Subject: x\r\n\r\nSTARTTLS\r\nbody\r\n")
	if err != nil || code != 554 || msg != "5.7.1 spam" {
		t.Fatalf("end of DATA: %d %q %v, want 554 5.7.1 spam", code, msg, err)
	}
	// The session goes on after a rejected body.
	c.expectCmd("NOOP", 250)
	msgs := mx.Messages()
	if len(msgs) != 1 || msgs[0].Accepted || msgs[0].Dropped || msgs[0].TLS != nil {
		t.Fatalf("messages = %+v", msgs)
	}
	if string(msgs[0].Data) != "Subject: x\r\n\r\nSTARTTLS\r\nbody\r\n" {
		t.Errorf("body = %q", msgs[0].Data)
	}
	if slices.Contains(mx.Commands(), "STARTTLS") {
		t.Errorf("a body line was taken for a command: %q", mx.Commands())
	}
}

func TestDropInData(t *testing.T) {
	mx, ca := tlsMX(t, upstreamtest.MXOptions{DropInData: 100})
	c := dialRaw(t, mx.Addr())
	c.expect(220)
	c.ehlo("client.test")
	if err := c.startTLS(clientTLS(ca)); err != nil {
		t.Fatal(err)
	}
	c.ehlo("client.test")
	c.expectCmd("MAIL FROM:<a@sender.test>", 250)
	c.expectCmd("RCPT TO:<b@example.test>", 250)
	body := strings.Repeat("0123456789abcdefghi\r\n", 20) // 420 bytes
	code, msg, err := c.data(body)
	if err == nil {
		t.Fatalf("got reply %d %q after the drop, want a closed connection", code, msg)
	}
	msgs := mx.Messages()
	if len(msgs) != 1 || !msgs[0].Dropped || msgs[0].Accepted {
		t.Fatalf("messages = %+v, want one dropped", msgs)
	}
	if got := string(msgs[0].Data); len(got) == 0 || len(got) > 100 || !strings.HasPrefix(body, got) {
		t.Errorf("partial body = %q, want a prefix of at most 100 bytes", got)
	}
	if conns := mx.Conns(); !conns[0].Dropped || conns[0].TLS == nil {
		t.Errorf("connection record = %+v", conns[0])
	}
}

func TestDelay(t *testing.T) {
	const d = 150 * time.Millisecond
	mx := upstreamtest.NewMX(t, upstreamtest.MXOptions{Delay: map[upstreamtest.Stage]time.Duration{upstreamtest.StageRcpt: d}})
	c := dialRaw(t, mx.Addr())
	c.expect(220)
	c.ehlo("client.test")
	start := time.Now()
	c.expectCmd("MAIL FROM:<a@sender.test>", 250)
	if el := time.Since(start); el >= d {
		t.Errorf("MAIL took %v, want no delay", el)
	}
	start = time.Now()
	c.expectCmd("RCPT TO:<b@example.test>", 250)
	if el := time.Since(start); el < d {
		t.Errorf("RCPT took %v, want at least %v", el, d)
	}
}

func TestCloseWaitsForHandlers(t *testing.T) {
	mx := upstreamtest.NewMX(t, upstreamtest.MXOptions{
		Delay: map[upstreamtest.Stage]time.Duration{upstreamtest.StageMail: time.Minute},
	})
	c := dialRaw(t, mx.Addr())
	c.expect(220)
	c.ehlo("client.test")
	if err := c.text.PrintfLine("MAIL FROM:<a@sender.test>"); err != nil {
		t.Fatal(err)
	}
	// Let the handler reach the delay.
	for !mx.SawMailFrom() {
		time.Sleep(5 * time.Millisecond)
	}
	start := time.Now()
	mx.Close()
	if el := time.Since(start); el > 5*time.Second {
		t.Errorf("Close took %v", el)
	}
	if leaked := upstreamtest.WaitLeaked(time.Second, "sealgate/upstream/upstreamtest.", "emersion/go-smtp.(*Server)"); leaked != "" {
		t.Errorf("goroutines still running after Close:\n%s", leaked)
	}
	if !c.closed() {
		t.Errorf("client connection still open after Close")
	}
	mx.Close() // idempotent
}

func TestStageString(t *testing.T) {
	tests := []struct {
		stage upstreamtest.Stage
		want  string
	}{
		{upstreamtest.StageGreeting, "greeting"},
		{upstreamtest.StageData, "DATA"},
		{upstreamtest.Stage(42), "unknown(42)"},
	}
	for _, tc := range tests {
		if got := tc.stage.String(); got != tc.want {
			t.Errorf("Stage(%d).String() = %q, want %q", int(tc.stage), got, tc.want)
		}
	}
}

func TestBDAT(t *testing.T) {
	mx := upstreamtest.NewMX(t, upstreamtest.MXOptions{})
	c := dialRaw(t, mx.Addr())
	if greet := c.expect(220); !strings.HasPrefix(greet, "mx.test ") {
		t.Errorf("greeting %q does not start with the host name", greet)
	}
	code, msg := c.cmd("EHLO client.test")
	if code != 250 || !strings.HasPrefix(msg, "mx.test Hello client.test\n") || !strings.Contains(msg, "\nCHUNKING") {
		t.Fatalf("EHLO: %d %q, want the host name first and CHUNKING", code, msg)
	}
	c.expectCmd("MAIL FROM:<a@sender.test>", 250)
	c.expectCmd("RCPT TO:<b@example.test>", 250)
	chunks := []string{"STARTTLS\r\n", "QUIT\r\n.\r\nend\r\n"}
	for i, ch := range chunks {
		last := ""
		if i == len(chunks)-1 {
			last = " LAST"
		}
		if _, err := fmt.Fprintf(c.conn, "BDAT %d%s\r\n%s", len(ch), last, ch); err != nil {
			t.Fatal(err)
		}
		c.expect(250)
	}
	c.expectCmd("NOOP", 250)
	msgs := mx.Messages()
	if len(msgs) != 1 || string(msgs[0].Data) != strings.Join(chunks, "") || !msgs[0].Accepted {
		t.Fatalf("messages = %+v", msgs)
	}
	if cmds := mx.Commands(); slices.Contains(cmds, "STARTTLS") || slices.Contains(cmds, "QUIT") {
		t.Errorf("chunk content taken for commands: %q", cmds)
	}
}

func TestOverlongLine(t *testing.T) {
	mx := upstreamtest.NewMX(t, upstreamtest.MXOptions{})
	c := dialRaw(t, mx.Addr())
	c.expect(220)
	// go-smtp answers 500 and hangs up once 2000 bytes passed without an
	// end of line; the rest of the write may meet a reset.
	_, _ = fmt.Fprintf(c.conn, "NOOP %s\r\n", strings.Repeat("x", 3000))
	if code, msg, err := c.reply(); err == nil && code != 500 {
		t.Fatalf("over-long line: %d %q, want 500", code, msg)
	}
	if !c.closed() {
		t.Errorf("connection still open after an over-long line")
	}
}
