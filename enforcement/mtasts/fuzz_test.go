package mtasts

import (
	"reflect"
	"strings"
	"testing"
)

func FuzzParsePolicy(f *testing.F) {
	f.Add([]byte(rfcPolicy))
	f.Add([]byte(strings.ReplaceAll(rfcPolicy, "\n", "\r\n") + "\r\n"))
	f.Add([]byte("version: STSv1\nmode: none\nmax_age: 0\n"))
	f.Add([]byte("version: STSv1\nmode: testing\nmx: *.example.net\nmax_age: 31557600\nx: y\n"))
	f.Add([]byte("version: STSv1\nmode: enforce\nmode: enforce\nmx: a\nmax_age: 1"))
	f.Add([]byte("version:STSv1\n\nmode:enforce \nmx:*example.com\nmax_age:-1"))
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

func FuzzParseTXT(f *testing.F) {
	// Records are separated by NUL in the fuzz input.
	f.Add("v=STSv1; id=20160831085700Z;")
	f.Add("v=STSv1 ;\tid=abc ; ext=1;")
	f.Add("v=spf1 -all\x00v=STSv1; id=abc")
	f.Add("v=STSv1; id=abc\x00v=STSv1; id=def")
	f.Add("v=STSv10; id=abc")
	f.Add("v=STSv1;; id=a=b")
	f.Fuzz(func(t *testing.T, in string) {
		records := strings.Split(in, "\x00")
		id, err := ParseTXT(records)
		if err != nil {
			if id != "" {
				t.Fatal("id returned with an error")
			}
			return
		}
		if !validID(id) {
			t.Fatalf("accepted id %q", id)
		}
		n := 0
		for _, r := range records {
			if isSTSRecord(r) {
				n++
				if !strings.Contains(r, "id="+id) {
					t.Fatalf("id %q not in record %q", id, r)
				}
			}
		}
		if n != 1 {
			t.Fatalf("accepted %d v=STSv1 records", n)
		}
	})
}
