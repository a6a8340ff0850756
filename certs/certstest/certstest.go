// Package certstest is a certificate authority generated at run time for
// tests, in the style of tailscale's tstest/tlstest: X.509 certificates
// (RFC 5280) with ECDSA P-256 keys, an optional intermediate, leaves for
// servers and clients, PEM files for programs under test, and the SHA-2
// digests that DANE TLSA records (RFC 6698, RFC 7672) and fingerprint pins
// are made of. Nothing is committed to the repository; every test gets fresh
// keys.
//
// A typical server test:
//
//	ca := certstest.NewCA(t, "test root")
//	leaf := ca.Leaf("mx1.example.test", "127.0.0.1")
//	srv := &tls.Config{Certificates: []tls.Certificate{leaf}}
//	cli := &tls.Config{RootCAs: ca.Pool(), ServerName: "mx1.example.test"}
package certstest

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"testing"
	"time"
)

// Default validity windows, relative to the time of issue.
const (
	caBackdate   = 24 * time.Hour
	caLifetime   = 30 * 24 * time.Hour
	leafBackdate = time.Hour
	leafLifetime = 7 * 24 * time.Hour
)

// CA is a certificate authority: a self-signed root made by NewCA, or an
// intermediate made by (*CA).Intermediate. Its methods report failures with
// t.Fatal, so they must be called from the test goroutine.
type CA struct {
	t    testing.TB
	cert *x509.Certificate
	key  crypto.Signer
	// chain holds the DER certificates a leaf of this CA carries after
	// itself: this CA and its parents, root excluded.
	chain [][]byte
	root  *x509.Certificate
}

// NewCA returns a new self-signed root CA whose subject common name is name.
func NewCA(t testing.TB, name string) *CA {
	t.Helper()
	key := newKey(t)
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          newSerial(t),
		Subject:               pkix.Name{CommonName: name, Organization: []string{"certstest"}},
		NotBefore:             now.Add(-caBackdate),
		NotAfter:              now.Add(caLifetime),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	cert := sign(t, tmpl, tmpl, key.Public(), key)
	return &CA{t: t, cert: cert, key: key, root: cert}
}

// Intermediate returns a new CA whose certificate, named name, is signed by
// ca. Leaves it issues carry the intermediate (and any between it and the
// root) in their chain.
func (ca *CA) Intermediate(name string) *CA {
	ca.t.Helper()
	key := newKey(ca.t)
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          newSerial(ca.t),
		Subject:               pkix.Name{CommonName: name, Organization: []string{"certstest"}},
		NotBefore:             now.Add(-caBackdate),
		NotAfter:              now.Add(caLifetime),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	cert := sign(ca.t, tmpl, ca.cert, key.Public(), ca.key)
	chain := append([][]byte{cert.Raw}, ca.chain...)
	return &CA{t: ca.t, cert: cert, key: key, chain: chain, root: ca.root}
}

// Certificate returns the CA's own certificate (for an intermediate, the
// intermediate's), e.g. to make a DANE-TA TLSA record from it.
func (ca *CA) Certificate() *x509.Certificate { return ca.cert }

// Root returns the self-signed root certificate at the top of ca's hierarchy
// (ca's own certificate when ca is a root).
func (ca *CA) Root() *x509.Certificate { return ca.root }

// Pool returns a pool holding only the root of ca's hierarchy, for
// tls.Config.RootCAs or ClientCAs.
func (ca *CA) Pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.root)
	return p
}

// Leaf issues a server certificate for names, each a DNS name or an IP
// address (made into an IP SAN). The first name is also the subject common
// name. It is Issue(Names(names...)).
func (ca *CA) Leaf(names ...string) tls.Certificate {
	ca.t.Helper()
	return ca.Issue(Names(names...))
}

// Issue issues an end-entity certificate shaped by opts. Without options it
// is a server-auth certificate with no names, valid from an hour ago for a
// week. The returned tls.Certificate carries the leaf followed by the
// intermediates (the root only with IncludeRoot), its private key, and Leaf
// parsed.
func (ca *CA) Issue(opts ...Option) tls.Certificate {
	ca.t.Helper()
	now := time.Now()
	cfg := issueConfig{tmpl: &x509.Certificate{
		SerialNumber: newSerial(ca.t),
		Subject:      pkix.Name{Organization: []string{"certstest"}},
		NotBefore:    now.Add(-leafBackdate),
		NotAfter:     now.Add(leafLifetime),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}}
	for _, o := range opts {
		o(&cfg)
	}
	if cfg.tmpl.Subject.CommonName == "" && len(cfg.tmpl.DNSNames) > 0 {
		cfg.tmpl.Subject.CommonName = cfg.tmpl.DNSNames[0]
	}
	if cfg.key == nil {
		cfg.key = newKey(ca.t)
	}
	leaf := sign(ca.t, cfg.tmpl, ca.cert, cfg.key.Public(), ca.key)
	chain := append([][]byte{leaf.Raw}, ca.chain...)
	if cfg.includeRoot {
		chain = append(chain, ca.root.Raw)
	}
	return tls.Certificate{Certificate: chain, PrivateKey: cfg.key, Leaf: leaf}
}

// SelfSigned returns a self-signed server certificate for names (DNS names
// or IP addresses) that no pool trusts.
func SelfSigned(t testing.TB, names ...string) tls.Certificate {
	t.Helper()
	key := newKey(t)
	now := time.Now()
	cfg := issueConfig{tmpl: &x509.Certificate{
		SerialNumber: newSerial(t),
		Subject:      pkix.Name{Organization: []string{"certstest self-signed"}},
		NotBefore:    now.Add(-leafBackdate),
		NotAfter:     now.Add(leafLifetime),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}}
	Names(names...)(&cfg)
	if len(cfg.tmpl.DNSNames) > 0 {
		cfg.tmpl.Subject.CommonName = cfg.tmpl.DNSNames[0]
	}
	cert := sign(t, cfg.tmpl, cfg.tmpl, key.Public(), key)
	return tls.Certificate{Certificate: [][]byte{cert.Raw}, PrivateKey: key, Leaf: cert}
}

// NewKey returns a fresh ECDSA P-256 key, e.g. to pass to WithKey so that
// several certificates share one public key (DANE "3 1 1" across renewal).
func NewKey(t testing.TB) crypto.Signer {
	t.Helper()
	return newKey(t)
}

func newKey(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatalf("certstest: generate key: %v", err)
	}
	return key
}

func newSerial(t testing.TB) *big.Int {
	t.Helper()
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		t.Fatalf("certstest: serial number: %v", err)
	}
	return n.Add(n, big.NewInt(1))
}

func sign(t testing.TB, tmpl, parent *x509.Certificate, pub crypto.PublicKey, signer crypto.Signer) *x509.Certificate {
	t.Helper()
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, signer)
	if err != nil {
		t.Fatalf("certstest: create certificate %q: %v", tmpl.Subject.CommonName, err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatalf("certstest: parse certificate %q: %v", tmpl.Subject.CommonName, err)
	}
	return cert
}
