package upstream

import (
	"strings"
	"unicode/utf8"
)

// QuoteAddress formats a mailbox for MAIL FROM or RCPT TO (RFC 5321
// §4.1.2). go-smtp's server hands over a quoted local part without its
// quotes and backslashes ("a b"@example.org arrives as a b@example.org),
// and its client writes what it is given between the angle brackets as it
// is; so a local part that is not a Dot-string is quoted again here as a
// Quoted-string, with "\" and `"` escaped. The domain starts after the
// last "@" (a domain cannot hold one, a quoted local part can). UTF-8 in a
// local part counts as atext (RFC 6531 §3.3) and stays as it is. The null
// sender "" stays "".
//
// Control characters cannot be written in a Quoted-string at all; the
// inbound side refuses them before anything is sent.
func QuoteAddress(addr string) string {
	i := strings.LastIndexByte(addr, '@')
	if i <= 0 {
		return addr
	}
	local, domain := addr[:i], addr[i:]
	if isDotString(local) {
		return addr
	}
	var b strings.Builder
	b.Grow(len(addr) + 4)
	b.WriteByte('"')
	for j := 0; j < len(local); j++ {
		if c := local[j]; c == '\\' || c == '"' {
			b.WriteByte('\\')
		}
		b.WriteByte(local[j])
	}
	b.WriteByte('"')
	b.WriteString(domain)
	return b.String()
}

// isDotString reports whether s is a Dot-string: atoms of atext joined by
// single dots (RFC 5321 §4.1.2, RFC 5322 §3.2.3, UTF-8 per RFC 6531).
func isDotString(s string) bool {
	for _, atom := range strings.Split(s, ".") {
		if atom == "" {
			return false
		}
		for j := 0; j < len(atom); j++ {
			if c := atom[j]; c < utf8.RuneSelf && !isAtext(c) {
				return false
			}
		}
	}
	return true
}

func isAtext(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	return strings.IndexByte("!#$%&'*+-/=?^_`{|}~", c) >= 0
}
