// Package certs holds key material: certificate key pairs loaded from PEM
// files (swappable at run time without dropping sessions), CA bundles, and
// a self-signed certificate for development.
package certs

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"math/big"
	"os"
	"sync/atomic"
	"time"
)

// KeyPair is a certificate that can be replaced while in use. The zero
// value holds none until Store.
type KeyPair struct {
	cert atomic.Pointer[tls.Certificate]
}

// Store replaces the certificate; sessions in progress keep theirs.
func (k *KeyPair) Store(c *tls.Certificate) { k.cert.Store(c) }

// Certificate returns the current certificate.
func (k *KeyPair) Certificate() *tls.Certificate { return k.cert.Load() }

// GetCertificate serves tls.Config.GetCertificate.
func (k *KeyPair) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return k.cert.Load(), nil
}

// GetClientCertificate serves tls.Config.GetClientCertificate.
func (k *KeyPair) GetClientCertificate(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
	return k.cert.Load(), nil
}

// SelfSigned makes an ECDSA P-256 certificate for hostname, valid for a
// year from now. It serves inbound STARTTLS when no certificate is
// configured: legacy clients rarely verify, and it still protects against
// passive eavesdropping on the internal hop.
func SelfSigned(hostname string) (*tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: hostname},
		DNSNames:     []string{hostname},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.AddDate(1, 0, 0),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, err
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, nil
}

// LoadPool reads a PEM CA bundle.
func LoadPool(file string) (*x509.CertPool, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	p := x509.NewCertPool()
	if !p.AppendCertsFromPEM(data) {
		return nil, fmt.Errorf("%s: no PEM certificates", file)
	}
	return p, nil
}
