// Package mtasts implements the building blocks of SMTP MTA Strict
// Transport Security (RFC 8461): the strict parsers of the _mta-sts TXT
// record (§3.1) and of the policy file (§3.2), MX pattern matching (§4.1),
// and the HTTPS policy fetch (§3.3) with the result classified by the
// TLS-RPT result types of RFC 8460 §4.3.
//
// The package does no caching and makes no delivery decision; the policy
// engine in package enforcement combines these pieces with the state store.
// Every side effect (address lookup, dialing, trust roots, clock) is a field
// of Fetcher; the system resolver is never used.
package mtasts
