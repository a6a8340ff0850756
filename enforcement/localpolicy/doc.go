// Package localpolicy reads sealgate's local TLS policy file, which uses the
// syntax of Postfix's smtp_tls_policy_maps table (postconf(5), TLS_README
// "TLS policy table") so administrators can reuse their Postfix file.
//
// One logical line per destination:
//
//	destination level [name=value ...]
//
// Lines starting with whitespace continue the previous logical line,
// whole-line "#" comments and blank lines are ignored, attributes are
// separated by whitespace or commas and may be wrapped in braces
// ("{ tafile = /etc/ca bundle.pem }"), as in Postfix's table format.
//
// Destinations are a recipient domain ("example.org", looked up exactly), a
// parent-domain wildcard (".example.org", any subdomain but not the domain
// itself) or a verbatim next-hop ("[mx.example.org]", "[mx.example.org]:587",
// "mx.example.org:587") as used with a relay host; next-hops match exactly.
//
// Levels are encrypt, fingerprint, dane, dane-only, verify and secure with
// Postfix's meaning; dane and dane-only refer to DANE for SMTP (RFC 7672),
// fingerprint pins SHA-256 digests of the certificate or its public key,
// verify and secure check the certificate chain and a reference name
// (RFC 6125 identifiers, Postfix's match strategies). The levels none and
// may are refused: sealgate never sends mail in cleartext. Attributes:
// match, tafile and protocols (TLS versions, RFC 8446 and predecessors).
// Postfix's cipher-related and other attributes are refused with a message,
// never silently ignored.
package localpolicy
