package upstream

import (
	"strings"
	"testing"
)

func TestQuoteAddress(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want string
	}{
		{name: "null sender", in: "", want: ""},
		{name: "dot-string", in: "john.doe@example.org", want: "john.doe@example.org"},
		{name: "atext specials", in: "a!#$%&'*+-/=?^_`{|}~z@example.org", want: "a!#$%&'*+-/=?^_`{|}~z@example.org"},
		{name: "space", in: "a b@example.org", want: `"a b"@example.org`},
		{name: "at sign", in: "x@y@example.org", want: `"x@y"@example.org`},
		{name: "quote and backslash", in: `a"b\c@example.org`, want: `"a\"b\\c"@example.org`},
		{name: "leading dot", in: ".a@example.org", want: `".a"@example.org`},
		{name: "trailing dot", in: "a.@example.org", want: `"a."@example.org`},
		{name: "double dot", in: "a..b@example.org", want: `"a..b"@example.org`},
		{name: "specials", in: "a(b)<c>[d]:e;f,g@example.org", want: `"a(b)<c>[d]:e;f,g"@example.org`},
		{name: "UTF-8 stays", in: "jürgen@exämple.org", want: "jürgen@exämple.org"},
		{name: "UTF-8 with space", in: "jü rgen@example.org", want: `"jü rgen"@example.org`},
		{name: "address literal", in: "a@[192.0.2.1]", want: "a@[192.0.2.1]"},
		{name: "no domain", in: "postmaster", want: "postmaster"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := QuoteAddress(tc.in); got != tc.want {
				t.Errorf("QuoteAddress(%q) = %q, want %q", tc.in, got, tc.want)
			}
		})
	}
}

// unquoteMailbox reads a mailbox as RFC 5321 §4.1.2 defines it and
// returns it in go-smtp's server form (local part unquoted).
func unquoteMailbox(t *testing.T, s string) string {
	t.Helper()
	if !strings.HasPrefix(s, `"`) {
		i := strings.LastIndexByte(s, '@')
		if i > 0 && !isDotString(s[:i]) {
			t.Fatalf("%q: unquoted local part is not a Dot-string", s)
		}
		return s
	}
	var local strings.Builder
	for i := 1; i < len(s); i++ {
		switch c := s[i]; c {
		case '\\':
			i++
			if i == len(s) {
				t.Fatalf("%q: backslash at the end", s)
			}
			local.WriteByte(s[i])
		case '"':
			if !strings.HasPrefix(s[i+1:], "@") {
				t.Fatalf("%q: quoted string not followed by @", s)
			}
			return local.String() + s[i+1:]
		default:
			local.WriteByte(c)
		}
	}
	t.Fatalf("%q: unterminated quoted string", s)
	return ""
}

// FuzzQuoteAddress checks that the quoted form reads back, as an MX
// reads it, as the address given.
func FuzzQuoteAddress(f *testing.F) {
	for _, s := range []string{"a@example.org", "a b@example.org", `"x@y"@example.org`, `a\"b@c`, "jü rgen@exämple.org", "a..b@x", "@x", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, addr string) {
		i := strings.LastIndexByte(addr, '@')
		if i <= 0 || strings.ContainsAny(addr[i:], `"\`) {
			return // no local part to quote; domains hold no quotes
		}
		if got := unquoteMailbox(t, QuoteAddress(addr)); got != addr {
			t.Errorf("QuoteAddress(%q) reads back as %q", addr, got)
		}
	})
}
