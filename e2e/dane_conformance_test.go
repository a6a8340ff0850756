package e2e

import (
	"crypto/tls"
	"strings"
	"testing"

	"sealgate/certs/certstest"
	"sealgate/upstream/upstreamtest"
)

// TestMTASTSTestingKeepsTLSMinVersion: with SEALGATE_TLS_MIN_VERSION=1.0, a
// domain whose MTA-STS policy is in testing mode and whose MX speaks only
// TLS 1.0 (with a certificate the policy refuses) is delivered under the
// floor like a domain without policy, not refused for its TLS version.
func TestMTASTSTestingKeepsTLSMinVersion(t *testing.T) {
	w := newWorld(t)
	tls10 := func(name string) upstreamtest.MXOptions {
		self := certstest.SelfSigned(t, name)
		return upstreamtest.MXOptions{Certificate: &self, MinVersion: tls.VersionTLS10, MaxVersion: tls.VersionTLS10}
	}
	plain := w.mx("plain.test", "mx.plain.test", 10, tls10("mx.plain.test"))
	tested := w.mx("tested.test", "mx.tested.test", 10, tls10("mx.tested.test"))
	w.sts("tested.test", "1", "version: STSv1\nmode: testing\nmax_age: 600\nmx: mx.tested.test\n")
	g := w.start(map[string]string{"SEALGATE_TLS_MIN_VERSION": "1.0"})

	for _, tc := range []struct {
		rcpt string
		mx   *upstreamtest.MX
	}{
		{rcpt: "b@plain.test", mx: plain},
		{rcpt: "b@tested.test", mx: tested},
	} {
		t.Run(tc.rcpt, func(t *testing.T) {
			res := g.send("a@legacy.sealgate.test", []string{tc.rcpt}, message("x"))
			if res.Rcpt[0] != nil || res.Data != nil {
				t.Fatalf("refused: %+v", res)
			}
			if m := tc.mx.Messages(); len(m) != 1 || m[0].TLS.Version != tls.VersionTLS10 {
				t.Fatalf("messages at the MX: %+v", m)
			}
		})
	}
	if !strings.Contains(g.logs.String(), "testing policy failed") {
		t.Error("the failed testing policy is not logged")
	}
}
