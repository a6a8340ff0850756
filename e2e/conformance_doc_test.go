package e2e

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// The documents that name tests as evidence, relative to the repository
// root. Each citation is a code span `dir/file_test.go: TestName` (or
// `TestName/subtest`, or a Fuzz or Benchmark function); a code span holding
// a bare `TestName` must name a test somewhere in the repository.
var citingDocs = []string{"docs/conformance.md", "docs/SECURITY.md"}

var (
	codeSpan     = regexp.MustCompile("`([^`\n]+)`")
	citation     = regexp.MustCompile(`^([A-Za-z0-9_./-]+_test\.go): ((?:Test|Fuzz|Benchmark)[A-Za-z0-9_]*)(?:/(.+))?$`)
	bareTestName = regexp.MustCompile(`^(?:Test|Fuzz|Benchmark)[A-Z][A-Za-z0-9_]*$`)
)

// TestDocumentsCiteRealTests keeps docs/conformance.md and docs/SECURITY.md
// true: every test they cite exists, in the file they name, and a cited
// subtest name appears in that file. The documents cannot claim a test that
// was renamed, moved or never written.
func TestDocumentsCiteRealTests(t *testing.T) {
	root := repoRoot(t)
	allTests := testFunctionsUnder(t, root)
	for _, doc := range citingDocs {
		t.Run(doc, func(t *testing.T) {
			text, err := os.ReadFile(filepath.Join(root, doc))
			if err != nil {
				t.Fatal(err)
			}
			cited := 0
			for _, c := range docCitations(string(text)) {
				if c.file == "" {
					if !allTests[c.name] {
						t.Errorf("%s cites %s: no test function of that name in the repository", doc, c.name)
					}
					continue
				}
				cited++
				if err := checkCitation(root, c); err != "" {
					t.Errorf("%s cites `%s`: %s", doc, c.raw, err)
				}
			}
			if cited == 0 {
				t.Errorf("%s cites no test as file_test.go: TestName", doc)
			}
		})
	}
}

// TestConformanceMUSTsHaveTests: in the RFC 8461, 7672 and 8689 tables of
// docs/conformance.md, every row whose requirement says MUST or MUST NOT
// either cites a test or says plainly that it is "not tested" or "not
// implemented".
func TestConformanceMUSTsHaveTests(t *testing.T) {
	text, err := os.ReadFile(filepath.Join(repoRoot(t), "docs/conformance.md"))
	if err != nil {
		t.Fatal(err)
	}
	rows := 0
	for _, r := range mustRows(string(text), "RFC 8461", "RFC 7672", "RFC 8689") {
		rows++
		if len(docCitations(r.tests)) == 0 && !strings.Contains(r.tests, "not tested") && !strings.Contains(r.tests, "not implemented") {
			t.Errorf("%s %s: a MUST with no test and no \"not tested\": %s", r.rfc, r.section, r.requirement)
		}
	}
	if rows < 20 {
		t.Errorf("found %d MUST rows for RFC 8461, 7672 and 8689; the tables are not where this test looks", rows)
	}
}

func TestDocCitationParsing(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want []docCitation
	}{
		{name: "file and test", in: "see `e2e/core_test.go: TestRelayDenied`.",
			want: []docCitation{{file: "e2e/core_test.go", name: "TestRelayDenied"}}},
		{name: "subtest with spaces", in: "`e2e/dane_test.go: TestDANEWithFakeDNS/match delivers`",
			want: []docCitation{{file: "e2e/dane_test.go", name: "TestDANEWithFakeDNS", sub: "match delivers"}}},
		{name: "fuzz target", in: "`proxy/property_fuzz_test.go: FuzzNoTruncation`",
			want: []docCitation{{file: "proxy/property_fuzz_test.go", name: "FuzzNoTruncation"}}},
		{name: "bare name", in: "`TestSoak` and `SEALGATE_MIN_TLS`",
			want: []docCitation{{name: "TestSoak"}}},
		{name: "other code spans ignored", in: "`451 4.7.5`, `Testing`, `mx: *.example.test`"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := docCitations(tc.in)
			if len(got) != len(tc.want) {
				t.Fatalf("got %+v, want %+v", got, tc.want)
			}
			for i := range got {
				got[i].raw = ""
				if got[i] != tc.want[i] {
					t.Errorf("got %+v, want %+v", got[i], tc.want[i])
				}
			}
		})
	}
}

