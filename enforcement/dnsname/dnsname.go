// Package dnsname holds the rules for DNS host names that the policy
// sources share: the one normal form in which domains are compared and
// stored (lower case, no trailing dot), the LDH syntax of RFC 5321 §4.1.2
// (Domain) and RFC 1035 §2.3.1 with the limits of RFC 1035 §2.3.4, and the
// listing of names in messages. It imports nothing of sealgate, so that
// every package can use it.
package dnsname

import (
	"fmt"
	"strings"
)

// Normalize returns name lower-cased without one trailing dot, the form in
// which domains and host names are compared, looked up and stored.
func Normalize(name string) string {
	return strings.ToLower(strings.TrimSuffix(name, "."))
}

// ValidHostname reports whether s is an ASCII host name: dot-separated
// labels of 1 to 63 letters (either case), digits and hyphens, not
// starting or ending with a hyphen, 253 characters at most, no trailing
// dot. It is the Domain of RFC 5321 and the host name of RFC 8461.
func ValidHostname(s string) bool {
	return valid(s, isLDH)
}

// ValidPostfixName reports whether s is a host name as a Postfix table
// writes it: the rules of ValidHostname, but lower-case letters only (the
// caller lower-cases) and underscores allowed in labels, as Postfix
// allows them.
func ValidPostfixName(s string) bool {
	return valid(s, isPostfix)
}

func valid(s string, allowed func(byte) bool) bool {
	if s == "" || len(s) > 253 {
		return false
	}
	for label := range strings.SplitSeq(s, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for i := range len(label) {
			if !allowed(label[i]) {
				return false
			}
		}
	}
	return true
}

func isLDH(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-'
}

func isPostfix(c byte) bool {
	return 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_'
}

// maxListed bounds the names Join quotes.
const maxListed = 4

// Join lists names for a message: "(none)" when there are none,
// "a, b, c" up to four names, "a, b, c, d and 2 more" beyond.
func Join(names []string) string {
	switch {
	case len(names) == 0:
		return "(none)"
	case len(names) > maxListed:
		return fmt.Sprintf("%s and %d more", strings.Join(names[:maxListed], ", "), len(names)-maxListed)
	}
	return strings.Join(names, ", ")
}
