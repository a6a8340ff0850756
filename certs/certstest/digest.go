package certstest

import (
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509"
)

// The digests below are the association data of TLSA records (RFC 6698
// §2.1): selector 0 is the whole certificate, selector 1 its
// SubjectPublicKeyInfo; matching type 1 is SHA-256, 2 is SHA-512.

// CertSHA256 returns the SHA-256 digest of the DER certificate (TLSA x 0 1,
// and the usual certificate fingerprint).
func CertSHA256(cert *x509.Certificate) []byte {
	sum := sha256.Sum256(cert.Raw)
	return sum[:]
}

// CertSHA512 returns the SHA-512 digest of the DER certificate (TLSA x 0 2).
func CertSHA512(cert *x509.Certificate) []byte {
	sum := sha512.Sum512(cert.Raw)
	return sum[:]
}

// SPKISHA256 returns the SHA-256 digest of the certificate's
// SubjectPublicKeyInfo (TLSA x 1 1, and SPKI pins).
func SPKISHA256(cert *x509.Certificate) []byte {
	sum := sha256.Sum256(cert.RawSubjectPublicKeyInfo)
	return sum[:]
}

// SPKISHA512 returns the SHA-512 digest of the certificate's
// SubjectPublicKeyInfo (TLSA x 1 2).
func SPKISHA512(cert *x509.Certificate) []byte {
	sum := sha512.Sum512(cert.RawSubjectPublicKeyInfo)
	return sum[:]
}
