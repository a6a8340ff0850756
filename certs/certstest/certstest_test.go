package certstest_test

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"os"
	"testing"
	"time"

	"sealgate/certs/certstest"
)

func verify(cert tls.Certificate, roots *x509.CertPool, name string, usage x509.ExtKeyUsage) error {
	inter := x509.NewCertPool()
	for _, der := range cert.Certificate[1:] {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return err
		}
		inter.AddCert(c)
	}
	_, err := cert.Leaf.Verify(x509.VerifyOptions{
		DNSName:       name,
		Roots:         roots,
		Intermediates: inter,
		KeyUsages:     []x509.ExtKeyUsage{usage},
	})
	return err
}

func TestVerification(t *testing.T) {
	root := certstest.NewCA(t, "root")
	inter := root.Intermediate("intermediate")
	other := certstest.NewCA(t, "other root")

	tests := []struct {
		name      string
		cert      tls.Certificate
		roots     *x509.CertPool
		host      string
		usage     x509.ExtKeyUsage
		chainLen  int
		wantValid bool
		wantErr   func(error) bool
	}{
		{
			name: "leaf from root", cert: root.Leaf("mx1.example.test"), roots: root.Pool(),
			host: "mx1.example.test", usage: x509.ExtKeyUsageServerAuth, chainLen: 1, wantValid: true,
		},
		{
			name: "leaf from intermediate", cert: inter.Leaf("mx1.example.test"), roots: inter.Pool(),
			host: "mx1.example.test", usage: x509.ExtKeyUsageServerAuth, chainLen: 2, wantValid: true,
		},
		{
			name: "IP SAN", cert: root.Leaf("mx.example.test", "127.0.0.7"), roots: root.Pool(),
			host: "127.0.0.7", usage: x509.ExtKeyUsageServerAuth, chainLen: 1, wantValid: true,
		},
		{
			name: "wrong name", cert: root.Leaf("mx1.example.test"), roots: root.Pool(),
			host: "mx2.example.test", usage: x509.ExtKeyUsageServerAuth, chainLen: 1,
			wantErr: func(err error) bool { var h x509.HostnameError; return errors.As(err, &h) },
		},
		{
			name: "expired", cert: root.Issue(certstest.Names("mx1.example.test"), certstest.Expired()), roots: root.Pool(),
			host: "mx1.example.test", usage: x509.ExtKeyUsageServerAuth, chainLen: 1,
			wantErr: func(err error) bool {
				var e x509.CertificateInvalidError
				return errors.As(err, &e) && e.Reason == x509.Expired
			},
		},
		{
			name: "not yet valid", cert: root.Issue(certstest.Names("mx1.example.test"), certstest.NotYetValid()), roots: root.Pool(),
			host: "mx1.example.test", usage: x509.ExtKeyUsageServerAuth, chainLen: 1,
			wantErr: func(err error) bool {
				var e x509.CertificateInvalidError
				return errors.As(err, &e) && e.Reason == x509.Expired
			},
		},
		{
			name: "explicit validity window", roots: root.Pool(),
			cert: root.Issue(certstest.Names("mx1.example.test"),
				certstest.NotBefore(time.Now().Add(-3*time.Hour)), certstest.NotAfter(time.Now().Add(-2*time.Hour))),
			host: "mx1.example.test", usage: x509.ExtKeyUsageServerAuth, chainLen: 1,
			wantErr: func(err error) bool {
				var e x509.CertificateInvalidError
				return errors.As(err, &e) && e.Reason == x509.Expired
			},
		},
		{
			name: "other root", cert: root.Leaf("mx1.example.test"), roots: other.Pool(),
			host: "mx1.example.test", usage: x509.ExtKeyUsageServerAuth, chainLen: 1,
			wantErr: func(err error) bool { var u x509.UnknownAuthorityError; return errors.As(err, &u) },
		},
		{
			name: "self-signed", cert: certstest.SelfSigned(t, "mx1.example.test"), roots: root.Pool(),
			host: "mx1.example.test", usage: x509.ExtKeyUsageServerAuth, chainLen: 1,
			wantErr: func(err error) bool { var u x509.UnknownAuthorityError; return errors.As(err, &u) },
		},
		{
			name: "client auth usage", cert: root.Issue(certstest.Names("client.test"), certstest.ClientAuth()), roots: root.Pool(),
			host: "client.test", usage: x509.ExtKeyUsageClientAuth, chainLen: 1, wantValid: true,
		},
		{
			name: "server leaf used as client", cert: root.Leaf("client.test"), roots: root.Pool(),
			host: "client.test", usage: x509.ExtKeyUsageClientAuth, chainLen: 1,
			wantErr: func(err error) bool {
				var e x509.CertificateInvalidError
				return errors.As(err, &e) && e.Reason == x509.IncompatibleUsage
			},
		},
		{
			name: "include root", cert: inter.Issue(certstest.Names("mx1.example.test"), certstest.IncludeRoot()), roots: root.Pool(),
			host: "mx1.example.test", usage: x509.ExtKeyUsageServerAuth, chainLen: 3, wantValid: true,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := len(tc.cert.Certificate); got != tc.chainLen {
				t.Errorf("chain length = %d, want %d", got, tc.chainLen)
			}
			if tc.cert.Leaf == nil || !bytes.Equal(tc.cert.Leaf.Raw, tc.cert.Certificate[0]) {
				t.Fatalf("Leaf is not the first certificate of the chain")
			}
			err := verify(tc.cert, tc.roots, tc.host, tc.usage)
			if tc.wantValid {
				if err != nil {
					t.Fatalf("Verify: %v", err)
				}
				return
			}
			if err == nil || !tc.wantErr(err) {
				t.Fatalf("Verify error = %v (%T), want the expected kind", err, err)
			}
		})
	}
}

