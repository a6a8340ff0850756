package localpolicy

import (
	"crypto/x509"
	"path/filepath"
	"slices"
	"testing"
)

func TestLookup(t *testing.T) {
	p, err := parseString("policy.cf", ""+
		"example.test          secure\n"+ // 1
		".example.test         verify\n"+ // 2
		".b.example.test       dane-only\n"+ // 3
		"c.b.example.test      encrypt\n"+ // 4
		".test                 dane\n"+ // 5
		"[relay.example.test]  fingerprint match="+colonHex(digest("r"))+"\n"+ // 6
		"[relay.example.test]:587 encrypt\n"+ // 7
		"relay.example.test:2525 secure\n") // 8
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		query    string
		wantLine int // 0: no entry
	}{
		{name: "exact domain", query: "example.test", wantLine: 1},
		{name: "child via dot entry", query: "a.example.test", wantLine: 2},
		{name: "nearest parent first", query: "a.b.example.test", wantLine: 3},
		{name: "dot entry for b does not match b itself", query: "b.example.test", wantLine: 2},
		{name: "exact beats dot entries", query: "c.b.example.test", wantLine: 4},
		{name: "grandchild of exact uses parents", query: "d.c.b.example.test", wantLine: 3},
		{name: "top-level wildcard", query: "other.test", wantLine: 5},
		{name: "case and trailing dot ignored", query: "A.Example.TEST.", wantLine: 2},
		{name: "bracketed nexthop exact", query: "[relay.example.test]", wantLine: 6},
		{name: "bracketed nexthop with port", query: "[Relay.Example.Test]:587", wantLine: 7},
		{name: "host:port nexthop", query: "relay.example.test:2525", wantLine: 8},
		{name: "bracketed nexthop gets no parent match", query: "[mx.example.test]", wantLine: 0},
		{name: "other port gets no match", query: "[relay.example.test]:25", wantLine: 0},
		{name: "other tld", query: "example.invalid", wantLine: 0},
		{name: "tld alone is not .test", query: "test", wantLine: 0},
		{name: "empty", query: "", wantLine: 0},
		{name: "dot", query: ".", wantLine: 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e, ok := p.Lookup(tc.query)
			if ok != (tc.wantLine != 0) {
				t.Fatalf("Lookup(%q) found %v, want %v", tc.query, ok, tc.wantLine != 0)
			}
			if ok && e.Line != tc.wantLine {
				t.Errorf("Lookup(%q) = %s (line %d), want line %d", tc.query, e.Destination, e.Line, tc.wantLine)
			}
		})
	}
}

func TestLookupDotEntryExcludesDomain(t *testing.T) {
	p, err := parseString("policy.cf", ".only.test secure\n")
	if err != nil {
		t.Fatal(err)
	}
	if e, ok := p.Lookup("only.test"); ok {
		t.Errorf("Lookup(only.test) = %s; a .domain entry must not match the domain", e.Destination)
	}
	if _, ok := p.Lookup("mx.only.test"); !ok {
		t.Error("Lookup(mx.only.test) found nothing; want .only.test")
	}
}

func TestLookupNexthop(t *testing.T) {
	p, err := parseString("policy.cf", ""+
		"[smart.example.test]       secure match=nexthop\n"+ // 1
		"[smart.example.test]:587   verify\n"+ // 2
		"relay.example.test:2525    encrypt\n"+ // 3
		"relay.example.test         dane\n"+ // 4
		".example.test              dane-only\n") // 5
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		host     string
		port     int
		mxLookup bool
		wantLine int // 0: no entry
	}{
		{name: "default port matches the key without port", host: "Smart.Example.Test.", port: 25, wantLine: 1},
		{name: "explicit port", host: "smart.example.test", port: 587, wantLine: 2},
		{name: "other port", host: "smart.example.test", port: 465, wantLine: 0},
		{name: "mx lookup form with port", host: "relay.example.test", port: 2525, mxLookup: true, wantLine: 3},
		{name: "mx lookup form default port", host: "relay.example.test", port: 25, mxLookup: true, wantLine: 4},
		{name: "bracketed form is a different key", host: "relay.example.test", port: 25, wantLine: 0},
		{name: "no parent-domain match", host: "other.example.test", port: 25, mxLookup: true, wantLine: 0},
		{name: "empty host", host: "", port: 25, wantLine: 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e, ok := p.LookupNexthop(tc.host, tc.port, tc.mxLookup)
			if ok != (tc.wantLine != 0) {
				t.Fatalf("LookupNexthop(%q, %d, %v) found %v, want %v", tc.host, tc.port, tc.mxLookup, ok, tc.wantLine != 0)
			}
			if ok && e.Line != tc.wantLine {
				t.Errorf("LookupNexthop = %s (line %d), want line %d", e.Destination, e.Line, tc.wantLine)
			}
		})
	}
}

