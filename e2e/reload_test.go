package e2e

import (
	"crypto/tls"
	"crypto/x509"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"sealgate/certs/certstest"
	"sealgate/upstream/upstreamtest"
)

// replaceFile writes data next to path and renames it over path, as
// deployment tools do.
func replaceFile(t *testing.T, path string, data []byte) {
	t.Helper()
	tmp := path + ".new"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func TestInboundCertificateReload(t *testing.T) {
	w := newWorld(t)
	w.mx("example.test", "mx1.example.test", 10, upstreamtest.MXOptions{Certificate: w.cert("mx1.example.test")})
	dir := t.TempDir()
	first := w.ca.Leaf("gw.sealgate.test")
	certFile, keyFile := certstest.WriteKeyPair(t, dir, first)
	admin := freeAddr(t)
	g := w.start(map[string]string{"SEALGATE_TLS_CERT_FILE": certFile, "SEALGATE_TLS_KEY_FILE": keyFile, "SEALGATE_ADMIN_LISTEN": admin})

	served := func() *x509.Certificate {
		c, err := smtp.DialStartTLS(g.addr, &tls.Config{ServerName: "gw.sealgate.test", RootCAs: w.ca.Pool()})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if err := c.Noop(); err != nil { // completes the lazy handshake
			t.Fatal(err)
		}
		cs, _ := c.TLSConnectionState()
		return cs.PeerCertificates[0]
	}
	if !served().Equal(first.Leaf) {
		t.Fatal("not serving the configured certificate")
	}
	// A session opened before the swap.
	open, err := smtp.DialStartTLS(g.addr, &tls.Config{ServerName: "gw.sealgate.test", RootCAs: w.ca.Pool()})
	if err != nil {
		t.Fatal(err)
	}
	defer open.Close()
	if err := open.Noop(); err != nil {
		t.Fatal(err)
	}

	second := w.ca.Leaf("gw.sealgate.test")
	certPEM, keyPEM := certstest.KeyPairPEM(t, second)
	replaceFile(t, keyFile, keyPEM)
	replaceFile(t, certFile, certPEM)
	deadline := time.Now().Add(15 * time.Second)
	for !served().Equal(second.Leaf) {
		if time.Now().After(deadline) {
			t.Fatalf("new sessions never saw the new certificate:\n%s", g.logs.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	// The session in progress finishes its transaction.
	if err := open.SendMail("a@legacy.sealgate.test", []string{"b@example.test"}, strings.NewReader(string(message("during reload")))); err != nil {
		t.Fatalf("session opened before the reload: %v", err)
	}

	// A corrupt replacement is ignored and logged.
	replaceFile(t, certFile, []byte("-----BEGIN CERTIFICATE-----\nnot base64 at all\n"))
	deadline = time.Now().Add(15 * time.Second)
	for !strings.Contains(g.logs.String(), "reload failed") {
		if time.Now().After(deadline) {
			t.Fatalf("corrupt certificate not logged:\n%s", g.logs.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	if !served().Equal(second.Leaf) {
		t.Fatal("a corrupt file replaced the certificate in force")
	}
	if !strings.Contains(g.logs.String(), filepath.Base(certFile)) {
		t.Error("the log does not name the corrupt file")
	}

	resp, err := http.Get("http://" + admin + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{`sealgate_certificate_expiry_timestamp_seconds{name="inbound"}`, `sealgate_tls_verdicts_total{level="encrypt",result="ok",source="floor"} 1`} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}

func TestPolicyFileReload(t *testing.T) {
	w := newWorld(t)
	self := certstest.SelfSigned(t, "mx.x.test")
	mx := w.mx("x.test", "mx.x.test", 10, upstreamtest.MXOptions{Certificate: &self})
	policy := writePolicy(t, "x.test verify")
	g := w.start(map[string]string{"SEALGATE_POLICY_FILE": policy})
	res := g.send("a@legacy.sealgate.test", []string{"b@x.test"}, message("x"))
	wantReply(t, "RCPT under verify", res.Rcpt[0], 451, "4.7.5", "local policy verify")

	replaceFile(t, policy, []byte("x.test encrypt\n"))
	deadline := time.Now().Add(15 * time.Second)
	for {
		res = g.send("a@legacy.sealgate.test", []string{"b@x.test"}, message("x"))
		if res.Rcpt[0] == nil && res.Data == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the changed policy file was not picked up: %+v", res)
		}
		time.Sleep(200 * time.Millisecond)
	}
	// A broken file keeps the table in force.
	replaceFile(t, policy, []byte("x.test may\n"))
	deadline = time.Now().Add(15 * time.Second)
	for !strings.Contains(g.logs.String(), "sealgate never sends mail in cleartext") {
		if time.Now().After(deadline) {
			t.Fatalf("broken policy file not reported:\n%s", g.logs.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	if res := g.send("a@legacy.sealgate.test", []string{"b@x.test"}, message("x")); res.Rcpt[0] != nil {
		t.Fatalf("a broken policy file changed the table in force: %v", res.Rcpt[0])
	}
	if len(mx.Messages()) != 2 {
		t.Errorf("MX got %d messages, want 2", len(mx.Messages()))
	}
}

// TestPolicyFileReloadWatchesAddedTAFile: a tafile that an edit of the
// policy file names for the first time, in a directory of its own, is
// watched from that edit on: replacing it reloads the table.
func TestPolicyFileReloadWatchesAddedTAFile(t *testing.T) {
	w := newWorld(t)
	private := certstest.NewCA(t, "private network CA")
	leaf := private.Leaf("mx.x.test")
	mx := w.mx("x.test", "mx.x.test", 10, upstreamtest.MXOptions{Certificate: &leaf})
	// Without the tafile the private CA is not trusted.
	policy := writePolicy(t, "x.test secure match=mx.x.test")
	caDir := t.TempDir() // not the policy file's directory
	caFile := filepath.Join(caDir, "ca.pem")
	if err := os.WriteFile(caFile, private.PEM(), 0o644); err != nil {
		t.Fatal(err)
	}
	g := w.start(map[string]string{"SEALGATE_POLICY_FILE": policy})

	// sendUntil repeats a transaction until its RCPT reply is the wanted
	// one (nil: accepted; else a 451 4.7.5).
	sendUntil := func(what string, wantOK bool) {
		t.Helper()
		deadline := time.Now().Add(15 * time.Second)
		for {
			res := g.send("a@legacy.sealgate.test", []string{"b@x.test"}, message(what))
			if (res.Rcpt[0] == nil) == wantOK {
				if !wantOK {
					wantReply(t, what, res.Rcpt[0], 451, "4.7.5", "local policy secure")
				}
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: the gateway did not follow the change: %+v", what, res)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	sendUntil("secure without tafile", false)
	replaceFile(t, policy, []byte("x.test secure tafile="+caFile+" match=mx.x.test\n"))
	sendUntil("tafile of the private CA", true)

	// Another CA's bundle in the added tafile: the MX is no longer trusted.
	other := certstest.NewCA(t, "another CA")
	replaceFile(t, caFile, other.PEM())
	sendUntil("tafile replaced by another CA", false)
	if len(mx.Messages()) == 0 {
		t.Error("the MX got no message")
	}
}
