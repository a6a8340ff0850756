package e2e

import (
	"encoding/json"
	"os/exec"
	"strings"
	"testing"

	"sealgate/upstream/upstreamtest"
)

// TestCheckSaysWhetherDNSSECIsTrusted: "sealgate check" says, in text and
// JSON, whether the AD flag of the resolvers is believed and why.
func TestCheckSaysWhetherDNSSECIsTrusted(t *testing.T) {
	w := newWorld(t)
	w.mx("good.test", "mx.good.test", 10, upstreamtest.MXOptions{Certificate: w.cert("mx.good.test")})
	run := func(args ...string) string {
		cmd := exec.Command(binPath, append([]string{"check"}, args...)...)
		cmd.Env = envList(map[string]string{
			"SEALGATE_DNS_RESOLVER": w.dns.Addr(), "SEALGATE_MX_PORT": itoa(w.port), "SSL_CERT_FILE": w.caFile,
			"SEALGATE_HOSTNAME": "gw.sealgate.test", "SEALGATE_STATE_DIR": t.TempDir(),
		})
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("check %v: %v\n%s", args, err, out)
		}
		return string(out)
	}
	out := run("--json", "good.test")
	var reports []struct {
		Domain        string
		Proceed       bool
		DNSSECTrusted *bool  `json:"dnssec_trusted"`
		DNSSEC        string `json:"dnssec"`
	}
	if err := json.Unmarshal([]byte(out), &reports); err != nil || len(reports) != 1 {
		t.Fatalf("bad JSON: %v\n%s", err, out)
	}
	r := reports[0]
	if r.DNSSECTrusted == nil || !*r.DNSSECTrusted {
		t.Errorf("dnssec_trusted = %v, want true for a resolver on loopback\n%s", r.DNSSECTrusted, out)
	}
	if !strings.Contains(r.DNSSEC, w.dns.Addr()) || !strings.Contains(r.DNSSEC, "loopback") {
		t.Errorf("dnssec = %q, want the resolver and why it is trusted", r.DNSSEC)
	}
	out = run("good.test")
	if !strings.Contains(out, "DNSSEC trusted: ") || !strings.Contains(out, w.dns.Addr()) {
		t.Errorf("text report does not say whether DNSSEC is trusted:\n%s", out)
	}
}
