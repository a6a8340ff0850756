package e2e

import (
	"crypto/tls"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
	"golang.org/x/crypto/bcrypt"

	"sealgate/upstream/upstreamtest"
)

// TestInboundSTARTTLSAndAUTH: a client outside the allowed networks relays
// after AUTH under TLS, with PLAIN and LOGIN, and the gateway presents the
// configured certificate.
func TestInboundSTARTTLSAndAUTH(t *testing.T) {
	w := newWorld(t)
	mx := w.mx("example.test", "mx1.example.test", 10, upstreamtest.MXOptions{Certificate: w.cert("mx1.example.test")})
	dir := t.TempDir()
	hash, _ := bcrypt.GenerateFromPassword([]byte("correct horse"), bcrypt.MinCost)
	users := filepath.Join(dir, "users")
	os.WriteFile(users, []byte("# relay accounts\nalice:"+string(hash)+"\n"), 0o600)
	certFile, keyFile := w.ca.WriteFiles(dir, "gw.sealgate.test")
	g := w.start(map[string]string{
		"SEALGATE_ALLOWED_NETWORKS": "10.0.0.0/8",
		"SEALGATE_AUTH_USERS_FILE":  users,
		"SEALGATE_TLS_CERT_FILE":    certFile,
		"SEALGATE_TLS_KEY_FILE":     keyFile,
	})
	dial := func(t *testing.T) *smtp.Client {
		c, err := smtp.DialStartTLS(g.addr, &tls.Config{ServerName: "gw.sealgate.test", RootCAs: w.ca.Pool()})
		if err != nil {
			t.Fatalf("STARTTLS with the configured certificate: %v", err)
		}
		t.Cleanup(func() { c.Close() })
		if ok, mechs := c.Extension("AUTH"); !ok || !strings.Contains(mechs, "PLAIN") || !strings.Contains(mechs, "LOGIN") {
			t.Fatalf("AUTH under TLS: %v %q", ok, mechs)
		}
		return c
	}
	for _, tc := range []struct {
		name string
		auth sasl.Client
	}{
		{name: "PLAIN", auth: sasl.NewPlainClient("", "alice", "correct horse")},
		{name: "LOGIN", auth: sasl.NewLoginClient("alice", "correct horse")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := dial(t)
			if err := c.Auth(tc.auth); err != nil {
				t.Fatal(err)
			}
			if err := c.SendMail("alice@legacy.sealgate.test", []string{"b@example.test"}, strings.NewReader(string(message(tc.name)))); err != nil {
				t.Fatal(err)
			}
		})
	}
	t.Run("wrong password", func(t *testing.T) {
		c := dial(t)
		err := c.Auth(sasl.NewPlainClient("", "alice", "wrong"))
		var se *smtp.SMTPError
		if !errors.As(err, &se) || se.Code != 535 {
			t.Fatalf("wrong password: %v, want 535", err)
		}
		c.Mail("alice@legacy.sealgate.test", nil)
		wantReply(t, "RCPT after failed AUTH", c.Rcpt("b@example.test", nil), 554, "5.7.1")
	})
	msgs := mx.Messages()
	if len(msgs) != 2 {
		t.Fatalf("MX got %d messages, want 2", len(msgs))
	}
	recv, _ := stripReceived(t, msgs[0].Data)
	if !strings.Contains(recv, "with ESMTPSA") {
		t.Errorf("Received does not record TLS and AUTH:\n%s", recv)
	}
}

func TestSizeLimit(t *testing.T) {
	w := newWorld(t)
	mx := w.mx("example.test", "mx1.example.test", 10, upstreamtest.MXOptions{Certificate: w.cert("mx1.example.test")})
	g := w.start(map[string]string{"SEALGATE_MAX_MESSAGE_SIZE": "10000"})
	res := g.send("a@legacy.sealgate.test", []string{"b@example.test"}, bigMessage(50000))
	wantReply(t, "DATA", res.Data, 552, "5.3.4")
	for _, m := range mx.Messages() {
		if m.Accepted {
			t.Fatal("the MX accepted a message over the limit")
		}
	}
}

// TestCHUNKING: a legacy client sending with BDAT (RFC 3030); the message
// arrives whole, and an MX lost in the middle gives 4xx, never 250.
func TestCHUNKING(t *testing.T) {
	w := newWorld(t)
	mx := w.mx("example.test", "mx1.example.test", 10, upstreamtest.MXOptions{Certificate: w.cert("mx1.example.test")})
	w.mx("drop.test", "mx1.drop.test", 10, upstreamtest.MXOptions{Certificate: w.cert("mx1.drop.test"), DropInData: 1000})
	g := w.start(nil)
	bdat := func(rcpt string, chunks ...string) string {
		rc := g.dialRaw()
		defer rc.Close()
		c, reply := rc.Conn, rc.reply
		rc.begin(rcpt, false)
		var last string
		for i, ch := range chunks {
			cmd := fmt.Sprintf("BDAT %d", len(ch))
			if i == len(chunks)-1 {
				cmd += " LAST"
			}
			fmt.Fprintf(c, "%s\r\n%s", cmd, ch)
			last = reply()
			if !strings.HasPrefix(last, "250") {
				return last
			}
		}
		return last
	}
	body := string(message("chunked"))
	if r := bdat("b@example.test", body[:20], body[20:]); !strings.HasPrefix(r, "250") {
		t.Fatalf("BDAT delivery: %s", r)
	}
	if m := mx.Messages(); len(m) != 1 {
		t.Fatal("no message")
	} else if _, rest := stripReceived(t, m[0].Data); string(rest) != body {
		t.Fatalf("body changed: %q", rest)
	}
	big := string(bigMessage(200 << 10))
	r := bdat("b@drop.test", big[:100<<10], big[100<<10:])
	if strings.HasPrefix(r, "250") || !strings.HasPrefix(r, "451 4.4.2") {
		t.Fatalf("MX lost during BDAT: %s, want 451 4.4.2", r)
	}
}
