package localpolicy

// The live table. Like certs.Watcher, Live watches the directories that
// hold its files, not the files: editors and Kubernetes ConfigMap and
// Secret volumes replace files by rename or by flipping the `..data`
// symlink, which a watch on the old inode would miss.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fsnotify/fsnotify"

	"sealgate/certs"
)

// DefaultDebounce is how long Run waits for a burst of file events to
// settle before it reads the policy file again.
const DefaultDebounce = 200 * time.Millisecond

// Live is the policy table in force. It is replaced whole when the policy
// file or a tafile it names changes (Run) or on demand (Reload, for
// SIGHUP); a file that does not parse keeps the table in force and is
// logged. Lookups are safe for concurrent use and see one table or the
// other, never a mix. A nil *Live is an empty table.
type Live struct {
	// Log receives reloads and failures; nil means slog.Default().
	Log *slog.Logger
	// Debounce is the quiet time after the last file event before the
	// files are read again; zero means DefaultDebounce. Set it before Run.
	Debounce time.Duration

	file string // absolute
	cur  atomic.Pointer[Policy]

	mu      sync.Mutex        // serializes reloads; guards the fields below
	tafiles []string          // named by the last parse, good or bad
	lastErr string            // last failure logged by a file event
	fsw     *fsnotify.Watcher // set while Run runs
	dirs    map[string]bool   // directories fsw watches
}

var _ interface {
	Lookup(string) (*Entry, bool)
	LookupNexthop(string, int, bool) (*Entry, bool)
} = (*Live)(nil)

// LoadLive loads the policy file at path (see Parse) into a live table
// that logs to log. Its error is the start-up check, one *ParseError per
// bad line.
func LoadLive(path string, log *slog.Logger) (*Live, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("policy file: %w", err)
	}
	l := &Live{Log: log, file: abs}
	p, tafiles, err := l.read()
	l.tafiles = tafiles
	if err != nil {
		return nil, err
	}
	l.cur.Store(p)
	l.log().Info("local policy loaded", "file", abs, "entries", p.Len())
	return l, nil
}

// File returns the absolute path of the policy file.
func (l *Live) File() string { return l.file }

// Policy returns the table in force.
func (l *Live) Policy() *Policy {
	if l == nil {
		return nil
	}
	return l.cur.Load()
}

// Lookup is Policy.Lookup on the table in force.
func (l *Live) Lookup(domain string) (*Entry, bool) { return l.Policy().Lookup(domain) }

// LookupNexthop is Policy.LookupNexthop on the table in force.
func (l *Live) LookupNexthop(host string, port int, mxLookup bool) (*Entry, bool) {
	return l.Policy().LookupNexthop(host, port, mxLookup)
}

func (l *Live) log() *slog.Logger {
	if l.Log == nil {
		return slog.Default()
	}
	return l.Log
}

func (l *Live) debounce() time.Duration {
	if l.Debounce <= 0 {
		return DefaultDebounce
	}
	return l.Debounce
}

// read parses the policy file as it is now.
func (l *Live) read() (*Policy, []string, error) {
	data, err := os.ReadFile(l.file)
	if err != nil {
		return nil, nil, fmt.Errorf("policy file: %w", err)
	}
	return parse(l.file, bytes.NewReader(data))
}

// ErrEmptyFile is the reload of a policy file with no bytes at all while
// a table with entries is in force.
var ErrEmptyFile = errors.New("the policy file is empty (still being written?); to remove every entry, leave a comment line in it")

// fileEmpty reports whether the policy file has no bytes at all.
func (l *Live) fileEmpty() bool {
	fi, err := os.Stat(l.file)
	return err == nil && fi.Size() == 0
}

// Reload reads the policy file and its tafiles now (SIGHUP) and puts the
// new table in force. On error the table in force stays, and the error
// is logged and returned. A nil *Live does nothing.
func (l *Live) Reload() error {
	if l == nil {
		return nil
	}
	return l.reload(true)
}

