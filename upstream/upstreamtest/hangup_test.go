package upstreamtest_test

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"sealgate/upstream/upstreamtest"
)

// conversation runs one transaction over STARTTLS step by step and returns
// the stage at which the connection broke (-1 when it did not) and the
// code of the final reply.
func conversation(t *testing.T, c *rawClient, cfg *tls.Config) (upstreamtest.Stage, int) {
	t.Helper()
	send := func(line string) (int, error) {
		if err := c.text.PrintfLine("%s", line); err != nil {
			return 0, err
		}
		code, _, err := c.reply()
		return code, err
	}
	if _, _, err := c.reply(); err != nil {
		return upstreamtest.StageGreeting, 0
	}
	if _, err := send("EHLO client.test"); err != nil {
		return upstreamtest.StageEHLO, 0
	}
	if _, err := send("STARTTLS"); err != nil {
		return upstreamtest.StageSTARTTLS, 0
	}
	tc := tls.Client(c.conn, cfg)
	if err := tc.Handshake(); err != nil {
		return upstreamtest.StageHandshake, 0
	}
	c.conn = tc
	c.text.Reader.R.Reset(tc)
	c.text.Writer.W.Reset(tc)
	steps := []struct {
		stage upstreamtest.Stage
		line  string
	}{
		{upstreamtest.StageEHLO, "EHLO client.test"},
		{upstreamtest.StageMail, "MAIL FROM:<a@sender.test>"},
		{upstreamtest.StageRcpt, "RCPT TO:<b@example.test>"},
		{upstreamtest.StageDataCommand, "DATA"},
	}
	for _, s := range steps {
		code, err := send(s.line)
		if err != nil {
			return s.stage, 0
		}
		if code >= 400 {
			return -1, code
		}
	}
	w := c.text.DotWriter()
	if _, err := io.WriteString(w, "Subject: x\r\n\r\nbody\r\n"); err != nil {
		return upstreamtest.StageData, 0
	}
	if err := w.Close(); err != nil {
		return upstreamtest.StageData, 0
	}
	code, _, err := c.reply()
	if err != nil {
		return upstreamtest.StageData, 0
	}
	return -1, code
}

func TestHangup(t *testing.T) {
	stages := []upstreamtest.Stage{
		upstreamtest.StageGreeting, upstreamtest.StageEHLO, upstreamtest.StageSTARTTLS,
		upstreamtest.StageHandshake, upstreamtest.StageMail, upstreamtest.StageRcpt,
		upstreamtest.StageDataCommand, upstreamtest.StageData,
	}
	for _, stage := range stages {
		t.Run(stage.String(), func(t *testing.T) {
			mx, ca := tlsMX(t, upstreamtest.MXOptions{Hangup: map[upstreamtest.Stage]bool{stage: true}})
			c := dialRaw(t, mx.Addr())
			broke, code := conversation(t, c, clientTLS(ca))
			if broke != stage {
				t.Fatalf("connection broke at %v (final reply %d), want at %v", broke, code, stage)
			}
			c.conn.Close()
			mx.WaitIdle(5 * time.Second)
			conns := mx.Conns()
			if len(conns) != 1 || conns[0].HungUp != stage.String() {
				t.Fatalf("HungUp recorded as %+v, want %q", conns, stage.String())
			}
			msgs := mx.Messages()
			if stage == upstreamtest.StageData {
				if len(msgs) != 1 || msgs[0].Accepted || msgs[0].Dropped {
					t.Fatalf("messages %+v, want one recorded, neither accepted nor dropped", msgs)
				}
			} else if len(msgs) != 0 {
				t.Fatalf("messages %+v, want none", msgs)
			}
			if mx.SawCleartextTransaction() {
				t.Error("a transaction command is recorded as cleartext")
			}
		})
	}
}

func TestHangupWithoutFaultCompletes(t *testing.T) {
	var hooked []upstreamtest.Message
	mx, ca := tlsMX(t, upstreamtest.MXOptions{BeforeDataReply: func(m upstreamtest.Message) { hooked = append(hooked, m) }})
	c := dialRaw(t, mx.Addr())
	if broke, code := conversation(t, c, clientTLS(ca)); broke != -1 || code != 250 {
		t.Fatalf("broke at %v, final reply %d; want a 250", broke, code)
	}
	c.conn.Close()
	mx.WaitIdle(5 * time.Second)
	if len(hooked) != 1 || !hooked[0].Accepted {
		t.Fatalf("BeforeDataReply saw %+v, want the accepted message", hooked)
	}
	conns := mx.Conns()
	if want := int64(len("Subject: x\r\n\r\nbody\r\n")); conns[0].BodyBytes != want {
		t.Errorf("BodyBytes %d, want %d", conns[0].BodyBytes, want)
	}
	if got := strings.Join(conns[0].Cleartext, "|"); got != "EHLO client.test|STARTTLS" {
		t.Errorf("Cleartext %q, want EHLO and STARTTLS only", got)
	}
}

