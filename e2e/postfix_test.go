package e2e

import (
	"bytes"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
	"github.com/miekg/dns"

	"sealgate/e2e/postfix"
	"sealgate/upstream/upstreamtest"
)

// TestPostfixAsLegacyClient: a real Postfix with relayhost pointing at
// sealgate delivers a message submitted with its sendmail to the MX, over
// TLS; when the MX cannot be reached securely, the message stays in
// Postfix's queue and goes out on a later retry.
func TestPostfixAsLegacyClient(t *testing.T) {
	w := newWorld(t)
	mx := w.mx("example.test", "mx1.example.test", 10, upstreamtest.MXOptions{Certificate: w.cert("mx1.example.test")})
	g := w.start(nil)
	pf := postfix.Start(t, postfix.Options{RelayHost: g.addr})

	body := []byte("Subject: from postfix\n\nFirst line\n.\n..two dots\nGrüße\n")
	if err := pf.Sendmail("alice@legacy.sealgate.test", []string{"bob@example.test"}, body); err != nil {
		t.Fatal(err)
	}
	if err := pf.WaitQueueEmpty(30 * time.Second); err != nil {
		t.Fatalf("Postfix did not hand the message over: %v\n%s", err, pf.Log())
	}
	msgs := mx.Messages()
	if len(msgs) != 1 || msgs[0].TLS == nil || msgs[0].Rcpts[0].To != "bob@example.test" || msgs[0].From != "alice@legacy.sealgate.test" {
		t.Fatalf("MX messages: %+v", msgs)
	}
	for _, want := range []string{"\r\n.\r\n", "\r\n..two dots\r\n", "Grüße", "by gw.sealgate.test (sealgate)", "by legacy.sealgate.test"} {
		if !bytes.Contains(msgs[0].Data, []byte(want)) {
			t.Errorf("message lacks %q:\n%s", want, msgs[0].Data)
		}
	}
}

func TestPostfixKeepsMessageWhileTLSCannotBeHad(t *testing.T) {
	w := newWorld(t)
	plain := w.mx("later.test", "mx1.later.test", 10, upstreamtest.MXOptions{})
	// The gateway keeps DNS answers for their TTL: the MX RRset, which
	// changes below, is published with TTL 0.
	w.dns.Remove("later.test.", dns.TypeMX)
	w.dns.Add("later.test. 0 IN MX 10 mx1.later.test.")
	g := w.start(nil)
	pf := postfix.Start(t, postfix.Options{RelayHost: g.addr})
	if err := pf.Sendmail("alice@legacy.sealgate.test", []string{"bob@later.test"}, []byte("Subject: wait\n\nhello\n")); err != nil {
		t.Fatal(err)
	}
	_, err := pf.WaitQueue(func(q []postfix.QueueEntry) bool {
		return len(q) == 1 && len(q[0].Recipients) == 1 && strings.Contains(q[0].Recipients[0].DelayReason, "451 4.7.4")
	}, 30*time.Second)
	if err != nil {
		t.Fatalf("message not deferred with 451 4.7.4: %v\n%s", err, pf.Log())
	}
	if plain.SawMailFrom() {
		t.Fatal("the MX without STARTTLS saw MAIL FROM")
	}
	// The domain gets a TLS-capable MX; Postfix's own retry delivers.
	secure := w.mx("later.test", "mx0.later.test", 5, upstreamtest.MXOptions{Certificate: w.cert("mx0.later.test")})
	if err := pf.WaitQueueEmpty(30 * time.Second); err != nil {
		t.Fatalf("not delivered on retry: %v\n%s", err, pf.Log())
	}
	if len(secure.Messages()) != 1 || plain.SawMailFrom() {
		t.Fatal("the retry did not go to the TLS-capable MX only")
	}
}

// TestSwaks submits with swaks, the administrators' SMTP test tool.
func TestSwaks(t *testing.T) {
	path, err := exec.LookPath("swaks")
	if err != nil {
		t.Fatal("swaks not found: install the Debian package swaks")
	}
	w := newWorld(t)
	mx := w.mx("example.test", "mx1.example.test", 10, upstreamtest.MXOptions{Certificate: w.cert("mx1.example.test"),
		RejectRcpt: map[string]*smtp.SMTPError{"nobody@example.test": {Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "User unknown"}}})
	g := w.start(nil)
	host, port, _ := strings.Cut(g.addr, ":")
	out, err := exec.Command(path, "--server", host, "--port", port, "--helo", "legacy.sealgate.test",
		"--from", "alice@legacy.sealgate.test", "--to", "bob@example.test", "--header", "Subject: swaks", "--body", "hello from swaks").CombinedOutput()
	if err != nil {
		t.Fatalf("swaks: %v\n%s", err, out)
	}
	if len(mx.Messages()) != 1 || !bytes.Contains(mx.Messages()[0].Data, []byte("hello from swaks")) {
		t.Fatalf("MX did not get the swaks message:\n%s", out)
	}
	out, err = exec.Command(path, "--server", host, "--port", port, "--helo", "legacy.sealgate.test",
		"--from", "alice@legacy.sealgate.test", "--to", "nobody@example.test").CombinedOutput()
	if err == nil || !bytes.Contains(out, []byte("<** 550 5.1.1 User unknown")) {
		t.Fatalf("swaks should see the MX's 550 verbatim:\n%s", out)
	}
}
