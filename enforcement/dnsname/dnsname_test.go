package dnsname

import (
	"strings"
	"testing"
)

func TestNormalize(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{name: "empty", in: "", want: ""},
		{name: "root", in: ".", want: ""},
		{name: "plain", in: "example.test", want: "example.test"},
		{name: "upper", in: "MX.Example.TEST", want: "mx.example.test"},
		{name: "trailing dot", in: "Example.Test.", want: "example.test"},
		{name: "one dot only", in: "example.test..", want: "example.test."},
		{name: "leading dot kept", in: ".Example.test", want: ".example.test"},
		{name: "bracketed", in: "[MX.example.test]", want: "[mx.example.test]"},
		{name: "non-ASCII", in: "ÉXAMPLE.test.", want: "éxample.test"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := Normalize(tc.in); got != tc.want {
				t.Errorf("Normalize(%q) = %q, want %q", tc.in, got, tc.want)
			}
		})
	}
}

// TestValid holds the cases of both host name rules: the MTA-STS policy
// and fetch (ValidHostname) and the Postfix policy table
// (ValidPostfixName).
func TestValid(t *testing.T) {
	label63 := strings.Repeat("a", 63)
	name253 := strings.Repeat(label63+".", 3) + strings.Repeat("b", 61)
	tests := []struct {
		name     string
		in       string
		hostname bool
		postfix  bool
	}{
		{name: "empty", in: "", hostname: false, postfix: false},
		{name: "single label", in: "localhost", hostname: true, postfix: true},
		{name: "domain", in: "example.test", hostname: true, postfix: true},
		{name: "digits and hyphen", in: "mx-1.2example.test", hostname: true, postfix: true},
		{name: "all digits", in: "123.456", hostname: true, postfix: true},
		{name: "punycode", in: "xn--bcher-kva.test", hostname: true, postfix: true},
		{name: "upper case", in: "MX.Example.TEST", hostname: true, postfix: false},
		{name: "underscore", in: "_25._tcp.mx.example.test", hostname: false, postfix: true},
		{name: "underscore inside", in: "mx_1.example.test", hostname: false, postfix: true},
		{name: "trailing dot", in: "example.test.", hostname: false, postfix: false},
		{name: "leading dot", in: ".example.test", hostname: false, postfix: false},
		{name: "empty label", in: "mx..example.test", hostname: false, postfix: false},
		{name: "leading hyphen", in: "-mx.example.test", hostname: false, postfix: false},
		{name: "trailing hyphen", in: "mx-.example.test", hostname: false, postfix: false},
		{name: "wildcard", in: "*.example.test", hostname: false, postfix: false},
		{name: "space", in: "mx example.test", hostname: false, postfix: false},
		{name: "non-ASCII", in: "bücher.test", hostname: false, postfix: false},
		{name: "IPv4 literal", in: "192.0.2.1", hostname: true, postfix: true},
		{name: "IPv6 literal", in: "2001:db8::1", hostname: false, postfix: false},
		{name: "port", in: "mx.example.test:25", hostname: false, postfix: false},
		{name: "label of 63", in: label63 + ".test", hostname: true, postfix: true},
		{name: "label of 64", in: label63 + "a.test", hostname: false, postfix: false},
		{name: "name of 253", in: name253, hostname: true, postfix: true},
		{name: "name of 254", in: name253 + "b", hostname: false, postfix: false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := ValidHostname(tc.in); got != tc.hostname {
				t.Errorf("ValidHostname(%q) = %t, want %t", tc.in, got, tc.hostname)
			}
			if got := ValidPostfixName(tc.in); got != tc.postfix {
				t.Errorf("ValidPostfixName(%q) = %t, want %t", tc.in, got, tc.postfix)
			}
		})
	}
}

func TestJoin(t *testing.T) {
	tests := []struct {
		name  string
		names []string
		want  string
	}{
		{name: "none", names: nil, want: "(none)"},
		{name: "one", names: []string{"mx.example.test"}, want: "mx.example.test"},
		{name: "two", names: []string{"a.test", "b.test"}, want: "a.test, b.test"},
		{name: "four", names: []string{"a", "b", "c", "d"}, want: "a, b, c, d"},
		{name: "six", names: []string{"a", "b", "c", "d", "e", "f"}, want: "a, b, c, d and 2 more"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := Join(tc.names); got != tc.want {
				t.Errorf("Join(%q) = %q, want %q", tc.names, got, tc.want)
			}
		})
	}
}
