package localpolicy

import (
	"crypto/sha256"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"sealgate/certs/certstest"
)

// writeCA makes a CA at run time and writes its root as a PEM bundle named
// file in dir, for tafile. Nothing is committed.
func writeCA(t *testing.T, dir, file string) *certstest.CA {
	t.Helper()
	ca := certstest.NewCA(t, "localpolicy test "+file)
	if err := os.WriteFile(filepath.Join(dir, file), ca.PEM(), 0o600); err != nil {
		t.Fatal(err)
	}
	return ca
}

// digest returns a SHA-256 digest of s, as the fingerprints in tests.
func digest(s string) []byte {
	d := sha256.Sum256([]byte(s))
	return d[:]
}

// colonHex writes d the way openssl x509 -fingerprint does: upper-case
// pairs separated by colons.
func colonHex(d []byte) string { return FormatFingerprint(d) }

// parseString parses text as a file named name.
func parseString(name, text string) (*Policy, error) {
	return Parse(name, strings.NewReader(text))
}

// firstParseError returns the first *ParseError in err, failing the test
// when there is none.
func firstParseError(t *testing.T, err error) *ParseError {
	t.Helper()
	var pe *ParseError
	if !errors.As(err, &pe) {
		t.Fatalf("error %v (%T) holds no *ParseError", err, err)
	}
	return pe
}
