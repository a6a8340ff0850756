package mtasts

import (
	"reflect"
	"regexp"
	"strings"
	"testing"
	"unicode/utf8"
)

// policyLine is one field of RFC 8461 §3.2 with its trailing *WSP, the
// terminator removed: sts-policy-ext-name ":" *WSP sts-policy-ext-value
// (every defined field is also a well-formed extension field).
var policyLine = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,31}:[ \t]*[^\x00-\x20\x7f](?:[^\x00-\x1f\x7f]*[^\x00-\x20\x7f])?[ \t]*$`)

func FuzzParsePolicy(f *testing.F) {
	f.Add([]byte(rfcPolicy))
	f.Add([]byte(strings.ReplaceAll(rfcPolicy, "\n", "\r\n") + "\r\n"))
	f.Add([]byte("version: STSv1\nmode: none\nmax_age: 0\n"))
	f.Add([]byte("version: STSv1\nmode: testing\nmx: *.example.net\nmax_age: 31557600\nx: y\n"))
	f.Add([]byte("version: STSv1\nmode: enforce\nmode: enforce\nmx: a\nmax_age: 1"))
	f.Add([]byte("version:STSv1\n\nmode:enforce \nmx:*example.com\nmax_age:-1"))
	// Repeated fields: the first counts.
	f.Add([]byte("version: STSv1\nversion: STSv2\nmode: enforce\nmode: none\nmx: a.example\nmax_age: 1\nmax_age: x y\n"))
	// Blank lines, whitespace and extension values at the edge of the grammar.
	f.Add([]byte("\nversion: STSv1\nmode: none\nmax_age: 1\n"))
	f.Add([]byte("version: STSv1\r\n\r\nmode: none\r\nmax_age: 1\r\n\r\n\r\n"))
	f.Add([]byte("version: STSv1\nmode: none\nmax_age: 1\nx: a\tb\n"))
	f.Add([]byte("version: STSv1\nmode: none\nmax_age: 1\nx:\n"))
	f.Add([]byte("version: STSv1 \t\nmode:\tnone\t\nmax_age: 1\nx: a b ü;=: \n"))
	f.Add([]byte("version: STSv1\nmode: none\nmax_age: 1\n \n"))
	f.Fuzz(func(t *testing.T, body []byte) {
		p, err := ParsePolicy(body)
		if err != nil {
			if p != nil {
				t.Fatal("policy returned with an error")
			}
			if _, ok := err.(*PolicyError); !ok {
				t.Fatalf("error %T is not *PolicyError", err)
			}
			return
		}
		if p.Version != Version || p.Mode < ModeNone || p.Mode > ModeEnforce ||
			p.MaxAge < 0 || p.MaxAge > MaxMaxAge || p.Mode != ModeNone && len(p.MX) == 0 {
			t.Fatalf("accepted an out-of-range policy %+v", p)
		}
		// The grammar holds for every line but the tolerated empty ones
		// at the end.
		if !utf8.Valid(body) {
			t.Fatal("accepted invalid UTF-8")
		}
		lines := strings.Split(strings.TrimRight(string(body), "\r\n"), "\n")
		for i, line := range lines {
			if line = strings.TrimSuffix(line, "\r"); !policyLine.MatchString(line) {
				t.Fatalf("accepted line %d %q outside the grammar", i+1, line)
			}
		}
		for _, mx := range p.MX {
			if !validMXPattern(mx) || mx != strings.ToLower(mx) {
				t.Fatalf("accepted mx %q", mx)
			}
			if !strings.HasPrefix(mx, "*.") && !p.Match(mx) {
				t.Fatalf("policy does not match its own mx %q", mx)
			}
		}
		again, err := ParsePolicy([]byte(p.String()))
		if err != nil || !reflect.DeepEqual(again, p) {
			t.Fatalf("String() does not round-trip: %q gives %+v, %v", p.String(), again, err)
		}
	})
}

// stsRecord is the grammar of RFC 8461 §3.1 (an sts-id is also a
// well-formed extension field).
var stsRecord = regexp.MustCompile(`^v=STSv1(?:[ \t]*;[ \t]*[A-Za-z0-9][A-Za-z0-9_.-]{0,31}=[\x21-\x3a\x3c\x3e-\x7e]+)+(?:[ \t]*;[ \t]*)?$`)

// firstID is the value of the record's first id field.
var firstID = regexp.MustCompile(`;[ \t]*id=([^ \t;]*)`)

func FuzzParseTXT(f *testing.F) {
	// Records are separated by NUL in the fuzz input.
	f.Add("v=STSv1; id=20160831085700Z;")
	f.Add("v=STSv1 ;\tid=abc ; ext=1;")
	f.Add("v=spf1 -all\x00v=STSv1; id=abc")
	f.Add("v=STSv1; id=abc\x00v=STSv1; id=def")
	f.Add("v=STSv10; id=abc")
	f.Add("v=STSv1;; id=a=b")
	f.Add("v=STSv1; id=abc; id=def")
	f.Add("v=STSv1; id=a_b; id=abc")
	f.Add("v=STSv1;\tid=abc")
	f.Add("v=STSv1; id=abc ")
	f.Add("v=STSv1; id=abc; \t")
	f.Add("v=STSv1; id=abc; x=caf\xc3\xa9")
	f.Add(`v=STSv1;\009id=abc`)
	f.Fuzz(func(t *testing.T, in string) {
		records := strings.Split(in, "\x00")
		id, err := ParseTXT(records)
		var sts []string
		for _, r := range records {
			if isSTSRecord(r) {
				sts = append(sts, r)
			}
		}
		// The oracle: exactly one record starting with v=STSv1, in the
		// grammar, whose first id field holds a valid id.
		want := ""
		if len(sts) == 1 && stsRecord.MatchString(sts[0]) {
			if m := firstID.FindStringSubmatch(sts[0]); m != nil && validID(m[1]) {
				want = m[1]
			}
		}
		if err != nil {
			if id != "" {
				t.Fatal("id returned with an error")
			}
			if want != "" {
				t.Fatalf("refused %q (%v), the grammar gives id %q", records, err, want)
			}
			return
		}
		if id != want {
			t.Fatalf("ParseTXT(%q) = %q, the grammar gives %q", records, id, want)
		}
	})
}
