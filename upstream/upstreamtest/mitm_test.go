package upstreamtest_test

import (
	"bytes"
	"net"
	"strings"
	"testing"

	"github.com/emersion/go-smtp"

	"sealgate/upstream/upstreamtest"
)

func TestSTRIPTLS(t *testing.T) {
	mx, _ := tlsMX(t, upstreamtest.MXOptions{Extensions: upstreamtest.Extensions{DSN: true}})
	m := upstreamtest.NewSTRIPTLS(t, mx.Addr(), "")

	c := dialRaw(t, m.Addr())
	c.expect(220)
	caps := c.ehlo("client.test")
	if _, ok := caps["STARTTLS"]; ok {
		t.Errorf("STARTTLS still advertised through the MITM: %v", caps)
	}
	for _, kw := range []string{"PIPELINING", "DSN", "SIZE"} {
		if _, ok := caps[kw]; !ok {
			t.Errorf("capability %s lost: %v", kw, caps)
		}
	}
	if code, msg := c.cmd("STARTTLS"); code != 502 || !strings.HasPrefix(msg, "5.5.1") {
		t.Errorf("STARTTLS through the MITM: %d %q, want 502 5.5.1", code, msg)
	}
	c.expectCmd("QUIT", 221)

	if m.Stripped() != 1 || m.STARTTLSRefused() != 1 || m.Connections() != 1 {
		t.Errorf("Stripped=%d STARTTLSRefused=%d Connections=%d, want 1 each", m.Stripped(), m.STARTTLSRefused(), m.Connections())
	}
	sent := m.ClientBytes()
	if !containsLine(sent, "STARTTLS") || !containsLine(sent, "EHLO CLIENT.TEST") {
		t.Errorf("client bytes = %q", sent)
	}
	if containsLine(sent, "MAIL") || mx.SawMailFrom() {
		t.Errorf("MAIL FROM seen")
	}
	for _, l := range mx.Commands() {
		if strings.EqualFold(l, "STARTTLS") {
			t.Errorf("the MITM forwarded STARTTLS to the MX")
		}
	}
}

// A client that does not insist on TLS goes on in cleartext; the MITM sees
// it all and passes the body untouched, even a line that reads STARTTLS.
func TestSTRIPTLSCleartextDelivery(t *testing.T) {
	mx, _ := tlsMX(t, upstreamtest.MXOptions{})
	m := upstreamtest.NewSTRIPTLS(t, mx.Addr(), "127.0.0.1:0")

	conn, err := net.Dial("tcp", m.Addr())
	if err != nil {
		t.Fatal(err)
	}
	c := smtp.NewClient(conn)
	defer c.Close()
	if err := c.Hello("client.test"); err != nil {
		t.Fatal(err)
	}
	if ok, _ := c.Extension("STARTTLS"); ok {
		t.Fatalf("STARTTLS advertised through the MITM")
	}
	body := "STARTTLS\r\nSubject: x\r\n\r\nSTARTTLS\r\n.\r\nend\r\n"
	if err := c.SendMail("a@sender.test", []string{"b@example.test"}, strings.NewReader(body)); err != nil {
		t.Fatalf("SendMail: %v", err)
	}
	if err := c.Quit(); err != nil {
		t.Fatal(err)
	}
	msgs := mx.Messages()
	if len(msgs) != 1 || string(msgs[0].Data) != body || msgs[0].TLS != nil {
		t.Fatalf("messages = %+v", msgs)
	}
	if m.STARTTLSRefused() != 0 {
		t.Errorf("a body line was answered as STARTTLS")
	}
	if sent := m.ClientBytes(); !bytes.Contains(sent, []byte("MAIL FROM:<a@sender.test>")) || !bytes.Contains(sent, []byte("\r\n..\r\nend")) {
		t.Errorf("client bytes not recorded: %q", sent)
	}
}

func TestMITMVariants(t *testing.T) {
	tests := []struct {
		name      string
		opts      upstreamtest.MXOptions
		mitm      upstreamtest.MITMOptions
		wantCaps  bool // STARTTLS still advertised
		wantCode  int
		wantGreet int
	}{
		{
			name:      "forged 454 keeps the advertisement",
			mitm:      upstreamtest.MITMOptions{KeepSTARTTLS: true, STARTTLSReply: &smtp.SMTPError{Code: 454, EnhancedCode: smtp.EnhancedCode{4, 7, 0}, Message: "later"}},
			wantCaps:  true,
			wantCode:  454,
			wantGreet: 220,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			mx, _ := tlsMX(t, tc.opts)
			tc.mitm.Upstream = mx.Addr()
			m := upstreamtest.NewMITM(t, tc.mitm)
			c := dialRaw(t, m.Addr())
			c.expect(tc.wantGreet)
			caps := c.ehlo("client.test")
			if _, ok := caps["STARTTLS"]; ok != tc.wantCaps {
				t.Errorf("STARTTLS advertised = %v, want %v", ok, tc.wantCaps)
			}
			if code, _ := c.cmd("STARTTLS"); code != tc.wantCode {
				t.Errorf("STARTTLS: %d, want %d", code, tc.wantCode)
			}
		})
	}

	t.Run("upstream unreachable", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := ln.Addr().String()
		ln.Close()
		m := upstreamtest.NewSTRIPTLS(t, addr, "")
		c := dialRaw(t, m.Addr())
		c.expect(421)
	})
}
