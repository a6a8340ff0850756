package e2e

import (
	"crypto/tls"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"sealgate/certs/certstest"
	"sealgate/enforcement/dane"
	"sealgate/upstream/upstreamtest"
)

func writePolicy(t *testing.T, lines ...string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "tls_policy")
	if err := os.WriteFile(p, []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func colonHex(b []byte) string {
	h := strings.ToUpper(hex.EncodeToString(b))
	var parts []string
	for i := 0; i < len(h); i += 2 {
		parts = append(parts, h[i:i+2])
	}
	return strings.Join(parts, ":")
}

func TestLocalPolicyLevels(t *testing.T) {
	w := newWorld(t)
	private := certstest.NewCA(t, "private network of trust")
	privDir := t.TempDir()
	tafile := private.WriteCAFile(privDir)
	self := certstest.SelfSigned(t, "mx.fp.test")
	selfKey := certstest.SelfSigned(t, "mx.fpkey.test")
	other := certstest.SelfSigned(t, "mx.fpbad.test")

	type dest struct {
		domain string
		cert   *tls.Certificate
		ok     bool
	}
	privLeaf := private.Leaf("mx.agency.test")
	pubLeaf := w.ca.Leaf("mx.public.test")
	dests := []dest{
		{domain: "verify.test", cert: w.cert("mx.verify.test"), ok: true},
		{domain: "verifybad.test", cert: w.cert("other.verifybad.test")},
		{domain: "secure.test", cert: w.cert("mx.secure.test"), ok: true},
		{domain: "securebad.test", cert: w.cert("mx.elsewhere.test")},
		{domain: "fp.test", cert: &self, ok: true},
		{domain: "fpkey.test", cert: &selfKey, ok: true},
		{domain: "fpbad.test", cert: &other},
		{domain: "agency.test", cert: &privLeaf, ok: true},
		{domain: "public.test", cert: &pubLeaf},
		{domain: "encrypt.test", cert: &other, ok: true},
	}
	mxs := map[string]*upstreamtest.MX{}
	for _, d := range dests {
		mxs[d.domain] = w.mx(d.domain, "mx."+d.domain, 10, upstreamtest.MXOptions{Certificate: d.cert})
	}
	policy := writePolicy(t,
		"# Postfix smtp_tls_policy_maps syntax",
		"verify.test      verify",
		"verifybad.test   verify",
		"secure.test      secure",
		"securebad.test   secure match=nexthop:dot-nexthop",
		"fp.test          fingerprint match="+colonHex(certstest.CertSHA256(self.Leaf)),
		"fpkey.test       fingerprint",
		"    match="+colonHex(certstest.SPKISHA256(selfKey.Leaf)),
		"fpbad.test       fingerprint match="+colonHex(certstest.CertSHA256(self.Leaf)),
		"agency.test      secure tafile="+tafile,
		"public.test      secure tafile="+tafile,
		".test            encrypt",
	)
	// The floor is verify: only the local policy lets encrypt.test and
	// the fingerprint destinations through.
	g := w.start(map[string]string{"SEALGATE_POLICY_FILE": policy, "SEALGATE_MIN_TLS": "verify"})
	for _, d := range dests {
		t.Run(d.domain, func(t *testing.T) {
			res := g.send("a@legacy.sealgate.test", []string{"b@" + d.domain}, message("x"))
			if d.ok {
				if res.Rcpt[0] != nil || res.Data != nil {
					t.Fatalf("refused: %+v", res)
				}
				return
			}
			wantReply(t, "RCPT", res.Rcpt[0], 451, "4.7.5", d.domain+": local policy", "mx."+d.domain)
			if mxs[d.domain].SawMailFrom() {
				t.Fatal("MX saw MAIL FROM")
			}
		})
	}
}

func TestLocalPolicyOverridesMTASTS(t *testing.T) {
	w := newWorld(t)
	self := certstest.SelfSigned(t, "mx.partner.test")
	mx := w.mx("partner.test", "mx.partner.test", 10, upstreamtest.MXOptions{Certificate: &self})
	w.sts("partner.test", "1", enforce("mail.partner.test"))
	g := w.start(map[string]string{"SEALGATE_POLICY_FILE": writePolicy(t, "partner.test encrypt")})
	res := g.send("a@legacy.sealgate.test", []string{"b@partner.test"}, message("x"))
	if res.Rcpt[0] != nil || res.Data != nil {
		t.Fatalf("local policy did not override MTA-STS: %+v", res)
	}
	if len(mx.Messages()) != 1 {
		t.Fatal("no message")
	}
}

func TestLocalPolicyProtocols(t *testing.T) {
	w := newWorld(t)
	old := w.mx("old.test", "mx.old.test", 10, upstreamtest.MXOptions{Certificate: w.cert("mx.old.test"), MinVersion: tls.VersionTLS10, MaxVersion: tls.VersionTLS11})
	w.mx("old2.test", "mx.old2.test", 10, upstreamtest.MXOptions{Certificate: w.cert("mx.old2.test"), MinVersion: tls.VersionTLS10, MaxVersion: tls.VersionTLS11})
	g := w.start(map[string]string{"SEALGATE_POLICY_FILE": writePolicy(t, "old.test encrypt protocols=!SSLv2:!SSLv3")})
	res := g.send("a@legacy.sealgate.test", []string{"b@old.test"}, message("x"))
	if res.Rcpt[0] != nil || res.Data != nil {
		t.Fatalf("protocols= did not allow TLS 1.1: %+v", res)
	}
	if m := old.Messages(); len(m) != 1 || m[0].TLS.Version != tls.VersionTLS11 {
		t.Fatalf("messages %+v", m)
	}
	res = g.send("a@legacy.sealgate.test", []string{"b@old2.test"}, message("x"))
	wantReply(t, "RCPT", res.Rcpt[0], 451, "4.7.5", "old2.test")
}

func TestPolicyFileRefusesCleartextLevels(t *testing.T) {
	for _, level := range []string{"may", "none"} {
		t.Run(level, func(t *testing.T) {
			p := writePolicy(t, "# comment", "example.test "+level)
			cmd := exec.Command(binPath, "serve")
			cmd.Env = envList(map[string]string{"SEALGATE_POLICY_FILE": p, "SEALGATE_LISTEN": "127.0.0.1:0", "SEALGATE_STATE_DIR": t.TempDir(), "SEALGATE_DNS_RESOLVER": "127.0.0.1:9"})
			out, err := cmd.CombinedOutput()
			if err == nil {
				t.Fatal("started with a cleartext level")
			}
			for _, want := range []string{p + ":2", `"` + level + `"`, "cleartext"} {
				if !strings.Contains(string(out), want) {
					t.Errorf("message lacks %q:\n%s", want, out)
				}
			}
		})
	}
}

// TestMutualTLS: an MX that requires a client certificate of the private
// network of trust sees ours.
func TestMutualTLS(t *testing.T) {
	w := newWorld(t)
	private := certstest.NewCA(t, "private network of trust")
	mx := w.mx("agency.test", "mx.agency.test", 10, upstreamtest.MXOptions{
		Certificate: w.cert("mx.agency.test"), RequireClientCert: true, ClientCAs: private.Pool()})
	client := private.Issue(certstest.Names("gw.sealgate.test"), certstest.ClientAuth())
	certFile, keyFile := certstest.WriteKeyPair(t, t.TempDir(), client)

	g := w.start(nil)
	res := g.send("a@legacy.sealgate.test", []string{"b@agency.test"}, message("x"))
	wantReply(t, "without a client certificate", res.Rcpt[0], 451, "4.7.5", "agency.test")

	g2 := w.start(map[string]string{"SEALGATE_CLIENT_CERT_FILE": certFile, "SEALGATE_CLIENT_KEY_FILE": keyFile})
	res = g2.send("a@legacy.sealgate.test", []string{"b@agency.test"}, message("x"))
	if res.Rcpt[0] != nil || res.Data != nil {
		t.Fatalf("with our client certificate: %+v", res)
	}
	m := mx.Messages()
	if len(m) != 1 || len(m[0].TLS.PeerCertificates) == 0 || m[0].TLS.PeerCertificates[0].Subject.CommonName != "gw.sealgate.test" {
		t.Fatalf("the MX did not see our certificate: %+v", m)
	}
	// check judges the destination as delivery does: with our certificate.
	cmd := exec.Command(binPath, "check", "agency.test")
	cmd.Env = envList(map[string]string{
		"SEALGATE_DNS_RESOLVER": w.dns.Addr(), "SEALGATE_MX_PORT": itoa(w.port), "SSL_CERT_FILE": w.caFile,
		"SEALGATE_HOSTNAME": "gw.sealgate.test", "SEALGATE_STATE_DIR": t.TempDir(),
		"SEALGATE_CLIENT_CERT_FILE": certFile, "SEALGATE_CLIENT_KEY_FILE": keyFile,
	})
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("check with the client certificate: %v\n%s", err, out)
	}
}

