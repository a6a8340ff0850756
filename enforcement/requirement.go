package enforcement

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"slices"
	"strings"

	"sealgate/enforcement/dane"
	"sealgate/enforcement/dnsname"
)

// Requirement is what the TLS connection to one MX host must satisfy.
type Requirement struct {
	Source Source
	Level  Level
	// Mode qualifies the source for humans and reports, e.g. "enforce"
	// or "testing" for MTA-STS, the policy file level for local policy.
	Mode string
	// Testing marks an MTA-STS policy in testing mode: a failure is
	// reported, and delivery proceeds if Floor is met.
	Testing bool
	// Floor is the level a failed testing policy falls back to (the
	// engine's floor; LevelEncrypt if 0), judged with the same MinVersion.
	Floor Level
	// Names are the reference identifiers for LevelVerify and DANE-TA.
	// A leading "." matches any subdomain (Postfix syntax), "*." one label.
	Names []string
	// NamesVouched is true when no name in Names was taken from DNS an
	// attacker could forge: each comes from a DNSSEC-secure MX RRset, an
	// MTA-STS policy in enforce mode, or the configuration (the next-hop
	// domain, a match= pattern, a relay in brackets). It decides whether
	// a LevelVerify connection may carry a REQUIRETLS message
	// (Authenticates); it does not change how a handshake is judged, so
	// String leaves it out.
	NamesVouched bool
	// Roots trusted for LevelVerify; nil means the system roots.
	Roots *x509.CertPool
	// RootsName identifies Roots (a file name) in String and route keys.
	RootsName string
	// Fingerprints are SHA-256 digests of a certificate or of its
	// SubjectPublicKeyInfo, for LevelFingerprint.
	Fingerprints [][]byte
	// TLSA records (usable ones) for LevelDANE.
	TLSA []dane.TLSA
	// MinVersion is the lowest TLS version offered and accepted
	// (tls.VersionTLS12 if 0); the engine sets it from its MinVersion or a
	// local policy's protocols.
	MinVersion uint16
	// MaxVersion, if set, is the highest TLS version offered.
	MaxVersion uint16
	// ServerName is the SNI to send; empty means the MX host name.
	ServerName string
	// Policy holds the policy strings for TLS-RPT (RFC 8460 §4.4).
	Policy []string
}

// Describe names the requirement for messages: "MTA-STS enforce".
func (r Requirement) Describe() string {
	if r.Mode == "" {
		return r.Source.String()
	}
	return r.Source.String() + " " + r.Mode
}

// String returns a canonical form that identifies the requirement; equal
// strings mean equal requirements (used to decide whether recipients of
// several domains may share one upstream connection).
func (r Requirement) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s/%s/%s/testing=%t/floor=%s/min=%x/max=%x/sni=%s", r.Source, r.Level, r.Mode, r.Testing, r.Floor, r.MinVersion, r.MaxVersion, r.ServerName)
	fmt.Fprintf(&b, "/names=%s/roots=%s", strings.Join(r.Names, ","), r.RootsName)
	for _, f := range r.Fingerprints {
		b.WriteString("/fp=" + hex.EncodeToString(f))
	}
	for _, t := range r.TLSA {
		b.WriteString("/tlsa=" + t.String())
	}
	return b.String()
}

// TLSConfig returns the client TLS configuration for one handshake with
// host. Go's own verification is disabled; VerifyConnection applies the
// requirement through v, so that the handshake fails, with a classified
// *TLSError, before any application data is sent. The verdict is stored
// in out.
func (r Requirement) TLSConfig(v *Verifier, host string, base *tls.Config, out *Verdict) *tls.Config {
	cfg := &tls.Config{}
	if base != nil {
		cfg = base.Clone()
	}
	cfg.ServerName = r.ServerName
	if cfg.ServerName == "" {
		cfg.ServerName = host
	}
	cfg.InsecureSkipVerify = true
	cfg.MaxVersion = r.MaxVersion
	cfg.MinVersion = r.minVersion()
	cfg.VerifyConnection = func(cs tls.ConnectionState) error {
		*out = v.Judge(r, host, cs)
		if !out.OK {
			return out.Err
		}
		return nil
	}
	return cfg
}

// minVersion is the lowest TLS version of r: MinVersion, else TLS 1.2.
func (r Requirement) minVersion() uint16 {
	if r.MinVersion == 0 {
		return tls.VersionTLS12
	}
	return r.MinVersion
}

// matchName reports whether cert is valid for one of the patterns of
// Requirement.Names and returns the name that matched: a pattern with a
// leading "." matches a DNS-ID (dNSName) of the certificate that ends in it
// and is not a wildcard, any other pattern is a host name checked by
// crypto/x509. Unlike DANE-TA's reference identifiers (dane.Verify, RFC 7672
// §3.2.3), these are policy patterns: no CN-ID fallback, and an IP address
// pattern is checked against the certificate's IP addresses.
func matchName(patterns []string, cert *x509.Certificate) (string, bool) {
	for _, p := range patterns {
		p = dnsname.Normalize(p)
		if strings.HasPrefix(p, ".") {
			// Any subdomain: check the certificate's DNS names.
			for _, n := range cert.DNSNames {
				n = strings.ToLower(n)
				if strings.HasSuffix(n, p) && !strings.HasPrefix(n, "*") {
					return n, true
				}
			}
			continue
		}
		if cert.VerifyHostname(p) == nil {
			return p, true
		}
	}
	return "", false
}

// fingerprintMatch reports whether the certificate's or its key's SHA-256
// digest is listed.
func fingerprintMatch(fps [][]byte, cert *x509.Certificate) (string, bool) {
	c := sha256.Sum256(cert.Raw)
	k := sha256.Sum256(cert.RawSubjectPublicKeyInfo)
	for _, f := range fps {
		switch {
		case slices.Equal(f, c[:]):
			return "certificate", true
		case slices.Equal(f, k[:]):
			return "public key", true
		}
	}
	return "", false
}
