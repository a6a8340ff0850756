// Package postfix runs a private instance of the real Postfix from Debian's
// packages in end-to-end tests, in one of two roles.
//
// As the legacy mail server, every message it accepts is relayed over
// plaintext SMTP (RFC 5321) to one relayhost, which in the tests is
// sealgate. Postfix keeps a message that the relay answers with a 4xx reply
// and tries again (RFC 5321 section 4.5.4.1); the instance retries within
// seconds so that tests can observe it.
//
// As an MX (Options.MX), its smtpd accepts mail for some domains on one
// loopback address, offers STARTTLS (RFC 3207) with the certificate it is
// given, refuses the recipients it is told to, and keeps what it accepts on
// the hold queue, where Held reads it back.
//
// The harness needs root and the Debian package postfix. It touches nothing
// outside its temporary directory: no file under /etc/postfix, no system
// instance, no syslog. The master daemon runs in the foreground under a
// watchdog that stops it when the test ends or the test binary dies.
package postfix

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Sentinel errors; the returned errors wrap them with details.
var (
	ErrCommand = errors.New("postfix: command failed")
	ErrTimeout = errors.New("postfix: timed out")
	ErrExited  = errors.New("postfix: master exited")
)

const (
	debianPackage = "postfix"
	// readyTimeout is generous: two shared cores, and master spawns
	// several daemons before showq answers.
	readyTimeout = 20 * time.Second
	stopTimeout  = 5 * time.Second
	cmdTimeout   = 30 * time.Second
	pollInterval = 50 * time.Millisecond
	// maxRootLen keeps queue/private/<service> under the 108-byte limit of
	// a Unix socket path.
	maxRootLen = 64
)

// Instance is one running private Postfix. Its methods are safe for
// concurrent use.
type Instance struct {
	t     testing.TB
	opts  Options
	paths paths
	bins  binaries

	cmd       *exec.Cmd     // the watchdog shell; master is its child
	lifeline  *os.File      // closing it (or dying) makes the watchdog stop master
	masterPID int           // also master's process group; 0 until ready
	exited    chan struct{} // closed when the watchdog has been reaped
	exitErr   error         // Wait's result, set before exited closes
	stopOnce  sync.Once
}

// binaries are the absolute paths of the programs the harness runs.
type binaries struct {
	postconf, postqueue, sendmail, postcat, master string
}

// Start creates and starts a private Postfix instance, returns once it
// accepts mail, and stops and removes it when the test ends (logging the
// end of its mail log if the test failed). It fails the test (never skips)
// when Postfix is missing or will not start, naming the Debian package.
func Start(t testing.TB, opts Options) *Instance {
	t.Helper()
	opts, err := opts.validate()
	if err != nil {
		t.Fatalf("postfix.Start: %v", err)
	}
	if os.Geteuid() != 0 {
		t.Fatalf("postfix.Start: must run as root (master, postdrop and the queue need it)")
	}
	bins, err := findBinaries()
	if err != nil {
		t.Fatalf("postfix.Start: %v (install the Debian package %q)", err, debianPackage)
	}
	ids, err := lookupIDs()
	if err != nil {
		t.Fatalf("postfix.Start: %v (install the Debian package %q)", err, debianPackage)
	}
	p, err := makeTree(ids, opts)
	if err != nil {
		t.Fatalf("postfix.Start: %v", err)
	}
	in := &Instance{t: t, opts: opts, paths: p, bins: bins, exited: make(chan struct{})}
	daemonDir, err := in.run(nil, in.bins.postconf, "-c", p.config, "-h", "daemon_directory")
	if err != nil {
		os.RemoveAll(p.root)
		t.Fatalf("postfix.Start: %v", err)
	}
	in.bins.master = filepath.Join(strings.TrimSpace(string(daemonDir)), "master")
	if _, err := os.Stat(in.bins.master); err != nil {
		os.RemoveAll(p.root)
		t.Fatalf("postfix.Start: %v (install the Debian package %q)", err, debianPackage)
	}
	if err := in.startMaster(); err != nil {
		os.RemoveAll(p.root)
		t.Fatalf("postfix.Start: %v", err)
	}
	t.Cleanup(func() {
		in.Stop()
		if t.Failed() {
			in.dumpLogs()
		}
		os.RemoveAll(p.root)
	})
	if err := in.waitReady(readyTimeout); err != nil {
		t.Fatalf("postfix.Start: %v\n%s", err, tail(in.Log(), 30))
	}
	return in
}

