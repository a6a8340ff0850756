package localpolicy

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"
)

// parseFingerprint decodes a SHA-256 fingerprint written as 32 hex pairs
// separated by colons ("3D:95:..."), or as 64 hex digits without colons
// (Postfix 3.6 and later), in any case.
func parseFingerprint(s string) ([]byte, error) {
	h := s
	if strings.Contains(s, ":") {
		pairs := strings.Split(s, ":")
		for _, p := range pairs {
			if len(p) != 2 {
				return nil, fmt.Errorf("want hex pairs separated by colons, found %q", p)
			}
		}
		h = strings.Join(pairs, "")
	}
	d, err := hex.DecodeString(h)
	if err != nil {
		return nil, fmt.Errorf("not hexadecimal: %w", err)
	}
	if len(d) != sha256.Size {
		return nil, fmt.Errorf("%d bytes%s; sealgate accepts SHA-256 digests (32 bytes) only, as with smtp_tls_fingerprint_digest = sha256",
			len(d), digestHint(len(d)))
	}
	return d, nil
}

func digestHint(n int) string {
	switch n {
	case 16:
		return ", an MD5 digest"
	case 20:
		return ", a SHA-1 digest"
	case 64:
		return ", a SHA-512 digest"
	}
	return ""
}

// FormatFingerprint writes a digest the way Postfix and openssl x509
// -fingerprint do, and the way match= takes it: upper-case hex pairs
// separated by colons.
func FormatFingerprint(d []byte) string {
	h := strings.ToUpper(hex.EncodeToString(d))
	pairs := make([]string, 0, len(h)/2)
	for i := 0; i < len(h); i += 2 {
		pairs = append(pairs, h[i:i+2])
	}
	return strings.Join(pairs, ":")
}
