package starttlslist

import (
	"bytes"
	"errors"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"sealgate/enforcement/localpolicy"
)

func readSample(t *testing.T) *List {
	t.Helper()
	data, err := os.ReadFile("testdata/policy.json")
	if err != nil {
		t.Fatal(err)
	}
	l, err := Parse(data)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func TestParseSample(t *testing.T) {
	l := readSample(t)
	if l.Version != "0.1" || l.Timestamp != "2024-06-10T06:13:20Z" || l.Expires != "2024-06-17T06:13:20+00:00" {
		t.Errorf("header = %q %q %q", l.Version, l.Timestamp, l.Expires)
	}
	if want := time.Date(2024, 6, 17, 6, 13, 20, 0, time.UTC); !l.ExpiresAt.Equal(want) {
		t.Errorf("ExpiresAt = %v, want %v", l.ExpiresAt, want)
	}
	wantPolicies := []Policy{
		{Domain: "bigmail-alias.test", Mode: ModeEnforce, MXs: []string{".mx.bigmail.test", "backup.bigmail.test"}, Alias: "bigmail"},
		{Domain: "bigmail.test", Mode: ModeEnforce, MXs: []string{".mx.bigmail.test", "backup.bigmail.test"}, Alias: "bigmail"},
		{Domain: "example.test", Mode: ModeEnforce, MXs: []string{".example.net.test", "mail.example.test"}},
		{Domain: "nomode.test", Mode: ModeTesting, MXs: []string{"mx.nomode.test"}},
		{Domain: "testing.test", Mode: ModeTesting, MXs: []string{"mx.testing.test"}},
		{Domain: "trial.test", Mode: ModeTesting, MXs: []string{".trial.test"}, Alias: "trial"},
	}
	if !slices.EqualFunc(l.Policies, wantPolicies, func(a, b Policy) bool {
		return a.Domain == b.Domain && a.Mode == b.Mode && a.Alias == b.Alias && slices.Equal(a.MXs, b.MXs)
	}) {
		t.Errorf("policies:\n got %+v\nwant %+v", l.Policies, wantPolicies)
	}

	tests := []struct {
		domain string
		reason string
	}{
		{domain: ".dot.test", reason: "not a mail domain name"},
		{domain: "badmode.test", reason: `mode "opportunistic"`},
		{domain: "brokenalias.test", reason: `mode "sometimes"`},
		{domain: "example.test", reason: `the same domain as "Example.TEST"`},
		{domain: "injection.test", reason: `mxs entry "mx.injection.test,tafile=/etc/passwd"`},
		{domain: "keyword.test", reason: `mxs entry "nexthop"`},
		{domain: "noalias.test", reason: `policy-alias "missing" is not in policy-aliases`},
		{domain: "nomx.test", reason: "no mxs"},
		{domain: "notobject.test", reason: "not a policy object"},
	}
	if len(l.Skipped) != len(tests) {
		t.Errorf("skipped %d entries, want %d: %v", len(l.Skipped), len(tests), l.Skipped)
	}
	for _, tc := range tests {
		t.Run(tc.domain, func(t *testing.T) {
			for _, err := range l.Skipped {
				var ee *EntryError
				if errors.As(err, &ee) && ee.Domain == tc.domain {
					if !strings.Contains(ee.Reason, tc.reason) {
						t.Errorf("reason %q, want one containing %q", ee.Reason, tc.reason)
					}
					return
				}
			}
			t.Errorf("%s was not reported as skipped: %v", tc.domain, l.Skipped)
		})
	}
}

// TestRoundTrip: the written file parses with the local policy parser,
// with a secure entry for each enforce policy, its mxs as match=, and
// nothing for testing policies.
func TestRoundTrip(t *testing.T) {
	l := readSample(t)
	var out bytes.Buffer
	if _, err := l.WriteTo(&out); err != nil {
		t.Fatal(err)
	}
	text := out.String()
	for _, want := range []string{
		"# testing: testing.test mxs=mx.testing.test\n",
		"# testing: trial.test mxs=.trial.test policy-alias \"trial\"\n",
		"# bigmail.test: policy-alias \"bigmail\"\n",
		"3 enforce, 3 testing, 9 skipped",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("output lacks %q:\n%s", want, text)
		}
	}
	p, err := localpolicy.Parse("imported", strings.NewReader(text))
	if err != nil {
		t.Fatalf("the output does not parse: %v\n%s", err, text)
	}
	if p.Len() != 3 {
		t.Errorf("%d entries, want 3:\n%s", p.Len(), text)
	}
	for _, pol := range l.Policies {
		e, ok := p.Lookup(pol.Domain)
		if pol.Mode == ModeTesting {
			if ok && e.Destination == pol.Domain {
				t.Errorf("testing policy %s became entry %+v", pol.Domain, e)
			}
			continue
		}
		if !ok || e.Level != localpolicy.LevelSecure || !slices.Equal(e.Match, pol.MXs) || e.Roots != nil {
			t.Errorf("%s: entry %+v, want secure match=%v", pol.Domain, e, pol.MXs)
		}
	}
}

func TestParseRefusesNonList(t *testing.T) {
	tests := []struct {
		name string
		data string
	}{
		{name: "not JSON", data: "policies: {}"},
		{name: "truncated", data: `{"policies": {"a.test": {"mode": "enforce"`},
		{name: "no policies", data: `{"version": "0.1"}`},
		{name: "policies not an object", data: `{"policies": ["a.test"]}`},
		{name: "array", data: `[]`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if l, err := Parse([]byte(tc.data)); !errors.Is(err, ErrFormat) {
				t.Errorf("Parse = %v, %v; want ErrFormat", l, err)
			}
		})
	}
}

// TestHeaderCannotInjectLines: list fields written into comments are
// quoted, so a newline in them cannot add a policy line.
func TestHeaderCannotInjectLines(t *testing.T) {
	l, err := Parse([]byte(`{"version": "1\nevil.test encrypt", "timestamp": "x\ny.test encrypt",
		"policy-aliases": {"a\nz.test encrypt": {"mode": "testing", "mxs": ["mx.a.test"]}},
		"policies": {"a.test": {"policy-alias": "a\nz.test encrypt"}}}`))
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	l.WriteTo(&out)
	p, err := localpolicy.Parse("imported", &out)
	if err != nil || p.Len() != 0 {
		t.Fatalf("entries %d, error %v:\n%s", p.Len(), err, out.String())
	}
}
