package localpolicy

import (
	"bytes"
	"context"
	"crypto/x509"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// logBuffer is a log sink that Run's goroutine and the test share.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *logBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *logBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// writeFile replaces path by rename, as deployment tools do.
func writeFile(t *testing.T, path, text string) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// loadLive writes text as a policy file in a new directory and loads it
// with a short debounce; the log is returned too.
func loadLive(t *testing.T, text string) (*Live, string, *logBuffer) {
	t.Helper()
	file := filepath.Join(t.TempDir(), "tls_policy")
	writeFile(t, file, text)
	buf := &logBuffer{}
	l, err := LoadLive(file, slog.New(slog.NewTextHandler(buf, nil)))
	if err != nil {
		t.Fatal(err)
	}
	l.Debounce = 20 * time.Millisecond
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("log:\n%s", buf.String())
		}
	})
	return l, file, buf
}

// runLive starts l.Run and, at cleanup, stops it and checks that it
// returned nil.
func runLive(t *testing.T, l *Live) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- l.Run(ctx) }()
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
	// Run has taken the watch once it synchronized its directories.
	waitUntil(t, "the watch to start", func() bool {
		l.mu.Lock()
		defer l.mu.Unlock()
		return len(l.dirs) > 0
	})
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// level returns the level of domain's entry in force, 0 without one.
func level(l *Live, domain string) Level {
	e, ok := l.Lookup(domain)
	if !ok {
		return 0
	}
	return e.Level
}

func TestLoadLiveRefusesBrokenFile(t *testing.T) {
	file := filepath.Join(t.TempDir(), "tls_policy")
	writeFile(t, file, "a.test encrypt\nb.test may\nc.test none\n")
	l, err := LoadLive(file, slog.New(slog.DiscardHandler))
	if l != nil || !errors.Is(err, ErrCleartext) {
		t.Fatalf("LoadLive = %v, %v; want an ErrCleartext error", l, err)
	}
	if got := strings.Count(err.Error(), file+":"); got != 2 {
		t.Errorf("error %q names %d bad lines, want 2", err, got)
	}
	if _, err := LoadLive(filepath.Join(t.TempDir(), "missing"), nil); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
}

func TestLiveReload(t *testing.T) {
	tests := []struct {
		name      string
		edit      string
		wantErr   error // nil: the edit is taken
		wantLevel Level // of x.test afterwards
	}{
		{name: "good edit taken", edit: "x.test secure\n", wantLevel: LevelSecure},
		{name: "cleartext level keeps the table", edit: "x.test may\n", wantErr: ErrCleartext, wantLevel: LevelEncrypt},
		{name: "unknown attribute keeps the table", edit: "x.test encrypt ciphers=high\n", wantErr: ErrUnsupportedAttribute, wantLevel: LevelEncrypt},
		{name: "missing tafile keeps the table", edit: "x.test secure tafile=nope.pem\n", wantErr: ErrTAFile, wantLevel: LevelEncrypt},
		{name: "removed file keeps the table", edit: "", wantErr: os.ErrNotExist, wantLevel: LevelEncrypt},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			l, file, buf := loadLive(t, "x.test encrypt\n")
			if tc.edit == "" {
				os.Remove(file)
			} else {
				writeFile(t, file, tc.edit)
			}
			err := l.Reload()
			if !errors.Is(err, tc.wantErr) || (tc.wantErr == nil) != (err == nil) {
				t.Fatalf("Reload = %v, want %v", err, tc.wantErr)
			}
			if got := level(l, "x.test"); got != tc.wantLevel {
				t.Errorf("level in force %s, want %s", got, tc.wantLevel)
			}
			wantLog := "local policy reloaded"
			if tc.wantErr != nil {
				wantLog = "reload failed; keeping the table in force"
			}
			if !strings.Contains(buf.String(), wantLog) {
				t.Errorf("log lacks %q:\n%s", wantLog, buf.String())
			}
		})
	}
}

func TestNilLive(t *testing.T) {
	var l *Live
	if _, ok := l.Lookup("x.test"); ok {
		t.Error("nil Live found an entry")
	}
	if _, ok := l.LookupNexthop("x.test", 25, true); ok {
		t.Error("nil Live found a next-hop entry")
	}
	if err := l.Reload(); err != nil {
		t.Errorf("nil Reload: %v", err)
	}
	if err := l.Run(context.Background()); err != nil {
		t.Errorf("nil Run: %v", err)
	}
}

// TestLiveRunFollowsFile: an edit is taken, a broken edit keeps the table
// and is logged once, a later good edit is taken.
func TestLiveRunFollowsFile(t *testing.T) {
	l, file, buf := loadLive(t, "x.test encrypt\n")
	runLive(t, l)

	writeFile(t, file, "x.test verify\n")
	waitUntil(t, "the edit", func() bool { return level(l, "x.test") == LevelVerify })

	writeFile(t, file, "x.test none\n")
	waitUntil(t, "the failure logged", func() bool { return strings.Contains(buf.String(), "reload failed") })
	if got := level(l, "x.test"); got != LevelVerify {
		t.Fatalf("a broken file changed the table: %s", got)
	}

	writeFile(t, file, "x.test dane-only\n")
	waitUntil(t, "the fix", func() bool { return level(l, "x.test") == LevelDANEOnly })
	if n := strings.Count(buf.String(), "reload failed"); n != 1 {
		t.Errorf("the broken file was logged %d times, want 1:\n%s", n, buf.String())
	}
}

