package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// runPolicy runs "sealgate policy args..." with env and returns stdout,
// stderr and the exit status.
func runPolicy(t *testing.T, env map[string]string, args ...string) (string, string, int) {
	t.Helper()
	cmd := exec.Command(binPath, append([]string{"policy"}, args...)...)
	cmd.Env = envList(env)
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return stdout.String(), stderr.String(), code
}

func TestPolicyCheckCommand(t *testing.T) {
	good := writePolicy(t, "example.test secure match=.mx.example.test", "[relay.test]:587 encrypt protocols=>=TLSv1.3")
	out, errOut, code := runPolicy(t, map[string]string{"SEALGATE_POLICY_FILE": good}, "check")
	if code != 0 || !strings.Contains(out, "valid: 2 entries") || !strings.Contains(out, ">=TLSv1.3") {
		t.Fatalf("check of a good file: exit %d\n%s%s", code, out, errOut)
	}

	bad := writePolicy(t, "a.test may", "b.test encrypt", "c.test none", "d.test secure tafile=missing.pem")
	out, errOut, code = runPolicy(t, nil, "check", bad)
	if code != 1 {
		t.Fatalf("check of a bad file: exit %d, want 1\n%s%s", code, out, errOut)
	}
	for _, want := range []string{bad + `:1: level "may"`, bad + `:3: level "none"`, bad + ":4: bad tafile", "invalid: 3 errors"} {
		if !strings.Contains(errOut, want) {
			t.Errorf("stderr lacks %q:\n%s", want, errOut)
		}
	}
	if _, _, code := runPolicy(t, nil, "check"); code != 2 {
		t.Errorf("check without a file: exit %d, want 2", code)
	}
}

// TestPolicyImportCommand converts a sample of the STARTTLS Everywhere list
// and checks the result with policy check, then starts the gateway on it.
func TestPolicyImportCommand(t *testing.T) {
	sample, err := filepath.Abs("../enforcement/localpolicy/starttlslist/testdata/policy.json")
	if err != nil {
		t.Fatal(err)
	}
	out, errOut, code := runPolicy(t, nil, "import-starttls-everywhere", sample)
	if code != 0 || !strings.Contains(errOut, `skipped "injection.test"`) || !strings.Contains(out, "# testing: trial.test") {
		t.Fatalf("import: exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	file := filepath.Join(t.TempDir(), "tls_policy")
	if err := os.WriteFile(file, []byte(out), 0o644); err != nil {
		t.Fatal(err)
	}
	check, errOut, code := runPolicy(t, nil, "check", file)
	if code != 0 || !strings.Contains(check, "valid: 3 entries") {
		t.Fatalf("check of the imported file: exit %d\n%s%s", code, check, errOut)
	}
	w := newWorld(t)
	g := w.start(map[string]string{"SEALGATE_POLICY_FILE": file})
	if !strings.Contains(g.logs.String(), "entries=3") {
		t.Errorf("the gateway did not load the 3 entries:\n%s", g.logs.String())
	}

	bad := filepath.Join(t.TempDir(), "policy.json")
	if err := os.WriteFile(bad, []byte(`{"policies": {`), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, _, code := runPolicy(t, nil, "import-starttls-everywhere", bad); code != 1 || out != "" {
		t.Errorf("import of invalid JSON: exit %d, want 1, output %q", code, out)
	}
}
