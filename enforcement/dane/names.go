package dane

import (
	"crypto/x509"
	"net"
	"strings"

	"sealgate/enforcement/dnsname"
)

// matchName reports whether leaf is valid for one of the reference
// identifiers (RFC 7672 §3.2.3), using crypto/x509's host name rules: case
// insensitive, a trailing dot ignored, a wildcard only as the complete
// left-most label, matching exactly one label. When the leaf has no DNS-ID
// (dNSName subjectAltName) its Common Name is taken as the DNS-ID, the CN-ID
// fallback of RFC 7672 §3.2.3 that crypto/x509 no longer implements.
// Reference identifiers that are empty, hold a wildcard or are IP address
// literals never match: they are DNS names taken from MX and TLSA lookups.
// The policy patterns of a LevelVerify requirement (a leading "." for any
// subdomain) are matched by package enforcement, not here.
func matchName(leaf *x509.Certificate, names []string) bool {
	subject := leaf
	if len(leaf.DNSNames) == 0 && leaf.Subject.CommonName != "" {
		c := *leaf
		c.DNSNames = []string{leaf.Subject.CommonName}
		subject = &c
	}
	for _, n := range names {
		if !validReference(n) {
			continue
		}
		if subject.VerifyHostname(n) == nil {
			return true
		}
	}
	return false
}

func validReference(name string) bool {
	if name == "" || strings.Contains(name, "*") {
		return false
	}
	return net.ParseIP(strings.Trim(name, "[]")) == nil
}

// leafNames lists the DNS-IDs of leaf (or its CN-ID) for an error detail.
func leafNames(leaf *x509.Certificate) string {
	names := leaf.DNSNames
	if len(names) == 0 && leaf.Subject.CommonName != "" {
		names = []string{leaf.Subject.CommonName}
	}
	return dnsname.Join(names)
}
