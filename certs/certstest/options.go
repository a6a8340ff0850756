package certstest

import (
	"crypto"
	"crypto/x509"
	"net"
	"time"
)

// Option shapes a certificate made by (*CA).Issue.
type Option func(*issueConfig)

type issueConfig struct {
	tmpl        *x509.Certificate
	key         crypto.Signer
	includeRoot bool
}

// Names adds subject alternative names: each name that parses as an IP
// address becomes an IP SAN, any other a DNS SAN.
func Names(names ...string) Option {
	return func(c *issueConfig) {
		for _, n := range names {
			if ip := net.ParseIP(n); ip != nil {
				c.tmpl.IPAddresses = append(c.tmpl.IPAddresses, ip)
				continue
			}
			c.tmpl.DNSNames = append(c.tmpl.DNSNames, n)
		}
	}
}

// NotBefore sets the start of the validity period.
func NotBefore(t time.Time) Option {
	return func(c *issueConfig) { c.tmpl.NotBefore = t }
}

// NotAfter sets the end of the validity period.
func NotAfter(t time.Time) Option {
	return func(c *issueConfig) { c.tmpl.NotAfter = t }
}

// Expired makes a certificate that was valid from two days ago until one
// hour ago.
func Expired() Option {
	return func(c *issueConfig) {
		now := time.Now()
		c.tmpl.NotBefore = now.Add(-48 * time.Hour)
		c.tmpl.NotAfter = now.Add(-time.Hour)
	}
}

// NotYetValid makes a certificate whose validity starts in a day.
func NotYetValid() Option {
	return func(c *issueConfig) {
		now := time.Now()
		c.tmpl.NotBefore = now.Add(24 * time.Hour)
		c.tmpl.NotAfter = now.Add(48 * time.Hour)
	}
}

// ClientAuth adds the client-authentication extended key usage, so the
// certificate serves as a TLS client certificate as well as a server one.
func ClientAuth() Option {
	return func(c *issueConfig) {
		c.tmpl.ExtKeyUsage = append(c.tmpl.ExtKeyUsage, x509.ExtKeyUsageClientAuth)
	}
}

// WithKey issues the certificate for key instead of a fresh one. key must be
// an ECDSA, RSA or Ed25519 private key.
func WithKey(key crypto.Signer) Option {
	return func(c *issueConfig) { c.key = key }
}

// IncludeRoot appends the root certificate to the chain the leaf presents
// (RFC 7672 §3.2.2 asks DANE-TA servers to send their trust anchor).
func IncludeRoot() Option {
	return func(c *issueConfig) { c.includeRoot = true }
}

// CommonName sets the subject common name. Issue puts the first DNS name
// there when this is not given; with CommonName and no Names the name is
// in the common name only, which verifiers that follow RFC 6125 (Go's
// among them) ignore.
func CommonName(name string) Option {
	return func(c *issueConfig) { c.tmpl.Subject.CommonName = name }
}
