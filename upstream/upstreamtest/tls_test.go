package upstreamtest_test

import (
	"crypto/tls"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"sealgate/certs/certstest"
	"sealgate/upstream/upstreamtest"
)

func TestSTARTTLSWithoutEHLO(t *testing.T) {
	mx, ca := tlsMX(t, upstreamtest.MXOptions{})
	c := dialRaw(t, mx.Addr())
	c.expect(220)
	c.ehlo("client.test")
	c.expectCmd("MAIL FROM:<early@sender.test>", 250)
	if err := c.startTLS(clientTLS(ca)); err != nil {
		t.Fatal(err)
	}
	c.expectCmd("MAIL FROM:<a@sender.test>", 503)
	if code, _ := c.cmd("STARTTLS"); code != 503 {
		t.Errorf("second STARTTLS: %d, want 503", code)
	}
	c.ehlo("client.test")
	// The cleartext transaction was forgotten: RCPT needs a new MAIL.
	c.expectCmd("RCPT TO:<b@example.test>", 502)
	c.expectCmd("MAIL FROM:<a@sender.test>", 250)
	c.expectCmd("RCPT TO:<b@example.test>", 250)
	if code, _, err := c.data("hi\r\n"); err != nil || code != 250 {
		t.Fatalf("DATA: %d %v", code, err)
	}
	msgs := mx.Messages()
	if len(msgs) != 1 || msgs[0].From != "a@sender.test" || msgs[0].TLS == nil || !msgs[0].Accepted {
		t.Fatalf("messages = %+v", msgs)
	}
}

func TestClientCertificates(t *testing.T) {
	clientCA := certstest.NewCA(t, "client root")
	good := clientCA.Issue(certstest.Names("relay.test"), certstest.ClientAuth())
	stranger := certstest.NewCA(t, "stranger").Issue(certstest.Names("relay.test"), certstest.ClientAuth())

	tests := []struct {
		name    string
		cert    *tls.Certificate
		maxVer  uint16
		wantErr string // in the server's handshake error
	}{
		{name: "no certificate", wantErr: "didn't provide a certificate"},
		{name: "no certificate, TLS 1.2", maxVer: tls.VersionTLS12, wantErr: "didn't provide a certificate"},
		{name: "untrusted certificate", cert: &stranger, wantErr: "unknown authority"},
		{name: "trusted certificate", cert: &good},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			mx, ca := tlsMX(t, upstreamtest.MXOptions{RequireClientCert: true, ClientCAs: clientCA.Pool()})
			cfg := clientTLS(ca)
			cfg.MaxVersion = tc.maxVer
			if tc.cert != nil {
				// Send it even when the server's CA list does not match.
				cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
					return tc.cert, nil
				}
			}
			conn, err := net.Dial("tcp", mx.Addr())
			if err != nil {
				t.Fatal(err)
			}
			c, err := smtp.NewClientStartTLS(conn, cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			err = c.Hello("relay.test") // the handshake happens here
			if tc.wantErr != "" {
				var se *smtp.SMTPError
				if err == nil || errors.As(err, &se) {
					t.Fatalf("EHLO after handshake: err = %v, want a TLS failure", err)
				}
				c.Close()
				mx.WaitIdle(5 * time.Second)
				if conns := mx.Conns(); !strings.Contains(conns[0].HandshakeError, tc.wantErr) || conns[0].TLS != nil {
					t.Errorf("connection record = %+v, want a handshake error with %q", conns[0], tc.wantErr)
				}
				if mx.SawMailFrom() {
					t.Errorf("MAIL FROM seen")
				}
				return
			}
			if err != nil {
				t.Fatalf("EHLO: %v", err)
			}
			if err := c.SendMail("a@relay.test", []string{"b@example.test"}, strings.NewReader("hi\r\n")); err != nil {
				t.Fatalf("SendMail: %v", err)
			}
			msgs := mx.Messages()
			if len(msgs) != 1 || len(msgs[0].TLS.PeerCertificates) != 1 || !msgs[0].TLS.PeerCertificates[0].Equal(good.Leaf) {
				t.Fatalf("client certificate not recorded: %+v", msgs)
			}
		})
	}
}

