package dane

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"testing"
	"time"
)

// testNow is the fixed clock of the tests; certificates are valid around it.
var testNow = time.Date(2030, time.March, 1, 12, 0, 0, 0, time.UTC)

func fixedNow() time.Time { return testNow }

// issued is a certificate with its key, able to sign children when a CA.
type issued struct {
	cert *x509.Certificate
	key  crypto.Signer
}

// certSpec describes a test certificate. Zero validity dates mean one day
// either side of testNow.
type certSpec struct {
	cn        string
	dns       []string
	ca        bool
	notBefore time.Time
	notAfter  time.Time
	// ed25519 asks for an Ed25519 key instead of ECDSA P-256.
	ed25519 bool
}

// newCert creates an ECDSA P-256 (or Ed25519) certificate signed by
// parent, or self-signed when parent is nil.
func newCert(t testing.TB, spec certSpec, parent *issued) *issued {
	t.Helper()
	var key crypto.Signer
	var err error
	if spec.ed25519 {
		_, key, err = ed25519.GenerateKey(rand.Reader)
	} else {
		key, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	}
	if err != nil {
		t.Fatal(err)
	}
	if spec.notBefore.IsZero() {
		spec.notBefore = testNow.Add(-24 * time.Hour)
	}
	if spec.notAfter.IsZero() {
		spec.notAfter = testNow.Add(24 * time.Hour)
	}
	serial, err := rand.Int(rand.Reader, big.NewInt(1<<62))
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: spec.cn},
		DNSNames:              spec.dns,
		NotBefore:             spec.notBefore,
		NotAfter:              spec.notAfter,
		BasicConstraintsValid: true,
		IsCA:                  spec.ca,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		// An odd EKU on purpose: DANE must not require serverAuth.
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageEmailProtection},
	}
	if spec.ca {
		tmpl.KeyUsage |= x509.KeyUsageCertSign
		tmpl.ExtKeyUsage = nil
	}
	signer, signerCert := key, tmpl
	if parent != nil {
		signer, signerCert = parent.key, parent.cert
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, signerCert, key.Public(), signer)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &issued{cert: cert, key: key}
}

// testPKI is leaf ← intermediate ← root, plus an unrelated CA.
type testPKI struct {
	root, inter, leaf, other *issued
}

func newTestPKI(t testing.TB) testPKI {
	t.Helper()
	root := newCert(t, certSpec{cn: "Test Root", ca: true}, nil)
	inter := newCert(t, certSpec{cn: "Test Intermediate", ca: true}, root)
	leaf := newCert(t, certSpec{cn: "mx1.example.test", dns: []string{"mx1.example.test"}}, inter)
	other := newCert(t, certSpec{cn: "Other Root", ca: true}, nil)
	return testPKI{root: root, inter: inter, leaf: leaf, other: other}
}

// chain returns the certificates of is as a presented chain.
func chain(is ...*issued) []*x509.Certificate {
	out := make([]*x509.Certificate, len(is))
	for i, c := range is {
		out[i] = c.cert
	}
	return out
}
