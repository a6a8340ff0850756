package certs

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"sealgate/certs/certstest"
	"sealgate/upstream/upstreamtest"
)

// syncBuffer is a log sink that Run's goroutine and the test share.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func newTestWatcher(t *testing.T) (*Watcher, *syncBuffer) {
	t.Helper()
	buf := &syncBuffer{}
	w := NewWatcher(slog.New(slog.NewTextHandler(buf, &slog.HandlerOptions{Level: slog.LevelDebug})))
	w.Debounce = 20 * time.Millisecond
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("watcher log:\n%s", buf.String())
		}
	})
	return w, buf
}

// run starts w.Run and, at cleanup, stops it and checks that it returned nil.
func run(t *testing.T, w *Watcher) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(5 * time.Second):
			t.Errorf("Run did not return after cancel")
		}
	})
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// replaceFile writes data to a new file beside path and renames it over
// path, as editors and deploy tools do.
func replaceFile(t *testing.T, path string, data []byte) {
	t.Helper()
	f, err := os.CreateTemp(filepath.Dir(path), ".new-*")
	if err != nil {
		t.Fatal(err)
	}
	_, werr := f.Write(data)
	if cerr := f.Close(); werr != nil || cerr != nil {
		t.Fatalf("write %s: %v %v", f.Name(), werr, cerr)
	}
	if err := os.Rename(f.Name(), path); err != nil {
		t.Fatal(err)
	}
}

func replacePair(t *testing.T, certFile, keyFile string, c tls.Certificate) {
	t.Helper()
	certPEM, keyPEM := certstest.KeyPairPEM(t, c)
	replaceFile(t, certFile, certPEM)
	replaceFile(t, keyFile, keyPEM)
}

// serves reports whether kp holds the certificate whose leaf is want.
func serves(kp *KeyPair, want tls.Certificate) bool {
	c := kp.Certificate()
	return c != nil && c.Leaf != nil && c.Leaf.Equal(want.Leaf)
}

func TestWatchKeyPairStartupErrors(t *testing.T) {
	ca := certstest.NewCA(t, "root")
	a := ca.Leaf("mx.sealgate.test")
	b := ca.Leaf("mx.sealgate.test")
	certA, keyA := certstest.KeyPairPEM(t, a)
	_, keyB := certstest.KeyPairPEM(t, b)

	tests := []struct {
		name    string
		certPEM []byte // nil: file missing
		keyPEM  []byte
		badCert bool // the error names the certificate file
		badKey  bool // the error names the key file
		wantErr error
	}{
		{name: "cert missing", keyPEM: keyA, badCert: true, wantErr: fs.ErrNotExist},
		{name: "key missing", certPEM: certA, badKey: true, wantErr: fs.ErrNotExist},
		{name: "cert not PEM", certPEM: []byte("hello\n"), keyPEM: keyA, badCert: true, wantErr: ErrNoCertificate},
		{name: "cert empty", certPEM: []byte{}, keyPEM: keyA, badCert: true, wantErr: ErrNoCertificate},
		{name: "cert half written", certPEM: certA[:len(certA)/2], keyPEM: keyA, badCert: true, wantErr: ErrMalformedPEM},
		{name: "key not PEM", certPEM: certA, keyPEM: []byte("secret\n"), badKey: true, wantErr: ErrNoKey},
		{name: "key half written", certPEM: certA, keyPEM: keyA[:len(keyA)/2], badKey: true, wantErr: ErrMalformedPEM},
		{name: "key of another cert", certPEM: certA, keyPEM: keyB, badCert: true, badKey: true, wantErr: ErrKeyMismatch},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
			for file, data := range map[string][]byte{certFile: tc.certPEM, keyFile: tc.keyPEM} {
				if data != nil {
					if err := os.WriteFile(file, data, 0o600); err != nil {
						t.Fatal(err)
					}
				}
			}
			w, _ := newTestWatcher(t)
			kp := &KeyPair{}
			err := w.WatchKeyPair("inbound", kp, certFile, keyFile)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("WatchKeyPair error = %v, want %v", err, tc.wantErr)
			}
			msg := err.Error()
			if got := strings.Contains(msg, certFile); got != tc.badCert {
				t.Errorf("error %q names %s: %v, want %v", msg, certFile, got, tc.badCert)
			}
			if got := strings.Contains(msg, keyFile); got != tc.badKey {
				t.Errorf("error %q names %s: %v, want %v", msg, keyFile, got, tc.badKey)
			}
			if !strings.Contains(msg, "inbound") {
				t.Errorf("error %q does not name the key pair", msg)
			}
			if kp.Certificate() != nil {
				t.Errorf("a failed load stored a certificate")
			}
			if len(w.Expiries()) != 0 {
				t.Errorf("a failed load is watched: %v", w.Expiries())
			}
		})
	}
}