func TestLocalPolicyDANELevels(t *testing.T) {
	w := newWorld(t)
	self := certstest.SelfSigned(t, "mx.signed.test")
	other := certstest.SelfSigned(t, "mx.other.test")
	for _, d := range []string{"signed.test", "unsigned.test", "only.test", "onlyok.test"} {
		cert := &other
		if d == "signed.test" || d == "onlyok.test" {
			cert = &self
		}
		w.mx(d, "mx."+d, 10, upstreamtest.MXOptions{Certificate: cert})
	}
	rec := dane.Expect(self.Leaf, 3, 1, 1)
	w.dns.Add(tlsaLine("mx.signed.test", rec), tlsaLine("mx.onlyok.test", rec))
	for _, z := range []string{"signed.test.", "only.test.", "onlyok.test."} {
		w.dns.SetSecureZone(z, true)
	}
	onlyMX := w.mx("only.test", "mx2.only.test", 20, upstreamtest.MXOptions{Certificate: &other})
	g := w.start(map[string]string{"SEALGATE_POLICY_FILE": writePolicy(t,
		"signed.test    dane",
		"unsigned.test  dane",
		"only.test      dane-only",
		"onlyok.test    dane-only",
	)})
	for _, d := range []string{"signed.test", "unsigned.test", "onlyok.test"} {
		res := g.send("a@legacy.sealgate.test", []string{"b@" + d}, message("x"))
		if res.Rcpt[0] != nil || res.Data != nil {
			t.Errorf("%s: %+v", d, res)
		}
	}
	res := g.send("a@legacy.sealgate.test", []string{"b@only.test"}, message("x"))
	wantReply(t, "dane-only without TLSA", res.Rcpt[0], 451, "4.7.5", "only.test: local policy dane-only", "TLSA")
	if onlyMX.Connections() != 0 {
		t.Error("dane-only: a host without TLSA records got a connection")
	}
	if !strings.Contains(g.logs.String(), `policy="local policy dane"`) {
		t.Error("no delivery under local policy dane in the log")
	}
}