// TestLiveWatchesAddedTAFile: a tafile in a directory of its own that an
// edit names for the first time is watched from that edit on; one that
// does not exist yet is taken when it appears.
func TestLiveWatchesAddedTAFile(t *testing.T) {
	l, file, _ := loadLive(t, "x.test encrypt\n")
	runLive(t, l)
	caDir := t.TempDir()
	caFile := filepath.Join(caDir, "ca.pem")
	first := writeCA(t, caDir, "ca.pem")
	roots := func() *x509.CertPool {
		e, ok := l.Lookup("x.test")
		if !ok {
			return nil
		}
		return e.Roots
	}
	trusts := func(ca interface{ Pool() *x509.CertPool }) func() bool {
		return func() bool { return roots() != nil && roots().Equal(ca.Pool()) }
	}

	writeFile(t, file, "x.test secure tafile="+caFile+"\n")
	waitUntil(t, "the tafile named by the edit", trusts(first))

	second := writeCA(t, t.TempDir(), "unused.pem")
	writeFile(t, caFile, string(second.PEM()))
	waitUntil(t, "the change of the added tafile", trusts(second))

	// A tafile that does not exist yet: the table stays until it appears.
	laterDir := t.TempDir()
	later := filepath.Join(laterDir, "later.pem")
	writeFile(t, file, "x.test secure tafile="+later+"\n")
	waitUntil(t, "the failed reload to watch the tafile's directory", func() bool {
		l.mu.Lock()
		defer l.mu.Unlock()
		return l.dirs[laterDir]
	})
	if !trusts(second)() {
		t.Fatal("a missing tafile changed the table")
	}
	third := writeCA(t, t.TempDir(), "unused.pem")
	writeFile(t, later, string(third.PEM()))
	waitUntil(t, "the tafile that appeared", trusts(third))
}

// TestLiveKubernetesVolume: a ConfigMap volume holds the file behind
// `..data`, a symlink to a timestamped directory that an update replaces
// by renaming a new symlink over it.
func TestLiveKubernetesVolume(t *testing.T) {
	dir := t.TempDir()
	version := func(name, text string) {
		t.Helper()
		if err := os.Mkdir(filepath.Join(dir, name), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name, "tls_policy"), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		tmp := filepath.Join(dir, "..data_tmp")
		if err := os.Symlink(name, tmp); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, filepath.Join(dir, "..data")); err != nil {
			t.Fatal(err)
		}
	}
	version("..v1", "x.test encrypt\n")
	file := filepath.Join(dir, "tls_policy")
	if err := os.Symlink("..data/tls_policy", file); err != nil {
		t.Fatal(err)
	}
	l, err := LoadLive(file, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	l.Debounce = 20 * time.Millisecond
	runLive(t, l)
	version("..v2", "x.test secure\n")
	waitUntil(t, "the new ConfigMap version", func() bool { return level(l, "x.test") == LevelSecure })
}

func TestPolicyEqual(t *testing.T) {
	dir := t.TempDir()
	writeCA(t, dir, "a.pem")
	writeCA(t, dir, "b.pem")
	parse := func(text string) *Policy {
		t.Helper()
		p, err := parseString(filepath.Join(dir, "policy.cf"), text)
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	base := "x.test secure tafile=a.pem protocols=>=TLSv1.2\ny.test fingerprint match=" + colonHex(digest("y")) + "\n"
	tests := []struct {
		name  string
		other string
		want  bool
	}{
		{name: "same text", other: base, want: true},
		{name: "other CA", other: strings.Replace(base, "a.pem", "b.pem", 1), want: false},
		{name: "other fingerprint", other: strings.Replace(base, colonHex(digest("y")), colonHex(digest("z")), 1), want: false},
		{name: "other protocols", other: strings.Replace(base, "TLSv1.2", "TLSv1.3", 1), want: false},
		{name: "other line", other: "\n" + base, want: false},
		{name: "one entry less", other: "x.test secure tafile=a.pem protocols=>=TLSv1.2\n", want: false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := parse(base).equal(parse(tc.other)); got != tc.want {
				t.Errorf("equal = %v, want %v", got, tc.want)
			}
		})
	}
}

// TestLiveEmptyFileKeepsTheTable: a file rewritten in place is empty
// between its truncation and its new content. Taken as it is, every
// destination would lose its entry, a pinned domain its pin; the table in
// force stays until the file has content. A file with nothing but a
// comment is an empty table, taken.
func TestLiveEmptyFileKeepsTheTable(t *testing.T) {
	l, file, buf := loadLive(t, "x.test secure\n")
	writeFile(t, file, "")
	if err := l.Reload(); !errors.Is(err, ErrEmptyFile) {
		t.Fatalf("Reload of an empty file = %v, want ErrEmptyFile", err)
	}
	if got := level(l, "x.test"); got != LevelSecure {
		t.Fatalf("level in force %s after an empty file, want secure", got)
	}
	if !strings.Contains(buf.String(), "keeping the table in force") {
		t.Errorf("log lacks the refusal:\n%s", buf.String())
	}
	writeFile(t, file, "# no entries\n")
	if err := l.Reload(); err != nil {
		t.Fatalf("Reload of a file with a comment only: %v", err)
	}
	if n := l.cur.Load().Len(); n != 0 {
		t.Fatalf("%d entries in force, want none", n)
	}
	// An empty file at start is an empty table.
	empty := filepath.Join(t.TempDir(), "tls_policy")
	writeFile(t, empty, "")
	if l, err := LoadLive(empty, nil); err != nil || l.cur.Load().Len() != 0 {
		t.Fatalf("LoadLive of an empty file: %v", err)
	}
}
