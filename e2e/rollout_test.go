package e2e

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"sealgate/upstream/upstreamtest"
)

// rolloutEnv is what deploy/rollout-check.sh and the README's pipeline
// run with: sealgate on PATH, pointed at the world's DNS and MX port.
func rolloutEnv(t *testing.T, w *world) []string {
	t.Helper()
	bin := t.TempDir()
	if err := os.Symlink(binPath, filepath.Join(bin, "sealgate")); err != nil {
		t.Fatal(err)
	}
	for _, tool := range []string{"zcat", "grep", "sed", "tr", "sort", "xargs", "jq"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s: %v (the rollout check needs it; jq: make deps)", tool, err)
		}
	}
	env := envList(map[string]string{
		"SEALGATE_DNS_RESOLVER": w.dns.Addr(), "SEALGATE_MX_PORT": itoa(w.port), "SSL_CERT_FILE": w.caFile,
		"SEALGATE_HOSTNAME": "gw.sealgate.test", "SEALGATE_STATE_DIR": t.TempDir(),
	})
	return append(env, "PATH="+bin+":"+os.Getenv("PATH")) // the later PATH wins
}

// runShell runs cmd with env and returns its standard output and exit
// status; standard error goes to the test log.
func runShell(t *testing.T, env []string, cmd *exec.Cmd) (string, int) {
	t.Helper()
	var stderr bytes.Buffer
	cmd.Env, cmd.Stderr = env, &stderr
	out, err := cmd.Output()
	if stderr.Len() > 0 {
		t.Logf("%s: standard error:\n%s", cmd.Args[0], stderr.String())
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return string(out), ee.ExitCode()
	}
	if err != nil {
		t.Fatal(err)
	}
	return string(out), 0
}

// checkReport is the part of sealgate check's JSON the rollout reads.
type checkReport struct {
	Domain  string `json:"domain"`
	Proceed bool   `json:"proceed"`
	Reply   string `json:"reply"`
}

// decodeReports reads one or more JSON arrays of reports (one per xargs
// batch).
func decodeReports(t *testing.T, out string) []checkReport {
	t.Helper()
	var all []checkReport
	dec := json.NewDecoder(strings.NewReader(out))
	for dec.More() {
		var batch []checkReport
		if err := dec.Decode(&batch); err != nil {
			t.Fatalf("output is not sealgate check's JSON: %v\n%s", err, out)
		}
		all = append(all, batch...)
	}
	return all
}

func reportDomains(rs []checkReport) []string {
	var ds []string
	for _, r := range rs {
		ds = append(ds, r.Domain)
	}
	return ds
}

// readmeLine is the one line of README.md that starts with prefix.
func readmeLine(t *testing.T, prefix string) string {
	t.Helper()
	var found []string
	for _, l := range strings.Split(string(readRepoFile(t, "README.md")), "\n") {
		if strings.HasPrefix(l, prefix) {
			found = append(found, l)
		}
	}
	if len(found) != 1 {
		t.Fatalf("README has %d lines starting with %q, want one", len(found), prefix)
	}
	return found[0]
}

