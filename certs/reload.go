package certs

// Hot reload of key material. A Watcher watches the directories that hold
// its files, not the files themselves: editors and Kubernetes secret mounts
// replace files by rename or by flipping the `..data` symlink, which a watch
// on the old inode would miss. After a burst of events settles, every file
// set is read again and re-parsed only if its content hash changed. A bad
// new file (unparseable, half-written, key not matching the certificate)
// leaves the material in force and is logged; a later good one is taken.

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/fsnotify/fsnotify"
)

// DefaultDebounce is how long a Watcher waits for a burst of file events to
// settle before it reads the files again.
const DefaultDebounce = 200 * time.Millisecond

// Errors of loading key material; they arrive wrapped in a *FileError or
// with both file names.
var (
	ErrNoCertificate = errors.New("no PEM certificate")
	ErrMalformedPEM  = errors.New("malformed or truncated PEM block")
	ErrNoKey         = errors.New("no usable PEM private key")
	ErrKeyMismatch   = errors.New("private key does not match the certificate")
	ErrDuplicateName = errors.New("name already watched")
	ErrRunning       = errors.New("watcher already running")
)

// FileError names the file that could not be read or parsed.
type FileError struct {
	File string
	Err  error
}

func (e *FileError) Error() string { return e.File + ": " + e.Err.Error() }

func (e *FileError) Unwrap() error { return e.Err }

// Watcher reloads key pairs and CA bundles when their files change (Run)
// or on demand (Reload). Set its fields before the first Watch call; the
// zero value of each takes the default named on it.
type Watcher struct {
	// Log receives reloads, failures and expiry warnings; nil means
	// slog.Default().
	Log *slog.Logger
	// Debounce is the quiet time after the last file event before the
	// files are read again; zero means DefaultDebounce.
	Debounce time.Duration
	// Now is the clock for expiry warnings; nil means time.Now.
	Now func() time.Time
	// ExpiryThreshold is how close NotAfter must be for a warning; zero
	// means DefaultExpiryThreshold.
	ExpiryThreshold time.Duration
	// ExpiryInterval is how often Run repeats the expiry check; zero means
	// DefaultExpiryInterval (daily).
	ExpiryInterval time.Duration

	mu      sync.Mutex
	entries []*entry
	fsw     *fsnotify.Watcher // set while Run runs
	dirs    map[string]bool   // directories fsw watches
}

// entry is one named set of files that load together.
type entry struct {
	name  string
	files []string // absolute paths
	// load parses the files' contents in order; it returns the leaf
	// certificate (nil for a CA bundle) and a commit that puts the new
	// material in force.
	load  func(data [][]byte) (*x509.Certificate, func(), error)
	tried [sha256.Size]byte // content last parsed, good or bad
	good  [sha256.Size]byte // content in force
	leaf  *x509.Certificate
}

// NewWatcher returns a Watcher logging to log with default settings.
func NewWatcher(log *slog.Logger) *Watcher {
	return &Watcher{
		Log:             log,
		Debounce:        DefaultDebounce,
		Now:             time.Now,
		ExpiryThreshold: DefaultExpiryThreshold,
		ExpiryInterval:  DefaultExpiryInterval,
	}
}

func (w *Watcher) log() *slog.Logger {
	if w.Log == nil {
		return slog.Default()
	}
	return w.Log
}

func (w *Watcher) debounce() time.Duration {
	if w.Debounce <= 0 {
		return DefaultDebounce
	}
	return w.Debounce
}

// WatchKeyPair loads the PEM certificate chain in certFile and the private
// key in keyFile into kp now, and again whenever they change. The error of
// the first load (naming the file and why) is the start-up check; later
// failures are logged and keep the pair in force.
func (w *Watcher) WatchKeyPair(name string, kp *KeyPair, certFile, keyFile string) error {
	return w.register(name, []string{certFile, keyFile}, func(data [][]byte) (*x509.Certificate, func(), error) {
		c, err := parseKeyPair(certFile, data[0], keyFile, data[1])
		if err != nil {
			return nil, nil, err
		}
		return c.Leaf, func() { kp.Store(c) }, nil
	})
}

