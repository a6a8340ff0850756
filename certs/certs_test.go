package certs

import (
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

func TestKeyPairStore(t *testing.T) {
	ca := certstest.NewCA(t, "root")
	a, b := ca.Leaf("mx.sealgate.test"), ca.Leaf("mx.sealgate.test")
	kp := &KeyPair{}
	kp.Store(&a)
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