func TestNilPolicy(t *testing.T) {
	var p *Policy
	if e, ok := p.Lookup("example.test"); ok || e != nil {
		t.Errorf("nil Lookup = %v, %v", e, ok)
	}
	if e, ok := p.LookupNexthop("relay.test", 25, false); ok || e != nil {
		t.Errorf("nil LookupNexthop = %v, %v", e, ok)
	}
	if p.Len() != 0 || p.Entries() != nil {
		t.Errorf("nil policy has entries")
	}
}

func TestEntriesIsACopy(t *testing.T) {
	p, err := parseString("policy.cf", "a.test encrypt\nb.test encrypt\n")
	if err != nil {
		t.Fatal(err)
	}
	es := p.Entries()
	es[0] = nil
	if p.Entries()[0] == nil {
		t.Error("Entries shares its slice with the policy")
	}
}

func TestReferenceNames(t *testing.T) {
	tests := []struct {
		name    string
		match   []string
		nexthop string
		mxHost  string
		want    []string
	}{
		{name: "verify default", match: []string{"hostname"}, nexthop: "example.test", mxHost: "MX1.Example.Test.", want: []string{"mx1.example.test"}},
		{name: "secure default", match: []string{"nexthop", "dot-nexthop"}, nexthop: "Example.Test", mxHost: "mx1.example.test", want: []string{"example.test", ".example.test"}},
		{name: "bracketed nexthop with port", match: []string{"nexthop", "dot-nexthop"}, nexthop: "[Relay.Example.Test]:587", want: []string{"relay.example.test", ".relay.example.test"}},
		{name: "host:port nexthop", match: []string{"nexthop"}, nexthop: "relay.example.test:2525", want: []string{"relay.example.test"}},
		{name: "literal patterns kept, lower-cased", match: []string{"Example.COM.test", ".Example.test", "HOSTNAME"}, nexthop: "x.test", mxHost: "mx.x.test", want: []string{"example.com.test", ".example.test", "mx.x.test"}},
		{name: "duplicates dropped", match: []string{"hostname", "nexthop", "example.test"}, nexthop: "example.test", mxHost: "example.test", want: []string{"example.test"}},
		{name: "empty mx host expands to nothing", match: []string{"hostname", "nexthop"}, nexthop: "example.test", want: []string{"example.test"}},
		{name: "empty nexthop expands to nothing", match: []string{"dot-nexthop", "nexthop"}, mxHost: "mx.test", want: []string{}},
		{name: "no match", match: nil, nexthop: "example.test", want: nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := &Entry{Level: LevelSecure, Match: tc.match}
			got := e.ReferenceNames(tc.nexthop, tc.mxHost)
			if !slices.Equal(got, tc.want) {
				t.Errorf("ReferenceNames(%q, %q) = %q, want %q", tc.nexthop, tc.mxHost, got, tc.want)
			}
		})
	}
	var nilEntry *Entry
	if got := nilEntry.ReferenceNames("a.test", "b.test"); got != nil {
		t.Errorf("nil entry ReferenceNames = %q", got)
	}
}

// TestTAFileTrustsOnlyThatCA checks that Roots holds the tafile's CA: a
// leaf it issued verifies, one from another CA does not.
func TestTAFileTrustsOnlyThatCA(t *testing.T) {
	dir := t.TempDir()
	ca := writeCA(t, dir, "bank-ca.pem")
	other := writeCA(t, dir, "other-ca.pem")
	p, err := parseString(filepath.Join(dir, "policy.cf"), "bank.test secure tafile=bank-ca.pem\n")
	if err != nil {
		t.Fatal(err)
	}
	e, _ := p.Lookup("bank.test")
	tests := []struct {
		name   string
		leaf   *x509.Certificate
		wantOK bool
	}{
		{name: "issued by the tafile CA", leaf: ca.Leaf("mx.bank.test").Leaf, wantOK: true},
		{name: "issued by another CA", leaf: other.Leaf("mx.bank.test").Leaf, wantOK: false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := tc.leaf.Verify(x509.VerifyOptions{Roots: e.Roots, DNSName: "mx.bank.test"})
			if (err == nil) != tc.wantOK {
				t.Errorf("Verify error = %v, want ok %v", err, tc.wantOK)
			}
		})
	}
}