func findBinaries() (binaries, error) {
	var b binaries
	for _, x := range []struct {
		dst  *string
		name string
	}{
		{&b.postconf, "postconf"}, {&b.postqueue, "postqueue"}, {&b.sendmail, "sendmail"},
		{&b.postcat, "postcat"},
	} {
		// Debian's path first: /usr/sbin is often not in a test's PATH, and
		// another "sendmail" may come first there.
		path := filepath.Join("/usr/sbin", x.name)
		if _, err := os.Stat(path); err != nil {
			if path, err = exec.LookPath(x.name); err != nil {
				return b, fmt.Errorf("%s not found: %w", x.name, err)
			}
		}
		*x.dst = path
	}
	return b, nil
}

// ids are the numeric owners of the instance's directories.
type ids struct {
	postfixUID, postfixGID, postdropGID int
}

func lookupIDs() (ids, error) {
	u, err := user.Lookup("postfix")
	if err != nil {
		return ids{}, err
	}
	g, err := user.LookupGroup("postdrop")
	if err != nil {
		return ids{}, err
	}
	uid, err1 := strconv.Atoi(u.Uid)
	gid, err2 := strconv.Atoi(u.Gid)
	dgid, err3 := strconv.Atoi(g.Gid)
	if err := errors.Join(err1, err2, err3); err != nil {
		return ids{}, fmt.Errorf("user postfix: %w", err)
	}
	return ids{postfixUID: uid, postfixGID: gid, postdropGID: dgid}, nil
}

// queueDirs are the queue subdirectories with the owners and modes of
// Debian's /etc/postfix/postfix-files. Making them here is what "postfix
// check" (post-install create-missing) would do, in no time instead of
// seconds of shell and postconf runs.
var queueDirs = []struct {
	name     string
	mode     os.FileMode
	root     bool // owned by root, not by postfix
	postdrop bool // group postdrop (setgid submission)
}{
	{name: "active", mode: 0o700}, {name: "bounce", mode: 0o700},
	{name: "corrupt", mode: 0o700}, {name: "defer", mode: 0o700},
	{name: "deferred", mode: 0o700}, {name: "flush", mode: 0o700},
	{name: "hold", mode: 0o700}, {name: "incoming", mode: 0o700},
	{name: "private", mode: 0o700}, {name: "saved", mode: 0o700},
	{name: "trace", mode: 0o700},
	{name: "maildrop", mode: 0o730, postdrop: true},
	{name: "public", mode: 0o710, postdrop: true},
	{name: "pid", mode: 0o755, root: true},
}

// makeTree creates the instance's directories and configuration files. The
// root is made with os.MkdirTemp rather than t.TempDir: the latter is 0700
// under a 0700 parent (the postfix user could not enter it) and its name
// grows with the test name (Unix socket paths are limited to 108 bytes).
func makeTree(id ids, opts Options) (paths, error) {
	root, err := os.MkdirTemp("", "pfx-")
	if err != nil {
		return paths{}, err
	}
	p := paths{
		root:    root,
		config:  filepath.Join(root, "etc"),
		queue:   filepath.Join(root, "q"),
		data:    filepath.Join(root, "data"),
		maillog: filepath.Join(root, "maillog"),
	}
	err = func() error {
		if len(root) > maxRootLen {
			return fmt.Errorf("temporary directory %q is too long for Unix socket paths; set TMPDIR=/tmp", root)
		}
		if err := checkTraversable(root); err != nil {
			return err
		}
		if err := os.Chmod(root, 0o755); err != nil {
			return err
		}
		for _, d := range []string{p.config, p.queue, p.data} {
			if err := os.Mkdir(d, 0o755); err != nil {
				return err
			}
		}
		if err := chownMode(p.data, id.postfixUID, id.postfixGID, 0o700); err != nil {
			return err
		}
		for _, d := range queueDirs {
			uid, gid := id.postfixUID, 0
			if d.root {
				uid = 0
			}
			if d.postdrop {
				gid = id.postdropGID
			}
			dir := filepath.Join(p.queue, d.name)
			if err := os.Mkdir(dir, 0o700); err != nil {
				return err
			}
			if err := chownMode(dir, uid, gid, d.mode); err != nil {
				return err
			}
		}
		if opts.MX != nil {
			if err := writeMXFiles(opts.MX, p); err != nil {
				return err
			}
		}
		return writeConfig(p.config, map[string]string{"main.cf": mainCF(opts, p), "master.cf": masterCF(opts)})
	}()
	if err != nil {
		os.RemoveAll(root)
		return paths{}, fmt.Errorf("making the instance tree: %w", err)
	}
	return p, nil
}