// WatchPool loads the PEM CA bundle in file now and whenever it changes,
// and calls set with each good new pool. set runs on the goroutine that
// loads (the caller's now, Run's or Reload's later) and must not call the
// Watcher.
func (w *Watcher) WatchPool(name, file string, set func(*x509.CertPool)) error {
	return w.register(name, []string{file}, func(data [][]byte) (*x509.Certificate, func(), error) {
		certs, err := parseCertificates(data[0])
		if err != nil {
			return nil, nil, &FileError{File: file, Err: err}
		}
		p := x509.NewCertPool()
		for _, c := range certs {
			p.AddCert(c)
		}
		return nil, func() { set(p) }, nil
	})
}

func (w *Watcher) register(name string, files []string, load func([][]byte) (*x509.Certificate, func(), error)) error {
	e := &entry{name: name, load: load}
	for _, f := range files {
		abs, err := filepath.Abs(f)
		if err != nil {
			return &FileError{File: f, Err: err}
		}
		e.files = append(e.files, abs)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, o := range w.entries {
		if o.name == name {
			return fmt.Errorf("certs: %q: %w", name, ErrDuplicateName)
		}
	}
	if _, err := w.refresh(e, true, true); err != nil {
		return fmt.Errorf("certs: %s: %w", name, err)
	}
	w.entries = append(w.entries, e)
	if w.fsw != nil {
		if err := w.watchDirs(e); err != nil {
			return fmt.Errorf("certs: %s: %w", name, err)
		}
	}
	return nil
}

// watchDirs adds the directories of e's files to the running fsnotify
// watcher. w.mu is held.
func (w *Watcher) watchDirs(e *entry) error {
	for _, f := range e.files {
		dir := filepath.Dir(f)
		if w.dirs[dir] {
			continue
		}
		if err := w.fsw.Add(dir); err != nil {
			return fmt.Errorf("watch %s: %w", dir, err)
		}
		w.dirs[dir] = true
	}
	return nil
}

// Reload reads every watched file now and puts changed, good material in
// force (SIGHUP). Unlike a file event it reports a bad file again even if
// its content was already reported.
func (w *Watcher) Reload() { w.check(true) }

// check refreshes every entry and logs the failures.
func (w *Watcher) check(force bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, e := range w.entries {
		if _, err := w.refresh(e, force, false); err != nil {
			attrs := []any{"name", e.name, "err", err}
			var fe *FileError
			if errors.As(err, &fe) {
				attrs = append(attrs, "file", fe.File)
			}
			w.log().Error("certs: reload failed; keeping the material in force", attrs...)
		}
	}
}

// refresh reads e's files and, when their content is new, parses it and
// puts it in force. It reports whether it did. w.mu is held.
func (w *Watcher) refresh(e *entry, force, initial bool) (bool, error) {
	data := make([][]byte, len(e.files))
	h := sha256.New()
	for i, f := range e.files {
		b, err := os.ReadFile(f)
		if err != nil {
			var pe *fs.PathError
			if errors.As(err, &pe) {
				err = pe.Err
			}
			return false, &FileError{File: f, Err: err}
		}
		data[i] = b
		fmt.Fprintf(h, "%d:", len(b))
		h.Write(b)
	}
	var sum [sha256.Size]byte
	h.Sum(sum[:0])
	if sum == e.good || (!force && sum == e.tried) {
		return false, nil
	}
	e.tried = sum
	leaf, commit, err := e.load(data)
	if err != nil {
		return false, err
	}
	commit()
	e.good, e.leaf = sum, leaf
	msg := "certs: reloaded"
	if initial {
		msg = "certs: loaded"
	}
	attrs := []any{"name", e.name, "files", strings.Join(e.files, ", ")}
	if leaf != nil {
		attrs = append(attrs, "subject", leaf.Subject.String(), "not_after", leaf.NotAfter)
	}
	w.log().Info(msg, attrs...)
	if leaf != nil {
		ExpiryWarning(w.log(), e.name, leaf, w.now(), w.expiryThreshold())
	}
	return true, nil
}

// Run watches the directories of the watched files until ctx is done, then
// closes the watch and returns nil. Bursts of events are debounced; any
// event on a watched file, or on a name starting with ".." (a Kubernetes
// secret volume's `..data` swap), triggers a re-read. Run also repeats the
// expiry check every ExpiryInterval.
func (w *Watcher) Run(ctx context.Context) error {
	fsw, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("certs: watch: %w", err)
	}
	defer fsw.Close()
	if err := w.start(fsw); err != nil {
		return err
	}
	defer w.stop()
	// Catch changes made between the first load and the watch.
	w.check(false)

	tick := time.NewTicker(w.expiryInterval())
	defer tick.Stop()
	return WatchLoop(ctx, "certs", fsw, w.debounce(), w.relevant, func() { w.check(false) },
		func(err error) { w.log().Error("certs: watch", "err", err) },
		tick.C, w.CheckExpiry)
}