func TestWatchPoolStartupErrors(t *testing.T) {
	caPEM := certstest.NewCA(t, "root").PEM()
	tests := []struct {
		name    string
		data    []byte // nil: file missing
		wantErr error
	}{
		{name: "missing", wantErr: fs.ErrNotExist},
		{name: "not PEM", data: []byte("no certificates here"), wantErr: ErrNoCertificate},
		{name: "half written", data: caPEM[:len(caPEM)-40], wantErr: ErrMalformedPEM},
		{name: "second block half written", data: append(append([]byte{}, caPEM...), caPEM[:100]...), wantErr: ErrMalformedPEM},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			file := filepath.Join(t.TempDir(), "ca.pem")
			if tc.data != nil {
				if err := os.WriteFile(file, tc.data, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			w, _ := newTestWatcher(t)
			called := false
			err := w.WatchPool("roots", file, func(*x509.CertPool) { called = true })
			if !errors.Is(err, tc.wantErr) || !strings.Contains(err.Error(), file) {
				t.Fatalf("WatchPool error = %v, want %v naming %s", err, tc.wantErr, file)
			}
			if called {
				t.Errorf("set was called for a bad bundle")
			}
		})
	}
}

func TestWatchDuplicateName(t *testing.T) {
	dir := t.TempDir()
	ca := certstest.NewCA(t, "root")
	certFile, keyFile := ca.WriteFiles(dir, "mx.sealgate.test")
	w, _ := newTestWatcher(t)
	if err := w.WatchKeyPair("inbound", &KeyPair{}, certFile, keyFile); err != nil {
		t.Fatal(err)
	}
	err := w.WatchPool("inbound", ca.WriteCAFile(dir), func(*x509.CertPool) {})
	if !errors.Is(err, ErrDuplicateName) {
		t.Fatalf("second watch under one name: error = %v, want ErrDuplicateName", err)
	}
}

func TestReplaceByRename(t *testing.T) {
	dir := t.TempDir()
	ca := certstest.NewCA(t, "root")
	a, b := ca.Leaf("mx.sealgate.test"), ca.Leaf("mx.sealgate.test")
	certFile, keyFile := certstest.WriteKeyPair(t, dir, a)
	w, logs := newTestWatcher(t)
	kp := &KeyPair{}
	if err := w.WatchKeyPair("inbound", kp, certFile, keyFile); err != nil {
		t.Fatal(err)
	}
	if !serves(kp, a) {
		t.Fatalf("the first load did not store the certificate")
	}
	run(t, w)

	replacePair(t, certFile, keyFile, b)
	waitFor(t, "the new certificate", func() bool { return serves(kp, b) })
	waitFor(t, "the reload log", func() bool { return strings.Contains(logs.String(), "certs: reloaded") })
	if got := w.Expiries()["inbound"]; !got.Equal(b.Leaf.NotAfter) {
		t.Errorf("Expiries after the reload = %v, want %v", got, b.Leaf.NotAfter)
	}
}

