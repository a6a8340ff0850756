package starttlslist

import (
	"bytes"
	"os"
	"strings"
	"testing"

	"sealgate/enforcement/localpolicy"
)

// FuzzParse feeds arbitrary data to Parse. It must not panic, and what it
// accepts must write a file that the local policy parser accepts, with
// exactly one secure entry per enforce policy and no other entry.
func FuzzParse(f *testing.F) {
	sample, err := os.ReadFile("testdata/policy.json")
	if err != nil {
		f.Fatal(err)
	}
	for _, seed := range []string{
		string(sample),
		`{"policies": {}}`,
		`{"policies": {"a.test": {"mode": "enforce", "mxs": [".a.test"]}}}`,
		`{"policies": {"a.test": {"policy-alias": "x"}}, "policy-aliases": {"x": {"mode": "enforce", "mxs": ["mx.a.test"]}}}`,
		`{"expires": 1, "timestamp": "2014-06-06T14:30:16", "policies": {"a.test": {"mxs": ["b.test"]}}}`,
		`{"policies": {"a.test": {"mode": "enforce", "mxs": ["mx.a.test tafile=/x"]}}}`,
		`{"policies": {"A.test.": {"mode": "enforce", "mxs": ["MX.a.test."]}, "a.test": {"mode": "enforce", "mxs": ["b.test"]}}}`,
		`null`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		l, err := Parse(data)
		if err != nil {
			if l != nil {
				t.Fatalf("list returned with error %v", err)
			}
			return
		}
		var out bytes.Buffer
		if _, err := l.WriteTo(&out); err != nil {
			t.Fatal(err)
		}
		p, err := localpolicy.Parse("imported", strings.NewReader(out.String()))
		if err != nil {
			t.Fatalf("output does not parse: %v\n%s", err, out.String())
		}
		enforce := 0
		for _, pol := range l.Policies {
			if pol.Mode != ModeEnforce {
				continue
			}
			enforce++
			e, ok := p.Lookup(pol.Domain)
			if !ok || e.Destination != pol.Domain || e.Level != localpolicy.LevelSecure || e.Roots != nil || e.MinVersion != 0 {
				t.Fatalf("%s: entry %+v\n%s", pol.Domain, e, out.String())
			}
		}
		if p.Len() != enforce {
			t.Fatalf("%d entries for %d enforce policies:\n%s", p.Len(), enforce, out.String())
		}
	})
}
