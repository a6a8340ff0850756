package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"sealgate/certs/certstest"
	"sealgate/enforcement/localpolicy"
)

const sampleList = "../../enforcement/localpolicy/starttlslist/testdata/policy.json"

// runPolicyCmd runs "sealgate policy args..." with env and the clock at now.
func runPolicyCmd(t *testing.T, env map[string]string, now time.Time, stdin string, args ...string) (string, string, int) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	c := &policyCmd{env: env, now: func() time.Time { return now }, stdin: strings.NewReader(stdin), stdout: &stdout, stderr: &stderr}
	code := c.run(args)
	return stdout.String(), stderr.String(), code
}

func writeFile(t *testing.T, dir, name, text string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestPolicyCheck(t *testing.T) {
	dir := t.TempDir()
	ca := certstest.NewCA(t, "policy check CA")
	caFile := writeFile(t, dir, "ca.pem", string(ca.PEM()))
	fp := strings.Repeat("AB:", 31) + "AB"
	good := writeFile(t, dir, "good", ""+
		"# comment\n"+
		"example.test        secure  tafile=ca.pem\n"+
		".example.test       verify  match=hostname:.mx.example.test protocols=!SSLv2:!SSLv3:!TLSv1:!TLSv1.1\n"+
		"pin.test            fingerprint match="+fp+"\n"+
		"[relay.test]:587    encrypt\n")
	bad := writeFile(t, dir, "bad", ""+
		"a.test encrypt\n"+
		"b.test may\n"+
		"c.test none\n"+
		"d.test secure tafile=missing.pem\n"+
		"e.test encrypt ciphers=high\n")

	tests := []struct {
		name       string
		env        map[string]string
		args       []string
		wantCode   int
		wantStdout []string   // each must appear
		wantRows   [][]string // table rows, columns aligned
		wantStderr []string
	}{
		{
			name: "valid file printed as a table", args: []string{good}, wantCode: 0,
			wantStdout: []string{good + ": valid: 4 entries\n"},
			wantRows: [][]string{
				{"LINE", "DESTINATION", "LEVEL", "MATCH", "TAFILE", "PROTOCOLS"},
				{"2", "example.test", "secure", "nexthop:dot-nexthop", caFile, "-"},
				{"3", ".example.test", "verify", "hostname:.mx.example.test", "-", ">=TLSv1.2"},
				{"4", "pin.test", "fingerprint", fp, "-", "-"},
				{"5", "[relay.test]:587", "encrypt", "-", "-", "-"},
			},
		},
		{
			name: "file from SEALGATE_POLICY_FILE", env: map[string]string{"SEALGATE_POLICY_FILE": good},
			wantCode: 0, wantStdout: []string{good + ": valid: 4 entries"},
		},
		{
			name: "every error with file and line", args: []string{bad}, wantCode: 1,
			wantStderr: []string{
				bad + `:2: level "may" for b.test is refused`,
				bad + `:3: level "none" for c.test is refused`,
				bad + ":4: bad tafile for d.test",
				bad + `:5: unsupported attribute "ciphers"`,
				bad + ": invalid: 4 errors",
			},
		},
		{name: "missing file", args: []string{filepath.Join(dir, "nope")}, wantCode: 1, wantStderr: []string{"no such file"}},
		{name: "no file at all", wantCode: 2, wantStderr: []string{"SEALGATE_POLICY_FILE is not set"}},
		{name: "two files", args: []string{good, bad}, wantCode: 2, wantStderr: []string{"usage"}},
		{name: "unknown flag", args: []string{"--yaml", good}, wantCode: 2, wantStderr: []string{"usage"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out, errOut, code := runPolicyCmd(t, tc.env, time.Now(), "", append([]string{"check"}, tc.args...)...)
			if code != tc.wantCode {
				t.Errorf("exit %d, want %d\nstdout:\n%s\nstderr:\n%s", code, tc.wantCode, out, errOut)
			}
			for _, w := range tc.wantStdout {
				if !strings.Contains(out, w) {
					t.Errorf("stdout lacks %q:\n%s", w, out)
				}
			}
			for _, w := range tc.wantStderr {
				if !strings.Contains(errOut, w) {
					t.Errorf("stderr lacks %q:\n%s", w, errOut)
				}
			}
			wantAligned(t, out, tc.wantRows)
		})
	}
}

// wantAligned checks that out holds rows, one a line, in order, with each
// column starting at the same offset on every line.
func wantAligned(t *testing.T, out string, rows [][]string) {
	t.Helper()
	var starts []int
	lines := strings.Split(out, "\n")
	for _, row := range rows {
		parts := make([]string, len(row))
		for i, c := range row {
			parts[i] = regexp.QuoteMeta(c)
		}
		re := regexp.MustCompile("^" + strings.Join(parts, " +") + "$")
		found := false
		for _, l := range lines {
			if !re.MatchString(l) {
				continue
			}
			found = true
			var at []int
			off := 0
			for _, c := range row {
				i := strings.Index(l[off:], c)
				at = append(at, off+i)
				off += i + len(c)
			}
			if starts == nil {
				starts = at
			} else if !slices.Equal(at, starts) {
				t.Errorf("columns of %q start at %v, want %v:\n%s", l, at, starts, out)
			}
		}
		if !found {
			t.Errorf("no row %q in:\n%s", row, out)
		}
	}
}

func TestPolicyCheckJSON(t *testing.T) {
	dir := t.TempDir()
	good := writeFile(t, dir, "good", "example.test verify protocols=>=TLSv1.3\n[relay.test] encrypt\n")
	bad := writeFile(t, dir, "bad", "a.test may\nb.test secure match=\n")
	var r checkReport
	out, _, code := runPolicyCmd(t, nil, time.Now(), "", "check", "--json", good)
	if err := json.Unmarshal([]byte(out), &r); err != nil || code != 0 {
		t.Fatalf("exit %d, %v:\n%s", code, err, out)
	}
	want := checkedEntry{Destination: "example.test", Level: "verify", Match: []string{"hostname"}, Protocols: ">=TLSv1.3", Line: 1}
	if !r.Valid || len(r.Entries) != 2 || len(r.Errors) != 0 || !equalEntry(r.Entries[0], want) || r.Entries[1].Destination != "[relay.test]" {
		t.Errorf("report %+v", r)
	}

	out, _, code = runPolicyCmd(t, nil, time.Now(), "", "check", "--json", bad)
	r = checkReport{}
	if err := json.Unmarshal([]byte(out), &r); err != nil || code != 1 {
		t.Fatalf("exit %d, %v:\n%s", code, err, out)
	}
	if r.Valid || len(r.Entries) != 0 || len(r.Errors) != 2 ||
		r.Errors[0].Line != 1 || r.Errors[0].File != bad || !strings.Contains(r.Errors[0].Error, "cleartext") ||
		r.Errors[1].Line != 2 || !strings.Contains(r.Errors[1].Error, "bad match") {
		t.Errorf("report %+v", r)
	}
}

func equalEntry(a, b checkedEntry) bool {
	return a.Destination == b.Destination && a.Level == b.Level && strings.Join(a.Match, ":") == strings.Join(b.Match, ":") &&
		a.TAFile == b.TAFile && a.Protocols == b.Protocols && a.Line == b.Line && len(a.Fingerprints) == len(b.Fingerprints)
}

func TestPolicyImportSTARTTLSEverywhere(t *testing.T) {
	sample, err := os.ReadFile(sampleList)
	if err != nil {
		t.Fatal(err)
	}
	expires := time.Date(2024, 6, 17, 6, 13, 20, 0, time.UTC)
	tests := []struct {
		name        string
		args        []string
		stdin       string
		now         time.Time
		wantCode    int
		wantEntries int // of the output, parsed; -1: no output expected
		wantStderr  []string
		notStderr   string
	}{
		{
			name: "sample list", args: []string{sampleList}, now: expires.Add(-time.Hour), wantEntries: 3,
			wantStderr: []string{`skipped "keyword.test": mxs entry "nexthop"`, `skipped "noalias.test"`},
			notStderr:  "expired",
		},
		{
			name: "expired list still converted, with a warning", args: []string{sampleList}, now: expires.Add(time.Hour), wantEntries: 3,
			wantStderr: []string{"warning: the list expired at 2024-06-17T06:13:20Z"},
		},
		{name: "standard input", args: []string{"-"}, stdin: string(sample), now: expires, wantEntries: 3},
		{name: "invalid JSON", args: []string{"-"}, stdin: `{"policies": `, wantCode: 1, wantEntries: -1, wantStderr: []string{"not a STARTTLS Everywhere policy list"}},
		{name: "missing file", args: []string{"/nonexistent/policy.json"}, wantCode: 1, wantEntries: -1, wantStderr: []string{"no such file"}},
		{name: "no file", wantCode: 2, wantEntries: -1, wantStderr: []string{"usage"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out, errOut, code := runPolicyCmd(t, nil, tc.now, tc.stdin, append([]string{"import-starttls-everywhere"}, tc.args...)...)
			if code != tc.wantCode {
				t.Fatalf("exit %d, want %d\nstderr:\n%s", code, tc.wantCode, errOut)
			}
			for _, w := range tc.wantStderr {
				if !strings.Contains(errOut, w) {
					t.Errorf("stderr lacks %q:\n%s", w, errOut)
				}
			}
			if tc.notStderr != "" && strings.Contains(errOut, tc.notStderr) {
				t.Errorf("stderr has %q:\n%s", tc.notStderr, errOut)
			}
			if tc.wantEntries < 0 {
				if out != "" {
					t.Errorf("output on failure:\n%s", out)
				}
				return
			}
			p, err := localpolicy.Parse("imported", strings.NewReader(out))
			if err != nil || p.Len() != tc.wantEntries {
				t.Fatalf("output: %v, %d entries:\n%s", err, p.Len(), out)
			}
			if !regexp.MustCompile(`(?m)^bigmail\.test +secure match=\.mx\.bigmail\.test:backup\.bigmail\.test$`).MatchString(out) {
				t.Errorf("no secure line for bigmail.test:\n%s", out)
			}
		})
	}
}

func TestPolicyUsage(t *testing.T) {
	for _, args := range [][]string{nil, {"frobnicate"}} {
		if _, errOut, code := runPolicyCmd(t, nil, time.Now(), "", args...); code != 2 || !strings.Contains(errOut, "usage") {
			t.Errorf("policy %q: exit %d, stderr %q", args, code, errOut)
		}
	}
}
