package postfix_test

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/emersion/go-smtp"

	"sealgate/certs/certstest"
	"sealgate/e2e/postfix"
)

// mxIP hands out loopback addresses 127.2.0.x for MX instances of this
// package's tests, each listening on a port of its own.
var mxIP atomic.Int32

// freePort returns a port the kernel assigned (and released) on ip.
func freePort(t *testing.T, ip string) string {
	t.Helper()
	l, err := net.Listen("tcp", ip+":0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func startMX(t *testing.T, mx postfix.MXOptions) *postfix.Instance {
	t.Helper()
	ip := fmt.Sprintf("127.2.0.%d", mxIP.Add(1))
	return postfix.Start(t, postfix.Options{SMTPListen: freePort(t, ip), MyHostname: "mx.dest.test", MX: &mx})
}

// submit sends one message to the MX as an MTA would, with STARTTLS when
// tlsConfig is set, and returns the RCPT replies and the final reply.
func submit(t *testing.T, addr string, tlsConfig *tls.Config, rcpts []string, body string) (rcptErrs []error, dataErr error) {
	t.Helper()
	var c *smtp.Client
	var err error
	if tlsConfig != nil {
		c, err = smtp.DialStartTLS(addr, tlsConfig)
	} else {
		c, err = smtp.Dial(addr)
	}
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Hello("client.sender.test"); err != nil {
		t.Fatal(err)
	}
	if err := c.Mail("alice@sender.test", nil); err != nil {
		t.Fatal(err)
	}
	for _, r := range rcpts {
		rcptErrs = append(rcptErrs, c.Rcpt(r, nil))
	}
	w, err := c.Data()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write([]byte(body)); err != nil {
		t.Fatal(err)
	}
	dataErr = w.Close()
	if err := c.Quit(); err != nil {
		t.Error(err)
	}
	return rcptErrs, dataErr
}

func TestMXHoldsWhatItAccepts(t *testing.T) {
	t.Parallel()
	cert := certstest.SelfSigned(t, "mx.dest.test")
	pf := startMX(t, postfix.MXOptions{
		Domains:     []string{"dest.test"},
		Certificate: &cert,
		RejectRcpt:  map[string]string{"nobody@dest.test": "550 5.1.1 User unknown"},
	})
	body := "Received: from a by b; Thu, 1 Jan 2026 00:00:00 +0000\r\nSubject: to the MX\r\n\r\nfirst\r\n..dot\r\nlast\r\n"
	var seen tls.ConnectionState
	rcptErrs, dataErr := submit(t, pf.SMTPAddr(), &tls.Config{InsecureSkipVerify: true, VerifyConnection: func(cs tls.ConnectionState) error {
		seen = cs
		return nil
	}}, []string{"bob@dest.test", "nobody@dest.test", "x@elsewhere.test"}, body)
	if dataErr != nil || rcptErrs[0] != nil {
		t.Fatalf("RCPT bob: %v, DATA: %v", rcptErrs[0], dataErr)
	}
	var se *smtp.SMTPError
	if !errors.As(rcptErrs[1], &se) || se.Code != 550 || se.EnhancedCode != (smtp.EnhancedCode{5, 1, 1}) ||
		se.Message != "<nobody@dest.test>: Recipient address rejected: User unknown" {
		t.Errorf("RCPT nobody: %v", rcptErrs[1])
	}
	if !errors.As(rcptErrs[2], &se) || se.Code != 554 {
		t.Errorf("RCPT to another domain: %v, want 554 (relay denied)", rcptErrs[2])
	}
	if len(seen.PeerCertificates) == 0 || !seen.PeerCertificates[0].Equal(cert.Leaf) {
		t.Error("smtpd did not present the MX certificate")
	}
	held, err := pf.WaitHeld(1, waitTimeout)
	if err != nil {
		t.Fatal(err)
	}
	if len(held) != 1 || held[0].Sender != "alice@sender.test" || !slices.Equal(held[0].Recipients, []string{"bob@dest.test"}) {
		t.Fatalf("held %+v", held)
	}
	// smtpd's Received header, then the message as sent.
	ours, rest, ok := strings.Cut(string(held[0].Data), "\nReceived: from a by b;")
	if !ok || !strings.HasPrefix(ours, "Received: from client.sender.test") || !strings.Contains(ours, "by mx.dest.test (Postfix) with ESMTPS") {
		t.Errorf("held message does not start with smtpd's Received header:\n%s", held[0].Data)
	}
	if got, want := "Received: from a by b;"+rest, strings.ReplaceAll(body, "\r\n", "\n"); got != want {
		t.Errorf("held message after smtpd's Received:\n%q\nwant\n%q", got, want)
	}
}

func TestMXWithoutSTARTTLS(t *testing.T) {
	t.Parallel()
	pf := startMX(t, postfix.MXOptions{Domains: []string{"dest.test"}})
	c, err := smtp.Dial(pf.SMTPAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Hello("client.sender.test"); err != nil {
		t.Fatal(err)
	}
	if ok, _ := c.Extension("STARTTLS"); ok {
		t.Error("STARTTLS offered without a certificate")
	}
	if err := c.Quit(); err != nil {
		t.Error(err)
	}
	if err := pf.WaitLog("disconnect from", waitTimeout); err != nil {
		t.Fatal(err)
	}
}