// reload is Reload; a reload caused by file events (force false) logs
// nothing when the table did not change, and a failure only when it
// differs from the last one logged.
func (l *Live) reload(force bool) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	p, tafiles, err := l.read()
	l.tafiles = tafiles
	l.syncDirs()
	old := l.cur.Load()
	if err == nil && p.Len() == 0 && old.Len() > 0 && l.fileEmpty() {
		// A file rewritten in place is empty between its truncation
		// and its new content: taken as it is, every destination
		// would lose its entry at once (a pinned domain its pin).
		err = ErrEmptyFile
	}
	if err != nil {
		if force || err.Error() != l.lastErr {
			l.log().Error("local policy: reload failed; keeping the table in force", "file", l.file, "err", err)
		}
		l.lastErr = err.Error()
		return err
	}
	l.lastErr = ""
	if !force && old.equal(p) {
		return nil
	}
	l.cur.Store(p)
	l.log().Info("local policy reloaded", "file", l.file, "entries", p.Len())
	return nil
}

// watched returns the files whose change may change the table: the
// policy file, the tafiles of the table in force and those named by the
// last parse. l.mu is held.
func (l *Live) watched() []string {
	files := []string{l.file}
	for _, e := range l.cur.Load().Entries() {
		if e.RootsFile != "" {
			files = append(files, e.RootsFile)
		}
	}
	for _, f := range l.tafiles {
		if abs, err := filepath.Abs(f); err == nil {
			files = append(files, abs)
		}
	}
	return files
}

// syncDirs makes fsw watch the directories of the watched files, and
// only those. A directory that cannot be watched (it does not exist yet)
// is logged and tried again at the next reload. l.mu is held.
func (l *Live) syncDirs() {
	if l.fsw == nil {
		return
	}
	want := map[string]bool{}
	for _, f := range l.watched() {
		want[filepath.Dir(f)] = true
	}
	for dir := range l.dirs {
		if !want[dir] {
			l.fsw.Remove(dir)
			delete(l.dirs, dir)
		}
	}
	for dir := range want {
		if l.dirs[dir] {
			continue
		}
		if err := l.fsw.Add(dir); err != nil {
			l.log().Warn("local policy: cannot watch a directory; changes in it are seen at the next reload", "dir", dir, "err", err)
			continue
		}
		l.dirs[dir] = true
	}
}

// relevant reports whether ev may change the table: an event on a
// watched file, or on a name starting with ".." (a Kubernetes volume's
// `..data` swap) in a watched directory.
func (l *Live) relevant(ev fsnotify.Event) bool {
	name := filepath.Clean(ev.Name)
	l.mu.Lock()
	defer l.mu.Unlock()
	if strings.HasPrefix(filepath.Base(name), "..") {
		return l.dirs[filepath.Dir(name)]
	}
	return slices.Contains(l.watched(), name)
}

// Run watches the directories of the policy file and of every tafile it
// names until ctx is done, then returns nil. A burst of events is
// debounced, then the table is reloaded; a tafile that an edit adds is
// watched from that reload on. A nil *Live returns at once. An error
// (the watch cannot start or breaks) is logged too.
func (l *Live) Run(ctx context.Context) error {
	if l == nil {
		return nil
	}
	err := l.run(ctx)
	if err != nil {
		l.log().Error("local policy: changes of the file are no longer followed; SIGHUP still reloads it", "err", err)
	}
	return err
}

func (l *Live) run(ctx context.Context) error {
	fsw, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("local policy: watch: %w", err)
	}
	defer fsw.Close()
	l.mu.Lock()
	l.fsw, l.dirs = fsw, map[string]bool{}
	l.mu.Unlock()
	defer func() {
		l.mu.Lock()
		l.fsw, l.dirs = nil, nil
		l.mu.Unlock()
	}()
	// Watch, and catch changes made between the first load and the watch.
	l.reload(false)
	return certs.WatchLoop(ctx, "local policy", fsw, l.debounce(), l.relevant, func() { l.reload(false) },
		func(err error) { l.log().Error("local policy: watch", "err", err) },
		nil, nil)
}