func (w *Watcher) start(fsw *fsnotify.Watcher) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.fsw != nil {
		return fmt.Errorf("certs: %w", ErrRunning)
	}
	w.fsw, w.dirs = fsw, map[string]bool{}
	for _, e := range w.entries {
		if err := w.watchDirs(e); err != nil {
			w.fsw, w.dirs = nil, nil
			return fmt.Errorf("certs: %s: %w", e.name, err)
		}
	}
	return nil
}

func (w *Watcher) stop() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.fsw, w.dirs = nil, nil
}

// relevant reports whether ev may change a watched file.
func (w *Watcher) relevant(ev fsnotify.Event) bool {
	if strings.HasPrefix(filepath.Base(ev.Name), "..") {
		return true
	}
	name := filepath.Clean(ev.Name)
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, e := range w.entries {
		for _, f := range e.files {
			if f == name {
				return true
			}
		}
	}
	return false
}

// parseKeyPair parses a PEM chain and key, naming the file at fault.
func parseKeyPair(certFile string, certPEM []byte, keyFile string, keyPEM []byte) (*tls.Certificate, error) {
	if _, err := parseCertificates(certPEM); err != nil {
		return nil, &FileError{File: certFile, Err: err}
	}
	if err := checkPrivateKey(keyPEM); err != nil {
		return nil, &FileError{File: keyFile, Err: err}
	}
	c, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("key %s, certificate %s: %w: %w", keyFile, certFile, ErrKeyMismatch, err)
	}
	return &c, nil
}

// parseCertificates parses every CERTIFICATE block of a PEM file, strictly:
// a block that does not decode (a half-written file) is an error, where
// pem.Decode and x509.CertPool.AppendCertsFromPEM would skip it.
func parseCertificates(data []byte) ([]*x509.Certificate, error) {
	var out []*x509.Certificate
	blocks := 0
	for rest := data; ; {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		blocks++
		if b.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("certificate %d: %w", len(out)+1, err)
		}
		out = append(out, c)
	}
	if blocks != bytes.Count(data, []byte("-----BEGIN ")) {
		return nil, ErrMalformedPEM
	}
	if len(out) == 0 {
		return nil, ErrNoCertificate
	}
	return out, nil
}

// checkPrivateKey finds the first PEM private key block and parses it the
// ways tls.X509KeyPair does.
func checkPrivateKey(data []byte) error {
	for rest := data; ; {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			if bytes.Contains(rest, []byte("-----BEGIN ")) {
				return fmt.Errorf("%w: %w", ErrNoKey, ErrMalformedPEM)
			}
			return ErrNoKey
		}
		if b.Type != "PRIVATE KEY" && !strings.HasSuffix(b.Type, " PRIVATE KEY") {
			continue
		}
		if _, err := x509.ParsePKCS8PrivateKey(b.Bytes); err == nil {
			return nil
		}
		if _, err := x509.ParsePKCS1PrivateKey(b.Bytes); err == nil {
			return nil
		}
		if _, err := x509.ParseECPrivateKey(b.Bytes); err == nil {
			return nil
		}
		return fmt.Errorf("%w: %s block does not parse", ErrNoKey, b.Type)
	}
}
