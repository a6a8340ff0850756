package certstest

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"testing"
)

// PEM returns the root certificate of ca's hierarchy in PEM form, the
// content of an SSL_CERT_FILE that makes a program trust ca.
func (ca *CA) PEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.root.Raw})
}

// WriteCAFile writes PEM() to a new file in dir and returns its path.
func (ca *CA) WriteCAFile(dir string) string {
	ca.t.Helper()
	return writeTemp(ca.t, dir, "ca-*.pem", ca.PEM())
}

// WriteFiles issues a leaf for names (see Leaf) and writes its chain and key
// as PEM files in dir, returning their paths, e.g. for TLS_CERT_FILE and
// TLS_KEY_FILE.
func (ca *CA) WriteFiles(dir string, names ...string) (certFile, keyFile string) {
	ca.t.Helper()
	return WriteKeyPair(ca.t, dir, ca.Leaf(names...))
}

// KeyPairPEM encodes cert's chain (leaf first) and its private key (PKCS #8)
// in PEM form.
func KeyPairPEM(t testing.TB, cert tls.Certificate) (certPEM, keyPEM []byte) {
	t.Helper()
	for _, der := range cert.Certificate {
		certPEM = append(certPEM, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})...)
	}
	der, err := x509.MarshalPKCS8PrivateKey(cert.PrivateKey)
	if err != nil {
		t.Fatalf("certstest: marshal private key: %v", err)
	}
	keyPEM = pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
	return certPEM, keyPEM
}

// WriteKeyPair writes cert's chain and key as two new PEM files in dir
// (mode 0600) and returns their paths. tls.LoadX509KeyPair reads them back.
func WriteKeyPair(t testing.TB, dir string, cert tls.Certificate) (certFile, keyFile string) {
	t.Helper()
	certPEM, keyPEM := KeyPairPEM(t, cert)
	certFile = writeTemp(t, dir, "cert-*.pem", certPEM)
	keyFile = writeTemp(t, dir, "key-*.pem", keyPEM)
	return certFile, keyFile
}

func writeTemp(t testing.TB, dir, pattern string, data []byte) string {
	t.Helper()
	f, err := os.CreateTemp(dir, pattern)
	if err != nil {
		t.Fatalf("certstest: %v", err)
	}
	_, werr := f.Write(data)
	cerr := f.Close()
	if werr != nil || cerr != nil {
		t.Fatalf("certstest: write %s: %v %v", f.Name(), werr, cerr)
	}
	return filepath.Clean(f.Name())
}