// The README's rollout check, as an administrator would paste it:
// deploy/rollout-check.sh over a Postfix log (and a gzipped rotated
// one) checks each remote recipient domain once with sealgate check,
// leaves local deliveries, orig_to, smtpd rejections and address
// literals out, and says by its exit status and its JSON which domains
// would be deferred and why; the README's bare pipeline is the script's,
// and its jq line lists the deferred domains.
func TestRolloutCheck(t *testing.T) {
	w := newWorld(t)
	good := w.mx("good.test", "mx.good.test", 10, upstreamtest.MXOptions{Certificate: w.cert("mx.good.test")})
	w.mx("older.test", "mx.older.test", 10, upstreamtest.MXOptions{Certificate: w.cert("mx.older.test")})
	w.mx("plain.test", "mx.plain.test", 10, upstreamtest.MXOptions{})
	env := rolloutEnv(t, w)

	dir := t.TempDir()
	sample := filepath.Join("testdata", "rollout", "mail.log")
	rotated := filepath.Join(dir, "mail.log.2.gz")
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write([]byte("Nov 28 23:59:01 legacy postfix/smtp[3990]: 4XjQ1m0Abcz1: to=<frank@older.test>, relay=mx.older.test[127.1.0.3]:25, delay=0.3, dsn=2.0.0, status=sent (250 OK)\n"))
	zw.Close()
	goodOnly := filepath.Join(dir, "good.log")
	noSMTP := filepath.Join(dir, "local.log")
	for name, content := range map[string]string{
		rotated:  gz.String(),
		goodOnly: "Nov 30 09:00:00 legacy postfix/smtp[5001]: 4XkV0a1Bcdz1: to=<alice@good.test>, relay=mx.good.test[127.1.0.1]:25, delay=0.2, dsn=2.0.0, status=sent (250 OK)\n",
		noSMTP:   "Nov 30 09:00:00 legacy postfix/local[5002]: 4XkV0a1Bcdz2: to=<root@legacy.test>, relay=local, delay=0.1, dsn=2.0.0, status=sent (delivered to mailbox)\n",
	} {
		if err := os.WriteFile(name, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}

	script := filepath.Join("..", "deploy", "rollout-check.sh")
	tests := []struct {
		name        string
		logs        []string
		wantStatus  int
		wantDomains []string
		wantDefer   []string // domains that would not proceed
	}{
		{name: "a log and a gzipped rotated one", logs: []string{sample, rotated}, wantStatus: 1,
			wantDomains: []string{"good.test", "older.test", "plain.test"}, wantDefer: []string{"plain.test"}},
		{name: "every domain would proceed", logs: []string{goodOnly}, wantStatus: 0, wantDomains: []string{"good.test"}},
		{name: "no SMTP delivery in the log", logs: []string{noSMTP}, wantStatus: 2},
		{name: "a log that does not exist", logs: []string{filepath.Join(dir, "missing.log")}, wantStatus: 2},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out, status := runShell(t, env, exec.Command(script, tc.logs...))
			if status != tc.wantStatus {
				t.Fatalf("exit status %d, want %d\n%s", status, tc.wantStatus, out)
			}
			reports := decodeReports(t, out)
			if got := reportDomains(reports); !slices.Equal(got, tc.wantDomains) {
				t.Fatalf("checked domains %q, want %q", got, tc.wantDomains)
			}
			var deferred []string
			for _, r := range reports {
				if !r.Proceed {
					deferred = append(deferred, r.Domain)
					if !strings.HasPrefix(r.Reply, "451 4.7.4 "+r.Domain+": ") || !strings.Contains(r.Reply, "STARTTLS not offered") {
						t.Errorf("%s: reply %q, want 451 4.7.4 with the reason", r.Domain, r.Reply)
					}
				}
			}
			if !slices.Equal(deferred, tc.wantDefer) {
				t.Errorf("deferred %q, want %q", deferred, tc.wantDefer)
			}
		})
	}

	t.Run("the README's pipeline is the script's", func(t *testing.T) {
		const logs = "/var/log/mail.log*"
		line := readmeLine(t, "zcat -f -- "+logs+" | ")
		b, err := os.ReadFile(script)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(b), strings.Replace(line, logs, `"$@"`, 1)) {
			t.Fatalf("deploy/rollout-check.sh does not run the README's pipeline:\n%s", line)
		}
		out, status := runShell(t, env, exec.Command("sh", "-c", strings.Replace(line, logs, `"$0"`, 1), sample))
		if status != 123 { // xargs: sealgate check exited 1
			t.Errorf("exit status %d, want 123", status)
		}
		if got := reportDomains(decodeReports(t, out)); !slices.Equal(got, []string{"good.test", "plain.test"}) {
			t.Errorf("checked domains %q", got)
		}
	})

	t.Run("the README's jq line lists the deferred domains", func(t *testing.T) {
		out, status := runShell(t, env, exec.Command(script, sample, rotated))
		if status != 1 {
			t.Fatalf("exit status %d", status)
		}
		result := filepath.Join(dir, "rollout.json")
		if err := os.WriteFile(result, []byte(out), 0o644); err != nil {
			t.Fatal(err)
		}
		line := readmeLine(t, "jq -rs ")
		cmd := exec.Command("sh", "-c", strings.Replace(line, "rollout.json", `"$0"`, 1), result)
		listed, status := runShell(t, env, cmd)
		if status != 0 {
			t.Fatalf("%s: exit status %d", line, status)
		}
		lines := strings.Split(strings.TrimSpace(listed), "\n")
		if len(lines) != 1 || !strings.HasPrefix(lines[0], "plain.test\t451 4.7.4 plain.test: ") {
			t.Errorf("%s gave:\n%s", line, listed)
		}
	})

	if good.SawMailFrom() {
		t.Error("the rollout check sent MAIL FROM")
	}
}
