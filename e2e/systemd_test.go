package e2e

import (
	"bufio"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// maxExposure is the overall exposure level `systemd-analyze security`
// gives deploy/systemd/sealgate.service, as the README records it. A
// change to the unit that weakens it fails TestSystemdUnitSecurity.
const maxExposure = 1.5

// repoFile is the path of a file of the repository; the e2e tests run in
// the e2e folder.
func repoFile(parts ...string) string {
	return filepath.Join(append([]string{".."}, parts...)...)
}

// needTool returns the path of a program that a Debian package installs,
// failing the test (never skipping it) when it is missing.
func needTool(t testing.TB, name, debianPackage string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err == nil {
		return p
	}
	for _, dir := range []string{"/usr/sbin", "/sbin", "/usr/bin", "/bin"} {
		if p, lerr := exec.LookPath(filepath.Join(dir, name)); lerr == nil {
			return p
		}
	}
	t.Fatalf("%s not found: install the Debian package %s (make deps)", name, debianPackage)
	return ""
}

// unitWithBinary copies the unit into a temporary folder with ExecStart
// pointing at bin, so that systemd-analyze finds the program.
func unitWithBinary(t *testing.T, unit []byte, bin string) string {
	t.Helper()
	text := strings.ReplaceAll(string(unit), "/usr/local/bin/sealgate", bin)
	p := filepath.Join(t.TempDir(), "sealgate.service")
	if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func readRepoFile(t *testing.T, parts ...string) []byte {
	t.Helper()
	b, err := os.ReadFile(repoFile(parts...))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestSystemdUnitVerifies runs `systemd-analyze verify` on the unit and on
// broken copies of it, which must be refused (so a pass means something).
func TestSystemdUnitVerifies(t *testing.T) {
	analyze := needTool(t, "systemd-analyze", "systemd")
	unit := readRepoFile(t, "deploy", "systemd", "sealgate.service")
	tests := []struct {
		name    string
		edit    func(string) string
		wantErr string
	}{
		{name: "as shipped", edit: func(s string) string { return s }},
		{
			name: "relative ExecStart",
			edit: func(s string) string {
				return strings.Replace(s, "ExecStart="+binPath, "ExecStart=sealgate-nowhere serve", 1)
			},
			wantErr: "sealgate-nowhere",
		},
		{
			name: "unknown setting",
			edit: func(s string) string {
				return strings.Replace(s, "[Service]\n", "[Service]\nProtectEverything=yes\n", 1)
			},
			wantErr: "ProtectEverything",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := unitWithBinary(t, unit, binPath)
			b, _ := os.ReadFile(p)
			if err := os.WriteFile(p, []byte(tc.edit(string(b))), 0o644); err != nil {
				t.Fatal(err)
			}
			out, err := exec.Command(analyze, "verify", p).CombinedOutput()
			// Lines about other units of the machine are not ours.
			var ours []string
			for _, l := range strings.Split(string(out), "\n") {
				if strings.Contains(l, "sealgate") {
					ours = append(ours, l)
				}
			}
			if tc.wantErr == "" {
				if err != nil || len(ours) > 0 {
					t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
				}
				return
			}
			if !strings.Contains(strings.Join(ours, "\n"), tc.wantErr) {
				t.Fatalf("systemd-analyze verify did not name %q: %v\n%s", tc.wantErr, err, out)
			}
		})
	}
}

var exposureLine = regexp.MustCompile(`Overall exposure level for sealgate\.service: ([0-9.]+)`)

// TestSystemdUnitSecurity asks `systemd-analyze security --offline=yes`
// (systemd 252 and later) to rate the unit and holds it to the exposure
// the README records.
func TestSystemdUnitSecurity(t *testing.T) {
	analyze := needTool(t, "systemd-analyze", "systemd")
	unit := readRepoFile(t, "deploy", "systemd", "sealgate.service")
	p := unitWithBinary(t, unit, binPath)
	out, err := exec.Command(analyze, "security", "--offline=yes", "--no-pager", p).CombinedOutput()
	if err != nil {
		t.Fatalf("systemd-analyze security --offline=yes: %v\n%s", err, out)
	}
	m := exposureLine.FindSubmatch(out)
	if m == nil {
		t.Fatalf("no overall exposure level in:\n%s", out)
	}
	got, err := strconv.ParseFloat(string(m[1]), 64)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("exposure level %.1f", got)
	if got > maxExposure {
		t.Fatalf("exposure level %.1f, the README records %.1f:\n%s", got, maxExposure, out)
	}
	readme := string(readRepoFile(t, "README.md"))
	if want := "exposure level " + strconv.FormatFloat(maxExposure, 'f', 1, 64); !strings.Contains(readme, want) {
		t.Errorf("README does not record %q", want)
	}
}

// configEnvNames returns the env tags of the fields of the Config struct
// in the Go file at path, prefixed with SEALGATE_.
func configEnvNames(t *testing.T, path string) map[string]bool {
	t.Helper()
	f, err := parser.ParseFile(token.NewFileSet(), path, nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	ast.Inspect(f, func(n ast.Node) bool {
		ts, ok := n.(*ast.TypeSpec)
		if !ok || ts.Name.Name != "Config" {
			return true
		}
		st, ok := ts.Type.(*ast.StructType)
		if !ok {
			return false
		}
		for _, field := range st.Fields.List {
			if field.Tag == nil {
				continue
			}
			tag, err := strconv.Unquote(field.Tag.Value)
			if err != nil {
				t.Fatal(err)
			}
			if name := reflect.StructTag(tag).Get("env"); name != "" {
				names["SEALGATE_"+name] = true
			}
		}
		return false
	})
	if len(names) == 0 {
		t.Fatalf("no env tags in the Config struct of %s", path)
	}
	return names
}

var envFileName = regexp.MustCompile(`^#?\s*(SEALGATE_[A-Z0-9_]+)=`)

// unknownEnvNames returns the SEALGATE_* names set or shown (commented)
// in an environment file that are not in known.
func unknownEnvNames(envFile string, known map[string]bool) []string {
	var bad []string
	sc := bufio.NewScanner(strings.NewReader(envFile))
	for sc.Scan() {
		if m := envFileName.FindStringSubmatch(strings.TrimSpace(sc.Text())); m != nil && !known[m[1]] {
			bad = append(bad, m[1])
		}
	}
	return bad
}

// TestSystemdEnvFileNamesKnown checks that every SEALGATE_* variable the
// environment template and the unit name is one sealgate reads: a
// misspelt variable would be ignored silently.
func TestSystemdEnvFileNamesKnown(t *testing.T) {
	known := configEnvNames(t, repoFile("cmd", "sealgate", "config.go"))
	for _, want := range []string{"SEALGATE_LISTEN", "SEALGATE_STATE_DIR", "SEALGATE_DNS_RESOLVER"} {
		if !known[want] {
			t.Fatalf("config.go parsed without %s: %v", want, known)
		}
	}
	tests := []struct {
		name string
		text string
		want []string
	}{
		{name: "sealgate.env", text: string(readRepoFile(t, "deploy", "systemd", "sealgate.env"))},
		{name: "sealgate.service", text: strings.ReplaceAll(string(readRepoFile(t, "deploy", "systemd", "sealgate.service")), "Environment=", "")},
		{name: "appliance.conf", text: string(readRepoFile(t, "deploy", "appliance", "appliance.conf"))},
		{name: "misspelt", text: "SEALGATE_LISTEN=:25\n#SEALGATE_LISTEN_ADDR=:25\nSEALGATE_DNS_RESOLVERS=127.0.0.1:53\n", want: []string{"SEALGATE_LISTEN_ADDR", "SEALGATE_DNS_RESOLVERS"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := unknownEnvNames(tc.text, known); !slices.Equal(got, tc.want) {
				t.Fatalf("unknown names %v, want %v", got, tc.want)
			}
		})
	}
}