func TestCheckCitation(t *testing.T) {
	root := repoRoot(t)
	tests := []struct {
		name    string
		c       docCitation
		wantErr string
	}{
		{name: "exists", c: docCitation{file: "e2e/core_test.go", name: "TestRelayDenied"}},
		{name: "subtest exists", c: docCitation{file: "e2e/dane_test.go", name: "TestDANEWithFakeDNS", sub: "match_delivers"}},
		{name: "invented test", c: docCitation{file: "e2e/core_test.go", name: "TestInventedForTheDocs"}, wantErr: "no function"},
		{name: "wrong file", c: docCitation{file: "e2e/body_test.go", name: "TestRelayDenied"}, wantErr: "no function"},
		{name: "missing file", c: docCitation{file: "e2e/missing_test.go", name: "TestRelayDenied"}, wantErr: "no such file"},
		{name: "invented subtest", c: docCitation{file: "e2e/dane_test.go", name: "TestDANEWithFakeDNS", sub: "never written"}, wantErr: "subtest"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := checkCitation(root, tc.c)
			if tc.wantErr == "" && err != "" || !strings.Contains(err, tc.wantErr) {
				t.Errorf("got %q, want an error containing %q", err, tc.wantErr)
			}
		})
	}
}

type docCitation struct {
	raw  string
	file string // empty for a bare test name
	name string
	sub  string
}

func docCitations(text string) []docCitation {
	var out []docCitation
	for _, m := range codeSpan.FindAllStringSubmatch(text, -1) {
		span := strings.TrimSpace(m[1])
		if c := citation.FindStringSubmatch(span); c != nil {
			out = append(out, docCitation{raw: span, file: c[1], name: c[2], sub: c[3]})
		} else if bareTestName.MatchString(span) {
			out = append(out, docCitation{raw: span, name: span})
		}
	}
	return out
}

// checkCitation returns what is wrong with c, or "".
func checkCitation(root string, c docCitation) string {
	path := filepath.Join(root, filepath.FromSlash(c.file))
	src, err := os.ReadFile(path)
	if err != nil {
		return "no such file " + c.file
	}
	funcs, err := topLevelFuncs(path)
	if err != nil {
		return err.Error()
	}
	if !funcs[c.name] {
		return "no function " + c.name + " in " + c.file
	}
	if c.sub != "" {
		// go test writes spaces in subtest names as underscores.
		withSpaces := strings.ReplaceAll(c.sub, "_", " ")
		if !strings.Contains(string(src), c.sub) && !strings.Contains(string(src), withSpaces) {
			return "no subtest named " + c.sub + " in " + c.file
		}
	}
	return ""
}

func topLevelFuncs(path string) (map[string]bool, error) {
	f, err := parser.ParseFile(token.NewFileSet(), path, nil, parser.SkipObjectResolution)
	if err != nil {
		return nil, err
	}
	funcs := map[string]bool{}
	for _, d := range f.Decls {
		if fn, ok := d.(*ast.FuncDecl); ok && fn.Recv == nil {
			funcs[fn.Name.Name] = true
		}
	}
	return funcs, nil
}

// testFunctionsUnder collects the top-level function names of every
// _test.go file under root.
func testFunctionsUnder(t *testing.T, root string) map[string]bool {
	t.Helper()
	all := map[string]bool{}
	err := filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (strings.HasPrefix(d.Name(), ".") || d.Name() == "testdata") && path != root {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, "_test.go") {
			return nil
		}
		funcs, err := topLevelFuncs(path)
		if err != nil {
			return err
		}
		for name := range funcs {
			all[name] = true
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return all
}

func repoRoot(t *testing.T) string {
	t.Helper()
	dir, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "go.mod")); err != nil {
		t.Fatalf("the repository root %s has no go.mod: %v", dir, err)
	}
	return dir
}

type mustRow struct {
	rfc, section, requirement, tests string
}

// mustRows returns the table rows under the "## RFC nnnn" headings named
// whose requirement column holds MUST. A row is
// | section | requirement | what sealgate does | tests |.
func mustRows(text string, rfcs ...string) []mustRow {
	var out []mustRow
	current := ""
	for _, line := range strings.Split(text, "\n") {
		if strings.HasPrefix(line, "## ") {
			current = ""
			for _, r := range rfcs {
				if strings.HasPrefix(line, "## "+r) {
					current = r
				}
			}
			continue
		}
		if current == "" || !strings.HasPrefix(line, "|") {
			continue
		}
		cells := strings.Split(strings.Trim(line, "|"), " | ")
		if len(cells) < 4 || !strings.Contains(cells[1], "MUST") {
			continue
		}
		out = append(out, mustRow{rfc: current, section: strings.TrimSpace(cells[0]), requirement: cells[1], tests: cells[len(cells)-1]})
	}
	return out
}