func TestBadReplacementKeepsOld(t *testing.T) {
	ca := certstest.NewCA(t, "root")
	a, b, c := ca.Leaf("mx.sealgate.test"), ca.Leaf("mx.sealgate.test"), ca.Leaf("mx.sealgate.test")
	certA, _ := certstest.KeyPairPEM(t, a)
	certB, _ := certstest.KeyPairPEM(t, b)

	tests := []struct {
		name     string
		target   string // "cert" or "key": which file goes bad
		data     []byte
		wantFile bool   // the log has file=<target>
		wantWhy  string // the reason in the log
	}{
		{name: "garbage cert", target: "cert", data: []byte("garbage"), wantFile: true, wantWhy: ErrNoCertificate.Error()},
		{name: "half-written cert", target: "cert", data: certA[:len(certA)*2/3], wantFile: true, wantWhy: ErrMalformedPEM.Error()},
		{name: "empty key", target: "key", data: nil, wantFile: true, wantWhy: ErrNoKey.Error()},
		{name: "cert of another key", target: "cert", data: certB, wantWhy: ErrKeyMismatch.Error()},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			certFile, keyFile := certstest.WriteKeyPair(t, dir, a)
			w, logs := newTestWatcher(t)
			kp := &KeyPair{}
			if err := w.WatchKeyPair("inbound", kp, certFile, keyFile); err != nil {
				t.Fatal(err)
			}
			run(t, w)

			bad := map[string]string{"cert": certFile, "key": keyFile}[tc.target]
			replaceFile(t, bad, tc.data)
			waitFor(t, "the failure in the log", func() bool {
				return strings.Contains(logs.String(), "reload failed")
			})
			log := logs.String()
			if !strings.Contains(log, bad) || !strings.Contains(log, tc.wantWhy) {
				t.Errorf("log does not name %s and %q:\n%s", bad, tc.wantWhy, log)
			}
			if got := strings.Contains(log, "file="+bad); got != tc.wantFile {
				t.Errorf("log has file=%s: %v, want %v", bad, got, tc.wantFile)
			}
			if !serves(kp, a) {
				t.Fatalf("a bad file replaced the certificate in force")
			}
			if got := w.Expiries()["inbound"]; !got.Equal(a.Leaf.NotAfter) {
				t.Errorf("Expiries after a failed reload = %v, want the old %v", got, a.Leaf.NotAfter)
			}

			replacePair(t, certFile, keyFile, c)
			waitFor(t, "the following good certificate", func() bool { return serves(kp, c) })
		})
	}
}

func TestReloadWithoutRun(t *testing.T) {
	dir := t.TempDir()
	ca := certstest.NewCA(t, "root")
	a, b := ca.Leaf("mx.sealgate.test"), ca.Leaf("mx.sealgate.test")
	certFile, keyFile := certstest.WriteKeyPair(t, dir, a)
	w, logs := newTestWatcher(t)
	kp := &KeyPair{}
	if err := w.WatchKeyPair("inbound", kp, certFile, keyFile); err != nil {
		t.Fatal(err)
	}

	replacePair(t, certFile, keyFile, b)
	if !serves(kp, a) {
		t.Fatalf("the pair changed without Run or Reload")
	}
	w.Reload()
	if !serves(kp, b) {
		t.Fatalf("Reload did not load the new certificate")
	}

	replaceFile(t, certFile, []byte("garbage"))
	w.Reload()
	w.Reload()
	if !serves(kp, b) {
		t.Fatalf("Reload of a bad file replaced the certificate in force")
	}
	// Unlike a file event, every Reload reports a bad file again.
	if n := strings.Count(logs.String(), "reload failed"); n != 2 {
		t.Errorf("two Reloads of a bad file logged %d failures, want 2:\n%s", n, logs.String())
	}
}