func TestChainOrder(t *testing.T) {
	root := certstest.NewCA(t, "root")
	i1 := root.Intermediate("i1")
	i2 := i1.Intermediate("i2")
	leaf := i2.Issue(certstest.Names("mx.example.test"), certstest.IncludeRoot())
	want := [][]byte{leaf.Leaf.Raw, i2.Certificate().Raw, i1.Certificate().Raw, root.Certificate().Raw}
	if len(leaf.Certificate) != len(want) {
		t.Fatalf("chain length = %d, want %d", len(leaf.Certificate), len(want))
	}
	for i := range want {
		if !bytes.Equal(leaf.Certificate[i], want[i]) {
			t.Errorf("chain[%d] is not the expected certificate", i)
		}
	}
	if !i2.Root().Equal(root.Certificate()) {
		t.Errorf("Root() of a second-level intermediate is not the root")
	}
	if err := verify(leaf, i2.Pool(), "mx.example.test", x509.ExtKeyUsageServerAuth); err != nil {
		t.Errorf("Verify: %v", err)
	}
}

func TestHandshake(t *testing.T) {
	ca := certstest.NewCA(t, "root").Intermediate("issuing")
	srvCert := ca.Leaf("mx.example.test")
	cliCert := ca.Issue(certstest.Names("client.test"), certstest.ClientAuth())

	c1, c2 := net.Pipe()
	defer c1.Close()
	defer c2.Close()
	srv := tls.Server(c1, &tls.Config{
		Certificates: []tls.Certificate{srvCert},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    ca.Pool(),
	})
	cli := tls.Client(c2, &tls.Config{
		RootCAs:      ca.Pool(),
		ServerName:   "mx.example.test",
		Certificates: []tls.Certificate{cliCert},
	})
	errc := make(chan error, 1)
	go func() { errc <- srv.Handshake() }()
	if err := cli.Handshake(); err != nil {
		t.Fatalf("client handshake: %v", err)
	}
	if err := <-errc; err != nil {
		t.Fatalf("server handshake: %v", err)
	}
	peer := srv.ConnectionState().PeerCertificates
	if len(peer) != 2 || !peer[0].Equal(cliCert.Leaf) {
		t.Fatalf("server saw %d client certificates, want the client's chain of 2", len(peer))
	}
}

func TestDigests(t *testing.T) {
	ca := certstest.NewCA(t, "root")
	key := certstest.NewKey(t)
	a := ca.Issue(certstest.Names("mx.example.test"), certstest.WithKey(key)).Leaf
	b := ca.Issue(certstest.Names("mx.example.test"), certstest.WithKey(key)).Leaf
	c := ca.Leaf("mx.example.test").Leaf

	tests := []struct {
		name   string
		digest func(*x509.Certificate) []byte
		size   int
		sameAB bool // a and b share a key but are different certificates
	}{
		{name: "SPKISHA256", digest: certstest.SPKISHA256, size: 32, sameAB: true},
		{name: "SPKISHA512", digest: certstest.SPKISHA512, size: 64, sameAB: true},
		{name: "CertSHA256", digest: certstest.CertSHA256, size: 32, sameAB: false},
		{name: "CertSHA512", digest: certstest.CertSHA512, size: 64, sameAB: false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			da, db, dc := tc.digest(a), tc.digest(b), tc.digest(c)
			if len(da) != tc.size {
				t.Errorf("digest size = %d, want %d", len(da), tc.size)
			}
			if got := bytes.Equal(da, db); got != tc.sameAB {
				t.Errorf("equal digests for two certificates of one key = %v, want %v", got, tc.sameAB)
			}
			if bytes.Equal(da, dc) {
				t.Errorf("certificates with different keys have the same digest")
			}
		})
	}
}

func TestFiles(t *testing.T) {
	dir := t.TempDir()
	ca := certstest.NewCA(t, "root").Intermediate("issuing")

	certFile, keyFile := ca.WriteFiles(dir, "sealgate.test")
	pair, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatalf("LoadX509KeyPair: %v", err)
	}
	if len(pair.Certificate) != 2 {
		t.Errorf("certificate file holds %d certificates, want leaf and intermediate", len(pair.Certificate))
	}
	if err := verify(pair, ca.Pool(), "sealgate.test", x509.ExtKeyUsageServerAuth); err != nil {
		t.Errorf("Verify of the loaded pair: %v", err)
	}
	if fi, err := os.Stat(keyFile); err != nil || fi.Mode().Perm()&0o077 != 0 {
		t.Errorf("key file mode = %v (err %v), want no group or other access", fi.Mode(), err)
	}

	pool := x509.NewCertPool()
	data, err := os.ReadFile(ca.WriteCAFile(dir))
	if err != nil {
		t.Fatal(err)
	}
	if !pool.AppendCertsFromPEM(data) || !bytes.Equal(data, ca.PEM()) {
		t.Fatalf("CA file is not the PEM root certificate")
	}
	if err := verify(pair, pool, "sealgate.test", x509.ExtKeyUsageServerAuth); err != nil {
		t.Errorf("Verify against the CA file: %v", err)
	}

	c2, k2 := ca.WriteFiles(dir, "other.test")
	if c2 == certFile || k2 == keyFile {
		t.Errorf("second WriteFiles reused file names")
	}
}