func TestTLSVersions(t *testing.T) {
	tests := []struct {
		name           string
		serverMin      uint16
		serverMax      uint16
		clientMax      uint16
		wantVersion    uint16
		wantHandshakeE bool
	}{
		{name: "default", wantVersion: tls.VersionTLS13},
		{name: "server max 1.2", serverMax: tls.VersionTLS12, wantVersion: tls.VersionTLS12},
		{name: "server min 1.3, client max 1.2", serverMin: tls.VersionTLS13, clientMax: tls.VersionTLS12, wantHandshakeE: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			mx, ca := tlsMX(t, upstreamtest.MXOptions{MinVersion: tc.serverMin, MaxVersion: tc.serverMax})
			c := dialRaw(t, mx.Addr())
			c.expect(220)
			c.ehlo("client.test")
			cfg := clientTLS(ca)
			cfg.MaxVersion = tc.clientMax
			err := c.startTLS(cfg)
			if tc.wantHandshakeE {
				if err == nil {
					t.Fatalf("handshake succeeded, want failure")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			c.ehlo("client.test")
			if got := mx.Conns()[0].TLS.Version; got != tc.wantVersion {
				t.Errorf("version = %x, want %x", got, tc.wantVersion)
			}
		})
	}
}

func TestImplicitTLS(t *testing.T) {
	mx, ca := tlsMX(t, upstreamtest.MXOptions{ImplicitTLS: true})
	cfg := clientTLS(ca)
	cfg.ServerName = "other.example.test"
	cfg.InsecureSkipVerify = true // the SNI must be recorded whatever it is
	tc, err := tls.Dial("tcp", mx.Addr(), cfg)
	if err != nil {
		t.Fatalf("TLS dial: %v", err)
	}
	c := smtp.NewClient(tc)
	defer c.Close()
	if err := c.Hello("client.test"); err != nil {
		t.Fatal(err)
	}
	if ok, _ := c.Extension("STARTTLS"); ok {
		t.Errorf("STARTTLS advertised under implicit TLS")
	}
	if err := c.SendMail("a@sender.test", []string{"b@example.test"}, strings.NewReader("hi\r\n")); err != nil {
		t.Fatalf("SendMail: %v", err)
	}
	msgs := mx.Messages()
	if len(msgs) != 1 || msgs[0].TLS == nil || msgs[0].TLS.ServerName != "other.example.test" {
		t.Fatalf("messages = %+v", msgs)
	}
}

func TestAuth(t *testing.T) {
	users := map[string]string{"alice": "s3cret"}
	tests := []struct {
		name     string
		password string
		wantCode int // 0: success
	}{
		{name: "right password", password: "s3cret"},
		{name: "wrong password", password: "guess", wantCode: 535},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			mx, ca := tlsMX(t, upstreamtest.MXOptions{AuthUsers: users})
			conn, err := net.Dial("tcp", mx.Addr())
			if err != nil {
				t.Fatal(err)
			}
			c, err := smtp.NewClientStartTLS(conn, clientTLS(ca))
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			err = c.Auth(sasl.NewPlainClient("", "alice", tc.password))
			if tc.wantCode != 0 {
				var se *smtp.SMTPError
				if !errors.As(err, &se) || se.Code != tc.wantCode {
					t.Fatalf("AUTH: %v, want %d", err, tc.wantCode)
				}
				return
			}
			if err != nil {
				t.Fatalf("AUTH: %v", err)
			}
			if err := c.SendMail("alice@sender.test", []string{"b@example.test"}, strings.NewReader("hi\r\n")); err != nil {
				t.Fatal(err)
			}
			if msgs := mx.Messages(); len(msgs) != 1 || msgs[0].AuthUser != "alice" {
				t.Fatalf("messages = %+v", msgs)
			}
		})
	}

	t.Run("before TLS", func(t *testing.T) {
		mx, _ := tlsMX(t, upstreamtest.MXOptions{AuthUsers: users})
		c := dialRaw(t, mx.Addr())
		c.expect(220)
		c.ehlo("client.test")
		if code, msg := c.cmd("AUTH PLAIN AGFsaWNlAHMzY3JldA=="); code != 538 {
			t.Fatalf("AUTH before TLS: %d %s, want 538", code, msg)
		}
	})
}