// writeK8sSecret writes cert into a new timestamped directory of a
// Kubernetes secret volume and flips `..data` to it, as kubelet's atomic
// writer does.
func writeK8sSecret(t *testing.T, dir, gen string, cert tls.Certificate) {
	t.Helper()
	ts := filepath.Join(dir, "..2026_01_01_00_00_0"+gen)
	if err := os.Mkdir(ts, 0o755); err != nil {
		t.Fatal(err)
	}
	certPEM, keyPEM := certstest.KeyPairPEM(t, cert)
	for name, data := range map[string][]byte{"tls.crt": certPEM, "tls.key": keyPEM} {
		if err := os.WriteFile(filepath.Join(ts, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	tmp := filepath.Join(dir, "..data_tmp")
	if err := os.Symlink(filepath.Base(ts), tmp); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
}

func TestKubernetesSymlinkSwap(t *testing.T) {
	dir := t.TempDir()
	ca := certstest.NewCA(t, "root")
	a, b := ca.Leaf("mx.sealgate.test"), ca.Leaf("mx.sealgate.test")
	writeK8sSecret(t, dir, "1", a)
	for _, name := range []string{"tls.crt", "tls.key"} {
		if err := os.Symlink(filepath.Join("..data", name), filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
	}
	w, _ := newTestWatcher(t)
	kp := &KeyPair{}
	if err := w.WatchKeyPair("inbound", kp, filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")); err != nil {
		t.Fatal(err)
	}
	run(t, w)

	writeK8sSecret(t, dir, "2", b)
	if err := os.RemoveAll(filepath.Join(dir, "..2026_01_01_00_00_01")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the certificate behind the new ..data", func() bool { return serves(kp, b) })
}

func TestWatchPoolReload(t *testing.T) {
	dir := t.TempDir()
	ca1, ca2 := certstest.NewCA(t, "root 1"), certstest.NewCA(t, "root 2")
	file := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(file, ca1.PEM(), 0o644); err != nil {
		t.Fatal(err)
	}
	w, logs := newTestWatcher(t)
	var mu sync.Mutex
	var pools []*x509.CertPool
	if err := w.WatchPool("roots", file, func(p *x509.CertPool) {
		mu.Lock()
		defer mu.Unlock()
		pools = append(pools, p)
	}); err != nil {
		t.Fatal(err)
	}
	last := func() (int, *x509.CertPool) {
		mu.Lock()
		defer mu.Unlock()
		return len(pools), pools[len(pools)-1]
	}
	trusts := func(p *x509.CertPool, ca *certstest.CA) bool {
		_, err := ca.Leaf("mx.sealgate.test").Leaf.Verify(x509.VerifyOptions{Roots: p, DNSName: "mx.sealgate.test"})
		return err == nil
	}
	if n, p := last(); n != 1 || !trusts(p, ca1) || trusts(p, ca2) {
		t.Fatalf("first load: %d pools, want 1 trusting only root 1", n)
	}
	if _, ok := w.Expiries()["roots"]; ok {
		t.Errorf("a CA bundle is listed in Expiries")
	}
	run(t, w)

	replaceFile(t, file, ca2.PEM()[:200])
	waitFor(t, "the failure in the log", func() bool { return strings.Contains(logs.String(), "reload failed") })
	if n, _ := last(); n != 1 {
		t.Fatalf("a half-written bundle was passed to set")
	}
	replaceFile(t, file, append(ca1.PEM(), ca2.PEM()...))
	waitFor(t, "the new pool", func() bool { n, _ := last(); return n == 2 })
	if _, p := last(); !trusts(p, ca1) || !trusts(p, ca2) {
		t.Errorf("the new pool does not trust both roots")
	}
}

func TestHandshakeAcrossSwap(t *testing.T) {
	dir := t.TempDir()
	ca := certstest.NewCA(t, "root")
	a, b := ca.Leaf("mx.sealgate.test"), ca.Leaf("mx.sealgate.test")
	certFile, keyFile := certstest.WriteKeyPair(t, dir, a)
	w, _ := newTestWatcher(t)
	kp := &KeyPair{}
	if err := w.WatchKeyPair("inbound", kp, certFile, keyFile); err != nil {
		t.Fatal(err)
	}
	run(t, w)

	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{GetCertificate: kp.GetCertificate})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(wg.Wait)
	t.Cleanup(func() { ln.Close() })
	wg.Go(func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() { // echo lines until the client closes
				defer conn.Close()
				conn.SetDeadline(time.Now().Add(10 * time.Second))
				r := bufio.NewReader(conn)
				for {
					line, err := r.ReadString('\n')
					if err != nil {
						return
					}
					if _, err := conn.Write([]byte(line)); err != nil {
						return
					}
				}
			})
		}
	})

	dial := func() (*tls.Conn, *bufio.Reader) {
		t.Helper()
		conn, err := tls.Dial("tcp", ln.Addr().String(), &tls.Config{RootCAs: ca.Pool(), ServerName: "mx.sealgate.test"})
		if err != nil {
			t.Fatalf("dial: %v", err)
		}
		t.Cleanup(func() { conn.Close() })
		conn.SetDeadline(time.Now().Add(10 * time.Second))
		return conn, bufio.NewReader(conn)
	}
	echo := func(conn *tls.Conn, r *bufio.Reader, msg string) {
		t.Helper()
		if _, err := conn.Write([]byte(msg + "\n")); err != nil {
			t.Fatalf("write: %v", err)
		}
		if got, err := r.ReadString('\n'); err != nil || got != msg+"\n" {
			t.Fatalf("echo = %q, %v; want %q", got, err, msg)
		}
	}
	peer := func(conn *tls.Conn) *x509.Certificate { return conn.ConnectionState().PeerCertificates[0] }

	old, oldR := dial()
	echo(old, oldR, "before")
	if !peer(old).Equal(a.Leaf) {
		t.Fatalf("first connection did not see the first certificate")
	}

	replacePair(t, certFile, keyFile, b)
	waitFor(t, "the new certificate", func() bool { return serves(kp, b) })

	echo(old, oldR, "after")
	if !peer(old).Equal(a.Leaf) {
		t.Errorf("the open connection's certificate changed")
	}
	fresh, freshR := dial()
	echo(fresh, freshR, "new")
	if !peer(fresh).Equal(b.Leaf) {
		t.Errorf("a handshake after the swap did not see the new certificate")
	}
}

func TestRunStopsAndClosesWatch(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := certstest.NewCA(t, "root").WriteFiles(dir, "mx.sealgate.test")
	w, _ := newTestWatcher(t)
	if err := w.WatchKeyPair("inbound", &KeyPair{}, certFile, keyFile); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	waitFor(t, "Run to start watching", func() bool {
		w.mu.Lock()
		defer w.mu.Unlock()
		return w.fsw != nil
	})
	if err := w.Run(ctx); !errors.Is(err, ErrRunning) {
		t.Errorf("a second Run: error = %v, want ErrRunning", err)
	}
	if !stacksContain("fsnotify") {
		t.Fatalf("no fsnotify goroutine while Run runs; the leak check below would prove nothing")
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run after cancel: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatalf("Run did not return after cancel")
	}
	// Nothing Run started may outlive it. A goroutine that has just
	// signalled its end may still be on its way out, so it gets a second;
	// a leaked one stays blocked for ever.
	if left := upstreamtest.WaitLeaked(time.Second, "fsnotify", "certs.(*Watcher).Run"); left != "" {
		t.Errorf("goroutines left after Run returned:\n%s", left)
	}
}

func stacksContain(s string) bool { return upstreamtest.Leaked(s) != "" }

func FuzzParseKeyPair(f *testing.F) {
	ca := certstest.NewCA(f, "root")
	certPEM, keyPEM := certstest.KeyPairPEM(f, ca.Leaf("mx.sealgate.test"))
	f.Add(certPEM, keyPEM)
	f.Add(certPEM[:len(certPEM)/2], keyPEM)
	f.Add(append(append([]byte{}, certPEM...), ca.PEM()...), keyPEM)
	f.Add([]byte("-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n"), []byte("-----BEGIN PRIVATE KEY-----\n"))
	f.Fuzz(func(t *testing.T, certPEM, keyPEM []byte) {
		c, err := parseKeyPair("cert.pem", certPEM, "key.pem", keyPEM)
		if err != nil {
			if c != nil {
				t.Fatalf("certificate returned with error %v", err)
			}
			if !strings.Contains(err.Error(), ".pem") {
				t.Fatalf("error %q names no file", err)
			}
			return
		}
		if c.Leaf == nil || !bytes.Equal(c.Leaf.Raw, c.Certificate[0]) {
			t.Fatalf("loaded pair without its leaf")
		}
	})
}

func FuzzParseCertificates(f *testing.F) {
	ca := certstest.NewCA(f, "root")
	f.Add(ca.PEM())
	f.Add(append(ca.PEM(), ca.PEM()[:64]...))
	f.Add([]byte("junk -----BEGIN X-----\n-----END X-----\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		certs, err := parseCertificates(data)
		if (err == nil) == (len(certs) == 0) {
			t.Fatalf("parseCertificates = %d certificates, error %v", len(certs), err)
		}
	})
}
