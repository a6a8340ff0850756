// Package dane implements DANE authentication of SMTP servers (RFC 7672)
// using TLSA records (RFC 6698, RFC 7671): record usability for SMTP,
// matching of a presented certificate chain against a TLSA RRset with the
// failure classified for the reply, the log and TLS reporting.
package dane

import (
	"bytes"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"errors"
	"fmt"
)

// Certificate usages (RFC 6698 §2.1.1, RFC 7218 mnemonics).
const (
	UsagePKIXTA uint8 = 0
	UsagePKIXEE uint8 = 1
	UsageDANETA uint8 = 2
	UsageDANEEE uint8 = 3
)

// Selectors (RFC 6698 §2.1.2).
const (
	SelectorCert uint8 = 0
	SelectorSPKI uint8 = 1
)

// Matching types (RFC 6698 §2.1.3).
const (
	MatchFull   uint8 = 0
	MatchSHA256 uint8 = 1
	MatchSHA512 uint8 = 2
)

// ErrBadData is returned (wrapped) by ParseTLSA when the association data is
// not an even-length hexadecimal string.
var ErrBadData = errors.New("TLSA association data is not valid hex")

// TLSA is one TLSA resource record's data, with the association data decoded
// to bytes (never compared as hex text).
type TLSA struct {
	Usage        uint8
	Selector     uint8
	MatchingType uint8
	Data         []byte
}

// String formats the record as in zone files, e.g. "3 1 1 ab12...".
func (r TLSA) String() string {
	return fmt.Sprintf("%d %d %d %s", r.Usage, r.Selector, r.MatchingType, hex.EncodeToString(r.Data))
}

// short formats the record like String with the data cut to 16 hex digits,
// for error details (a "2 0 0" record holds a whole certificate).
func (r TLSA) short() string {
	h := hex.EncodeToString(r.Data)
	if len(h) > 16 {
		h = h[:16] + "..."
	}
	return fmt.Sprintf("%d %d %d %s", r.Usage, r.Selector, r.MatchingType, h)
}

// ParseTLSA builds a record from its presentation-format fields. hexData is
// decoded case-insensitively; bad digits and odd lengths are rejected with an
// error wrapping ErrBadData. The usage, selector and matching type are not
// checked: a record that is well formed but unusable for SMTP is still a
// record (RFC 7672 §2.2: an RRset holding only unusable records makes TLS
// mandatory without authentication), so callers keep it and ask Usable.
// Empty data is accepted for the same reason; such a record is never usable.
func ParseTLSA(usage, selector, matching uint8, hexData string) (TLSA, error) {
	data, err := hex.DecodeString(hexData)
	if err != nil {
		return TLSA{}, fmt.Errorf("%w: %w", ErrBadData, err)
	}
	return TLSA{Usage: usage, Selector: selector, MatchingType: matching, Data: data}, nil
}

// Equal reports whether r and o are the same record (fields and data bytes).
func (r TLSA) Equal(o TLSA) bool {
	return r.Usage == o.Usage && r.Selector == o.Selector &&
		r.MatchingType == o.MatchingType && bytes.Equal(r.Data, o.Data)
}

// Usable reports whether r can authenticate an SMTP server (RFC 7672 §3.1):
// usage DANE-TA(2) or DANE-EE(3), selector Cert(0) or SPKI(1), matching type
// Full(0), SHA2-256(1) or SHA2-512(2), and data of the length the matching
// type implies (32 or 64 bytes, non-empty for Full). PKIX-TA(0) and
// PKIX-EE(1) are unusable for SMTP (RFC 7672 §3.1.3).
func (r TLSA) Usable() bool {
	if r.Usage != UsageDANETA && r.Usage != UsageDANEEE {
		return false
	}
	if r.Selector != SelectorCert && r.Selector != SelectorSPKI {
		return false
	}
	switch r.MatchingType {
	case MatchFull:
		return len(r.Data) > 0
	case MatchSHA256:
		return len(r.Data) == sha256.Size
	case MatchSHA512:
		return len(r.Data) == sha512.Size
	}
	return false
}

// Usable returns the records of rrs that take part in authentication, in
// their order; nil when there are none. A record must be usable (the method
// Usable), and digest algorithm agility applies (RFC 7671 §9): among the
// usable records of one usage and selector, only those of the strongest
// digest present count (SHA2-512 over SHA2-256), so that a host publishing
// both is never authenticated by the weaker digest alone. Full data
// (matching type 0) is no digest: such records always count.
func Usable(rrs []TLSA) []TLSA {
	type group struct{ usage, selector uint8 }
	strongest := map[group]uint8{}
	for _, r := range rrs {
		g := group{r.Usage, r.Selector}
		if r.Usable() && r.MatchingType > strongest[g] {
			strongest[g] = r.MatchingType
		}
	}
	var out []TLSA
	for _, r := range rrs {
		if !r.Usable() {
			continue
		}
		if r.MatchingType != MatchFull && r.MatchingType != strongest[group{r.Usage, r.Selector}] {
			continue
		}
		out = append(out, r)
	}
	return out
}
