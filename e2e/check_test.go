package e2e

import (
	"encoding/json"
	"os/exec"
	"strconv"
	"strings"
	"testing"

	"sealgate/upstream/upstreamtest"
)

func TestCheckCommand(t *testing.T) {
	w := newWorld(t)
	good := w.mx("good.test", "mx.good.test", 10, upstreamtest.MXOptions{Certificate: w.cert("mx.good.test")})
	w.mx("plain.test", "mx.plain.test", 10, upstreamtest.MXOptions{})
	run := func(args ...string) (string, int) {
		cmd := exec.Command(binPath, append([]string{"check"}, args...)...)
		cmd.Env = envList(map[string]string{
			"SEALGATE_DNS_RESOLVER": w.dns.Addr(), "SEALGATE_MX_PORT": itoa(w.port), "SSL_CERT_FILE": w.caFile,
			"SEALGATE_HOSTNAME": "gw.sealgate.test", "SEALGATE_STATE_DIR": t.TempDir(), "SEALGATE_MIN_TLS": "verify",
		})
		out, err := cmd.Output()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		return string(out), code
	}
	out, code := run("good.test")
	if code != 0 || !strings.Contains(out, "delivery would proceed") || !strings.Contains(out, "TLS 1.3") {
		t.Fatalf("check good.test: exit %d\n%s", code, out)
	}
	out, code = run("--json", "good.test", "plain.test")
	if code != 1 {
		t.Fatalf("check with a domain without STARTTLS: exit %d, want 1\n%s", code, out)
	}
	var reports []struct {
		Domain  string
		Proceed bool
		Reply   string
	}
	if err := json.Unmarshal([]byte(out), &reports); err != nil || len(reports) != 2 {
		t.Fatalf("bad JSON: %v\n%s", err, out)
	}
	if !reports[0].Proceed || reports[1].Proceed || !strings.HasPrefix(reports[1].Reply, "451 4.7.4 plain.test") {
		t.Errorf("reports: %+v", reports)
	}
	if good.SawMailFrom() {
		t.Error("check sent MAIL FROM")
	}
}

func itoa(n int) string { return strconv.Itoa(n) }
