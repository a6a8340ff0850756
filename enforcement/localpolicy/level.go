package localpolicy

import (
	"fmt"
	"strconv"
	"strings"
)

// Level is a Postfix TLS security level that sealgate accepts. The order is
// Postfix's (TLS_LEV_* in tls.h): encrypt < fingerprint < dane < dane-only <
// verify < secure. The zero value is not a level; it prints as "unknown(0)".
type Level uint8

// The accepted levels. There is no none or may: such entries are refused.
const (
	// LevelEncrypt requires STARTTLS and a completed handshake; the
	// certificate is not checked.
	LevelEncrypt Level = iota + 1
	// LevelFingerprint accepts a certificate whose SHA-256 digest, or the
	// digest of its public key, is in Entry.Fingerprints. No CA, no names,
	// no expiry.
	LevelFingerprint
	// LevelDANE authenticates with usable TLSA records (RFC 7672) when the
	// DNSSEC-secure lookups find them; otherwise TLS is still mandatory
	// (Postfix would fall back to may; sealgate never does).
	LevelDANE
	// LevelDANEOnly requires usable TLSA records; without them no
	// connection is made.
	LevelDANEOnly
	// LevelVerify checks the chain (Entry.Roots, else the WebPKI) and the
	// names of Entry.Match, by default the MX host name found in DNS.
	LevelVerify
	// LevelSecure is LevelVerify with names that do not come from DNS, by
	// default the next-hop domain and its subdomains.
	LevelSecure
)

var levelNames = [...]string{
	LevelEncrypt:     "encrypt",
	LevelFingerprint: "fingerprint",
	LevelDANE:        "dane",
	LevelDANEOnly:    "dane-only",
	LevelVerify:      "verify",
	LevelSecure:      "secure",
}

// String returns the Postfix keyword, or "unknown(N)" for a stray value.
func (l Level) String() string {
	if l.Valid() {
		return levelNames[l]
	}
	return "unknown(" + strconv.Itoa(int(l)) + ")"
}

// Valid reports whether l is one of the accepted levels.
func (l Level) Valid() bool { return l >= LevelEncrypt && l <= LevelSecure }

// MarshalText returns the Postfix keyword; a stray value is an error.
func (l Level) MarshalText() ([]byte, error) {
	if !l.Valid() {
		return nil, fmt.Errorf("%w: %s", ErrUnknownLevel, l)
	}
	return []byte(levelNames[l]), nil
}

// parseLevel returns the level named s (Postfix keyword, any case) of the
// entry for dest. The cleartext levels none and may give an error wrapping
// ErrCleartext, any other unknown word one wrapping ErrUnknownLevel.
func parseLevel(s, dest string) (Level, error) {
	l, ok := lookupLevel(s)
	switch {
	case ok:
		return l, nil
	case isCleartextLevel(s):
		return 0, fmt.Errorf("level %q for %s is refused: %w; use encrypt or stronger", s, dest, ErrCleartext)
	default:
		return 0, fmt.Errorf("%w %q for %s; want %s", ErrUnknownLevel, s, dest, levelList)
	}
}

const levelList = "encrypt, fingerprint, dane, dane-only, verify or secure"

func lookupLevel(s string) (Level, bool) {
	for l := LevelEncrypt; l <= LevelSecure; l++ {
		if strings.EqualFold(s, levelNames[l]) {
			return l, true
		}
	}
	return 0, false
}

func isCleartextLevel(s string) bool {
	return strings.EqualFold(s, "none") || strings.EqualFold(s, "may")
}
