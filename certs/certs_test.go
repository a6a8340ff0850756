package certs

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"sealgate/certs/certstest"
)

func TestLoadKeyPair(t *testing.T) {
	dir := t.TempDir()
	ca := certstest.NewCA(t, "root").Intermediate("issuing")
	certFile, keyFile := ca.WriteFiles(dir, "mx.sealgate.test")
	garbage := filepath.Join(dir, "garbage.pem")
	if err := os.WriteFile(garbage, []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name      string
		cert, key string
		wantErr   bool
		wantName  string // a file the error names
	}{
		{name: "good", cert: certFile, key: keyFile},
		{name: "cert missing", cert: filepath.Join(dir, "none.pem"), key: keyFile, wantErr: true, wantName: "none.pem"},
		{name: "key garbage", cert: certFile, key: garbage, wantErr: true, wantName: garbage},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := LoadKeyPair(tc.cert, tc.key)
			if tc.wantErr {
				if err == nil || !strings.Contains(err.Error(), tc.wantName) {
					t.Fatalf("LoadKeyPair error = %v, want one naming %s", err, tc.wantName)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if c.Leaf == nil || len(c.Certificate) != 2 || c.Leaf.Subject.CommonName != "mx.sealgate.test" {
				t.Errorf("loaded pair: leaf %v, chain of %d; want the leaf and its intermediate", c.Leaf, len(c.Certificate))
			}
		})
	}
}

func TestKeyPairStore(t *testing.T) {
	ca := certstest.NewCA(t, "root")
	a, b := ca.Leaf("mx.sealgate.test"), ca.Leaf("mx.sealgate.test")
	kp := NewKeyPair(&a)
	held := kp.Certificate()
	kp.Store(&b)
	if held != &a {
		t.Errorf("the certificate taken before Store changed")
	}
	srv, _ := kp.GetCertificate(&tls.ClientHelloInfo{})
	cli, _ := kp.GetClientCertificate(&tls.CertificateRequestInfo{})
	if srv != &b || cli != &b || kp.Certificate() != &b {
		t.Errorf("after Store the getters do not return the new certificate")
	}
}

func TestSelfSigned(t *testing.T) {
	c, err := SelfSigned("relay.sealgate.test")
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(c.Leaf)
	if _, err := c.Leaf.Verify(x509.VerifyOptions{Roots: roots, DNSName: "relay.sealgate.test"}); err != nil {
		t.Errorf("self-signed certificate does not verify for its name: %v", err)
	}
	if left := time.Until(c.Leaf.NotAfter); left < 364*24*time.Hour || left > 366*24*time.Hour {
		t.Errorf("validity left = %v, want about a year", left)
	}
	if _, err := tls.X509KeyPair(certstest.KeyPairPEM(t, *c)); err != nil {
		t.Errorf("key does not match the certificate: %v", err)
	}
}

func TestSPKISHA256(t *testing.T) {
	ca := certstest.NewCA(t, "root")
	key := certstest.NewKey(t)
	a := ca.Issue(certstest.Names("mx.sealgate.test"), certstest.WithKey(key)).Leaf
	b := ca.Issue(certstest.Names("mx.sealgate.test"), certstest.WithKey(key)).Leaf
	if !bytes.Equal(SPKISHA256(a), certstest.SPKISHA256(a)) {
		t.Errorf("SPKISHA256 differs from the reference digest")
	}
	if !bytes.Equal(SPKISHA256(a), SPKISHA256(b)) {
		t.Errorf("two certificates of one key have different SPKI digests")
	}
	if bytes.Equal(SPKISHA256(a), SPKISHA256(ca.Certificate())) {
		t.Errorf("different keys have the same SPKI digest")
	}
}

func TestLoadPool(t *testing.T) {
	dir := t.TempDir()
	ca := certstest.NewCA(t, "root")
	empty := filepath.Join(dir, "empty.pem")
	if err := os.WriteFile(empty, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		file    string
		wantErr func(error) bool
	}{
		{name: "good", file: ca.WriteCAFile(dir)},
		{name: "missing", file: filepath.Join(dir, "none.pem"), wantErr: func(err error) bool { return errors.Is(err, fs.ErrNotExist) }},
		{name: "empty", file: empty, wantErr: func(err error) bool { return strings.Contains(err.Error(), empty) }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, err := LoadPool(tc.file)
			if tc.wantErr != nil {
				if err == nil || !tc.wantErr(err) {
					t.Fatalf("LoadPool error = %v, want the expected kind", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if _, err := ca.Leaf("mx.sealgate.test").Leaf.Verify(x509.VerifyOptions{Roots: p, DNSName: "mx.sealgate.test"}); err != nil {
				t.Errorf("loaded pool does not trust the CA: %v", err)
			}
		})
	}
}