// writeConfig writes the configuration files, dated an hour ago: Postfix
// programs re-read a main.cf modified within the last second, sleeping
// 300 ms between reads (dict_load_file), which cost every postconf,
// postqueue and daemon start about two seconds.
func writeConfig(dir string, files map[string]string) error {
	old := time.Now().Add(-time.Hour)
	for name, content := range files {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
			return err
		}
		if err := os.Chtimes(path, old, old); err != nil {
			return err
		}
	}
	return nil
}

// chownMode sets a path's owner and mode (Mkdir's mode is cut by umask).
func chownMode(path string, uid, gid int, mode os.FileMode) error {
	if err := os.Chown(path, uid, gid); err != nil {
		return err
	}
	return os.Chmod(path, mode)
}

// checkTraversable fails when a parent of dir is not searchable by others:
// the postfix user must reach the queue and data directories.
func checkTraversable(dir string) error {
	for d := filepath.Dir(dir); ; d = filepath.Dir(d) {
		fi, err := os.Stat(d)
		if err != nil {
			return err
		}
		if fi.Mode().Perm()&0o001 == 0 {
			return fmt.Errorf("%s (mode %v) is not searchable by the postfix user; set TMPDIR=/tmp", d, fi.Mode().Perm())
		}
		if d == filepath.Dir(d) {
			return nil
		}
	}
}

// run executes a command with stdin and returns its stdout; a failure
// carries the command's output.
func (in *Instance) run(stdin []byte, name string, args ...string) ([]byte, error) {
	cmd := exec.Command(name, args...)
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.WaitDelay = time.Second
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrCommand, name, err)
	}
	timer := time.AfterFunc(cmdTimeout, func() { _ = cmd.Process.Kill() })
	defer timer.Stop()
	if err := cmd.Wait(); err != nil {
		return stdout.Bytes(), fmt.Errorf("%w: %s %s: %w: %s", ErrCommand, name, strings.Join(args, " "), err,
			strings.TrimSpace(stdout.String()+"\n"+stderr.String()))
	}
	return stdout.Bytes(), nil
}

// dumpLogs logs the end of the mail log and of master's output.
func (in *Instance) dumpLogs() {
	in.t.Logf("postfix %s maillog (tail):\n%s", in.paths.root, tail(in.Log(), 60))
	if b, err := os.ReadFile(filepath.Join(in.paths.root, "master.out")); err == nil && len(b) > 0 {
		in.t.Logf("postfix master output:\n%s", tail(string(b), 20))
	}
}

// tail returns the last n lines of s.
func tail(s string, n int) string {
	lines := strings.SplitAfter(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "")
}

// ConfigDir is the instance's config_directory (main.cf, master.cf), for
// "postconf -c", "postfix -c" or "sendmail -C".
func (in *Instance) ConfigDir() string { return in.paths.config }

// QueueDir is the instance's queue_directory.
func (in *Instance) QueueDir() string { return in.paths.queue }

// LogFile is the instance's maillog_file.
func (in *Instance) LogFile() string { return in.paths.maillog }

// MyHostname is the name the instance uses in HELO.
func (in *Instance) MyHostname() string { return in.opts.MyHostname }

// SMTPAddr is Options.SMTPListen: where smtpd listens, or "".
func (in *Instance) SMTPAddr() string { return in.opts.SMTPListen }
