// Package enforcement decides what transport security a recipient domain
// demands and judges TLS connections against that demand. It opens no
// sockets: DNS answers come through the consumer-declared DNS interface.
//
// The effective requirement is computed per MX host, in this order: local
// policy, DANE (RFC 7672), MTA-STS (RFC 8461), and the floor. Every verdict
// carries a reason and a result type in the vocabulary of TLS-RPT
// (RFC 8460 §4.3).
package enforcement

import (
	"fmt"
)

// Source names where a requirement came from. It appears in every refusal.
type Source int

// Sources, in increasing precedence.
const (
	SourceFloor Source = iota
	SourceMTASTS
	SourceDANE
	SourceLocal
)

func (s Source) String() string {
	switch s {
	case SourceFloor:
		return "floor"
	case SourceMTASTS:
		return "MTA-STS"
	case SourceDANE:
		return "DANE"
	case SourceLocal:
		return "local policy"
	}
	return fmt.Sprintf("unknown(%d)", int(s))
}

// Level is how a server must authenticate. Levels are ordered: a higher
// level is a stronger demand. There is no level below Encrypt: sealgate
// never sends in cleartext.
type Level int

// Levels.
const (
	// LevelEncrypt demands STARTTLS and a completed handshake with any
	// certificate.
	LevelEncrypt Level = iota + 1
	// LevelVerify demands a certificate chain to the trusted roots
	// (Requirement.Roots, or the system roots) valid for one of
	// Requirement.Names.
	LevelVerify
	// LevelFingerprint demands a certificate or public key whose SHA-256
	// digest is in Requirement.Fingerprints.
	LevelFingerprint
	// LevelDANE demands a match of a usable TLSA record.
	LevelDANE
)

func (l Level) String() string {
	switch l {
	case LevelEncrypt:
		return "encrypt"
	case LevelVerify:
		return "verify"
	case LevelFingerprint:
		return "fingerprint"
	case LevelDANE:
		return "dane"
	}
	return fmt.Sprintf("unknown(%d)", int(l))
}

// Authenticated reports whether the level authenticates the server (that
// is, it is more than opportunistic encryption).
func (l Level) Authenticated() bool { return l > LevelEncrypt }

// ParseFloor parses the value of the floor setting.
func ParseFloor(s string) (Level, error) {
	switch s {
	case "encrypt":
		return LevelEncrypt, nil
	case "verify":
		return LevelVerify, nil
	}
	return 0, fmt.Errorf("%q is not a floor: want encrypt or verify (sealgate never sends in cleartext)", s)
}
