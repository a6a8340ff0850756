package dane

import (
	"bytes"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509"
)

// selected returns the part of cert that selector names (RFC 6698 §2.1.2):
// the whole certificate's DER or its SubjectPublicKeyInfo DER; nil for an
// unknown selector or a nil certificate.
func selected(cert *x509.Certificate, selector uint8) []byte {
	if cert == nil {
		return nil
	}
	switch selector {
	case SelectorCert:
		return cert.Raw
	case SelectorSPKI:
		return cert.RawSubjectPublicKeyInfo
	}
	return nil
}

// associationData computes the certificate association data of cert for a
// selector and matching type (RFC 6698 §2.1.3); nil when either is unknown.
// The result never aliases cert's own bytes.
func associationData(cert *x509.Certificate, selector, matching uint8) []byte {
	sel := selected(cert, selector)
	if sel == nil {
		return nil
	}
	switch matching {
	case MatchFull:
		return bytes.Clone(sel)
	case MatchSHA256:
		sum := sha256.Sum256(sel)
		return sum[:]
	case MatchSHA512:
		sum := sha512.Sum512(sel)
		return sum[:]
	}
	return nil
}

// matches reports whether record r's data designates cert. Usage is not
// looked at: the caller decides at which depth a usage applies. Decoded bytes
// are compared, never hex text.
func matches(r TLSA, cert *x509.Certificate) bool {
	d := associationData(cert, r.Selector, r.MatchingType)
	return d != nil && bytes.Equal(d, r.Data)
}

// Expect returns the TLSA record with the given usage, selector and matching
// type that designates cert, e.g. Expect(leaf, UsageDANEEE, SelectorSPKI,
// MatchSHA256) for a "3 1 1" record. It is meant for building zone data in
// tests and tools. For an unknown selector or matching type (or a nil cert)
// the record has nil Data, which makes it unusable.
func Expect(cert *x509.Certificate, usage, selector, matching uint8) TLSA {
	return TLSA{
		Usage:        usage,
		Selector:     selector,
		MatchingType: matching,
		Data:         associationData(cert, selector, matching),
	}
}
