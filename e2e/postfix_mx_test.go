package e2e

import (
	"fmt"
	"net"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"sealgate/certs/certstest"
	"sealgate/e2e/postfix"
)

// postfixWait bounds the wait for a real Postfix to record what it saw.
const postfixWait = 15 * time.Second

// postfixMX starts a private Postfix as the MX of domain, host mxName
// (preference 10), on a fresh loopback address and the world's MX port.
// mx.Domains defaults to domain.
func (w *world) postfixMX(domain, mxName string, mx postfix.MXOptions) *postfix.Instance {
	w.t.Helper()
	ip := w.host(mxName)
	w.dns.Add(fmt.Sprintf("%s. 300 IN MX 10 %s.", domain, mxName))
	if mx.Domains == nil {
		mx.Domains = []string{domain}
	}
	return postfix.Start(w.t, postfix.Options{
		SMTPListen: net.JoinHostPort(ip, fmt.Sprint(w.port)),
		MyHostname: mxName,
		MX:         &mx,
	})
}

// mxMessage is a message whose body holds lines a relay could damage.
func mxMessage(to, subject string) []byte {
	return []byte("From: a@legacy.sealgate.test\r\nTo: " + to + "\r\nSubject: " + subject +
		"\r\nMessage-ID: <" + subject + "@legacy.sealgate.test>\r\n\r\nfirst line\r\n.\r\n..two dots\r\nGrüße\r\n")
}

// checkHeld checks that the Postfix MX holds exactly one message, from
// a@legacy.sealgate.test to rcpts, and that it is Postfix's Received
// header (a TLS hop from gw.sealgate.test), then ours, then body as sent.
func checkHeld(t *testing.T, pf *postfix.Instance, rcpts []string, body []byte) {
	t.Helper()
	held, err := pf.WaitHeld(1, postfixWait)
	if err != nil {
		t.Fatalf("Postfix holds no message: %v\n%s", err, pf.Log())
	}
	if len(held) != 1 {
		t.Fatalf("Postfix holds %d messages, want 1: %+v", len(held), held)
	}
	m := held[0]
	if m.Sender != "a@legacy.sealgate.test" || !slices.Equal(m.Recipients, rcpts) {
		t.Errorf("held envelope from=<%s> to=%q, want from=<a@legacy.sealgate.test> to=%q", m.Sender, m.Recipients, rcpts)
	}
	theirs, rest, ok := strings.Cut(string(m.Data), "\nReceived: from legacy.sealgate.test ")
	if !ok {
		t.Fatalf("held message has no Received header of ours after Postfix's:\n%s", m.Data)
	}
	if !strings.HasPrefix(theirs, "Received: from gw.sealgate.test ") || !strings.Contains(theirs, " with ESMTPS id ") {
		t.Errorf("Postfix's Received header does not record a TLS hop from sealgate:\n%s", theirs)
	}
	want := strings.ReplaceAll(string(body), "\r\n", "\n")
	head, _, _ := strings.Cut(want, "\n")
	ours, content, _ := strings.Cut(rest, "\n"+head+"\n")
	if !strings.Contains(ours, "by gw.sealgate.test (sealgate) with ESMTP") {
		t.Errorf("our Received header: %q", ours)
	}
	if got := head + "\n" + content; got != want {
		t.Errorf("held message after the Received headers:\n%q\nwant\n%q", got, want)
	}
}

// failedHandshake is what smtpd counts on a connection left at a TLS
// handshake that sealgate failed: EHLO and STARTTLS only.
const failedHandshake = "ehlo=1 starttls=0/1 commands=1/2"