func TestCloseOn421(t *testing.T) {
	r421 := &smtp.SMTPError{Code: 421, EnhancedCode: smtp.EnhancedCode{4, 3, 2}, Message: "shutting down"}
	tests := []struct {
		name string
		opts upstreamtest.MXOptions
	}{
		{name: "RCPT", opts: upstreamtest.MXOptions{RcptReply: r421, CloseOn421: true}},
		{name: "DATA command", opts: upstreamtest.MXOptions{DataCommandReply: r421, CloseOn421: true}},
		{name: "final reply", opts: upstreamtest.MXOptions{DataReply: r421, CloseOn421: true}},
		{name: "DATA command, connection kept", opts: upstreamtest.MXOptions{DataCommandReply: r421}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			mx, ca := tlsMX(t, tc.opts)
			c := dialRaw(t, mx.Addr())
			if broke, code := conversation(t, c, clientTLS(ca)); broke != -1 || code != 421 {
				t.Fatalf("broke at %v, reply %d; want a 421 reply", broke, code)
			}
			if got, want := c.closed(), tc.opts.CloseOn421; got != want {
				t.Errorf("connection closed after 421: %v, want %v", got, want)
			}
			for _, m := range mx.Messages() {
				if m.Accepted {
					t.Errorf("message accepted after a 421: %+v", m)
				}
			}
		})
	}
}

func TestDropInDataReply(t *testing.T) {
	mx, ca := tlsMX(t, upstreamtest.MXOptions{
		DropInData:      10,
		DropInDataReply: &smtp.SMTPError{Code: 421, EnhancedCode: smtp.EnhancedCode{4, 4, 2}, Message: "timeout"},
	})
	c := dialRaw(t, mx.Addr())
	if err := c.startTLSAfterGreeting(clientTLS(ca)); err != nil {
		t.Fatal(err)
	}
	c.ehlo("client.test")
	c.expectCmd("MAIL FROM:<a@sender.test>", 250)
	c.expectCmd("RCPT TO:<b@example.test>", 250)
	c.expectCmd("DATA", 354)
	if err := c.text.PrintfLine("Subject: a body longer than ten bytes"); err != nil {
		t.Fatal(err)
	}
	code, msg, err := c.reply()
	if err != nil || code != 421 || !strings.Contains(msg, "timeout") {
		t.Fatalf("reply %d %q %v, want the 421 before the drop", code, msg, err)
	}
	if !c.closed() {
		t.Fatal("connection still open after the drop")
	}
	mx.WaitIdle(5 * time.Second)
	if m := mx.Messages(); len(m) != 1 || !m[0].Dropped || m[0].Accepted {
		t.Fatalf("messages %+v, want one dropped", m)
	}
}

func TestNewStageNames(t *testing.T) {
	for stage, want := range map[upstreamtest.Stage]string{
		upstreamtest.StageHandshake:   "TLS handshake",
		upstreamtest.StageDataCommand: "DATA command",
	} {
		if got := stage.String(); got != want {
			t.Errorf("Stage(%d).String() = %q, want %q", int(stage), got, want)
		}
	}
}

func TestSawCleartextTransaction(t *testing.T) {
	mx := upstreamtest.NewMX(t, upstreamtest.MXOptions{})
	c := dialRaw(t, mx.Addr())
	c.expect(220)
	c.ehlo("client.test")
	c.expectCmd("MAIL FROM:<a@sender.test>", 250)
	c.conn.Close()
	mx.WaitIdle(5 * time.Second)
	if !mx.SawCleartextTransaction() {
		t.Fatal("MAIL FROM over cleartext not reported")
	}
}

// startTLSAfterGreeting reads the greeting, says EHLO and upgrades.
func (c *rawClient) startTLSAfterGreeting(cfg *tls.Config) error {
	c.t.Helper()
	if _, _, err := c.reply(); err != nil {
		return fmt.Errorf("greeting: %w", err)
	}
	c.ehlo("client.test")
	if err := c.startTLS(cfg); err != nil {
		return errors.Join(errors.New("STARTTLS"), err)
	}
	return nil
}
