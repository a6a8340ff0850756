// Package mtasts implements the building blocks of SMTP MTA Strict
// Transport Security (RFC 8461): the strict parsers of the _mta-sts TXT
// record (§3.1) and of the policy file (§3.2), MX pattern matching (§4.1),
// and the HTTPS policy fetch (§3.3) with the result classified by the
// TLS-RPT result types of RFC 8460 §4.3.
//
// Manager keeps the policy cache in the state store (§5.1), with a bounded
// copy in memory that is read again from the store after a minute (so that
// replicas sharing a store see each other's writes), and remembers
// failed fetches for a short time so that messages do not wait for a
// policy host that is down; it makes no delivery decision, which is the
// business of package enforcement. Every side effect (TXT and address
// lookup, dialing, trust roots, clock) is a field of Fetcher or Manager;
// the system resolver is never used.
package mtasts