// smtpdStats returns the command counts of the one finished smtpd session
// in the mail log ("disconnect from ... ehlo=1 quit=1 commands=2").
func smtpdStats(t *testing.T, pf *postfix.Instance) string {
	t.Helper()
	if err := pf.WaitLog("disconnect from", postfixWait); err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)disconnect from \S+ (.*)$`).FindAllStringSubmatch(pf.Log(), -1)
	if len(m) != 1 {
		t.Fatalf("%d smtpd sessions, want 1:\n%s", len(m), pf.Log())
	}
	return m[0][1]
}

// TestPostfixMXUnderTheFloor: under the floor (encrypt) sealgate delivers
// to a real Postfix with a self-signed certificate, and Postfix has the
// whole message with our Received header first.
func TestPostfixMXUnderTheFloor(t *testing.T) {
	w := newWorld(t)
	cert := certstest.SelfSigned(t, "mx.pf-floor.test")
	pf := w.postfixMX("pf-floor.test", "mx.pf-floor.test", postfix.MXOptions{Certificate: &cert})
	g := w.start(nil)
	body := mxMessage("bob@pf-floor.test", "floor")
	res := g.send("a@legacy.sealgate.test", []string{"bob@pf-floor.test"}, body)
	if res.Rcpt[0] != nil || res.Data != nil {
		t.Fatalf("RCPT %v, DATA %v", res.Rcpt[0], res.Data)
	}
	checkHeld(t, pf, []string{"bob@pf-floor.test"}, body)
	if !strings.Contains(pf.Log(), "TLS connection established from") {
		t.Errorf("Postfix logged no TLS session:\n%s", pf.Log())
	}
}

// TestPostfixMXVerify: under SEALGATE_MIN_TLS=verify a Postfix whose
// certificate the WebPKI CA issued for its MX name gets the message; one
// whose certificate names another host gets nothing, and the legacy
// client a 451 4.7.5.
func TestPostfixMXVerify(t *testing.T) {
	w := newWorld(t)
	good := w.postfixMX("pf-verify.test", "mx.pf-verify.test", postfix.MXOptions{Certificate: w.cert("mx.pf-verify.test")})
	bad := w.postfixMX("pf-misnamed.test", "mx.pf-misnamed.test", postfix.MXOptions{Certificate: w.cert("other.pf-misnamed.test")})
	g := w.start(map[string]string{"SEALGATE_MIN_TLS": "verify"})

	body := mxMessage("bob@pf-verify.test", "verify")
	res := g.send("a@legacy.sealgate.test", []string{"bob@pf-verify.test"}, body)
	if res.Rcpt[0] != nil || res.Data != nil {
		t.Fatalf("RCPT %v, DATA %v", res.Rcpt[0], res.Data)
	}
	checkHeld(t, good, []string{"bob@pf-verify.test"}, body)

	res = g.send("a@legacy.sealgate.test", []string{"bob@pf-misnamed.test"}, mxMessage("bob@pf-misnamed.test", "misnamed"))
	wantReply(t, "RCPT to the misnamed MX", res.Rcpt[0], 451, "4.7.5", "mx.pf-misnamed.test")
	// The handshake failed: no TLS session to send QUIT in, and no
	// cleartext command after STARTTLS.
	if stats := smtpdStats(t, bad); stats != failedHandshake {
		t.Errorf("Postfix as the misnamed MX counted %q, want %q", stats, failedHandshake)
	}
	if held, err := bad.Held(); err != nil || len(held) != 0 {
		t.Errorf("the misnamed MX holds %+v (%v)", held, err)
	}
}

// TestPostfixMXFingerprint: a local policy pins Postfix's certificate by
// its SHA-256 digest in Postfix's colon-hex form; the pinned MX gets the
// message, an MX with another certificate gets nothing.
func TestPostfixMXFingerprint(t *testing.T) {
	w := newWorld(t)
	pinned := certstest.SelfSigned(t, "mx.pf-pin.test")
	other := certstest.SelfSigned(t, "mx.pf-wrongpin.test")
	good := w.postfixMX("pf-pin.test", "mx.pf-pin.test", postfix.MXOptions{Certificate: &pinned})
	bad := w.postfixMX("pf-wrongpin.test", "mx.pf-wrongpin.test", postfix.MXOptions{Certificate: &other})
	pin := colonHex(certstest.CertSHA256(pinned.Leaf))
	policy := writePolicy(t,
		"pf-pin.test       fingerprint match="+pin,
		"pf-wrongpin.test  fingerprint match="+pin,
	)
	g := w.start(map[string]string{"SEALGATE_POLICY_FILE": policy})

	body := mxMessage("bob@pf-pin.test", "pin")
	res := g.send("a@legacy.sealgate.test", []string{"bob@pf-pin.test"}, body)
	if res.Rcpt[0] != nil || res.Data != nil {
		t.Fatalf("RCPT %v, DATA %v", res.Rcpt[0], res.Data)
	}
	checkHeld(t, good, []string{"bob@pf-pin.test"}, body)

	res = g.send("a@legacy.sealgate.test", []string{"bob@pf-wrongpin.test"}, mxMessage("bob@pf-wrongpin.test", "wrongpin"))
	wantReply(t, "RCPT to the MX with another certificate", res.Rcpt[0], 451, "4.7.5", "fingerprint")
	// The handshake failed: no TLS session to send QUIT in, and no
	// cleartext command after STARTTLS.
	if stats := smtpdStats(t, bad); stats != failedHandshake {
		t.Errorf("Postfix as the MX with another certificate counted %q, want %q", stats, failedHandshake)
	}
}

// TestPostfixMXWithoutSTARTTLS: a Postfix that offers no STARTTLS
// (smtpd_tls_security_level = none) sees EHLO and QUIT only, never MAIL,
// RCPT or DATA (RFC 3207 §4.1); the legacy client gets 451 4.7.4.
func TestPostfixMXWithoutSTARTTLS(t *testing.T) {
	w := newWorld(t)
	pf := w.postfixMX("pf-plain.test", "mx.pf-plain.test", postfix.MXOptions{})
	g := w.start(nil)
	res := g.send("a@legacy.sealgate.test", []string{"bob@pf-plain.test"}, mxMessage("bob@pf-plain.test", "plain"))
	wantReply(t, "RCPT to the MX without STARTTLS", res.Rcpt[0], 451, "4.7.4")
	if stats := smtpdStats(t, pf); stats != "ehlo=1 quit=1 commands=2" {
		t.Errorf("Postfix counted %q, want EHLO and QUIT only (ehlo=1 quit=1 commands=2)", stats)
	}
	if held, err := pf.Held(); err != nil || len(held) != 0 {
		t.Errorf("the MX without STARTTLS holds %+v (%v)", held, err)
	}
}

// TestPostfixMXRefusesOneRecipient: Postfix refuses one of two recipients
// with 550; the legacy client gets that reply verbatim for that RCPT and
// 250 for the message, which Postfix holds for the other recipient only.
func TestPostfixMXRefusesOneRecipient(t *testing.T) {
	w := newWorld(t)
	pf := w.postfixMX("pf-rcpt.test", "mx.pf-rcpt.test", postfix.MXOptions{
		Certificate: w.cert("mx.pf-rcpt.test"),
		RejectRcpt:  map[string]string{"nobody@pf-rcpt.test": "550 5.1.1 User unknown"},
	})
	g := w.start(nil)
	body := mxMessage("bob@pf-rcpt.test", "two-rcpts")
	res := g.send("a@legacy.sealgate.test", []string{"bob@pf-rcpt.test", "nobody@pf-rcpt.test"}, body)
	if res.Rcpt[0] != nil {
		t.Fatalf("RCPT bob: %v", res.Rcpt[0])
	}
	wantReply(t, "RCPT nobody", res.Rcpt[1], 550, "5.1.1", "<nobody@pf-rcpt.test>: Recipient address rejected: User unknown")
	if res.Data != nil {
		t.Fatalf("DATA: %v, want 250", res.Data)
	}
	checkHeld(t, pf, []string{"bob@pf-rcpt.test"}, body)
	g.stop() // Postfix logs its counts when the pooled connection ends
	if stats := smtpdStats(t, pf); !strings.Contains(stats, " rcpt=1/2 ") {
		t.Errorf("Postfix counted %q, want one of two RCPT accepted", stats)
	}
}
