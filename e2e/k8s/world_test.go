package k8s

import (
	"bytes"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"sealgate/certs/certstest"
	"sealgate/enforcement/resolver/dnstest"
	"sealgate/upstream/upstreamtest"
)

// binPath is the sealgate binary, built once from the source tree;
// workDir holds it and what other tests share (the image's storage).
var binPath, workDir string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "sealgate-k8s")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	workDir = dir
	binPath = filepath.Join(dir, "sealgate")
	build := exec.Command("go", "build", "-o", binPath, "./cmd/sealgate")
	build.Dir = repoRoot
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building sealgate:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// ipCounter hands out loopback addresses 127.8.x.y, a range no other test
// package uses, so that policy hosts can all bind port 443.
var ipCounter atomic.Int32

func nextIP() string {
	n := ipCounter.Add(1)
	return fmt.Sprintf("127.8.%d.%d", n/250, n%250+1)
}

// world is a test's internet on loopback: a fake DNS, a WebPKI CA, MX
// hosts on one shared port, MTA-STS policy hosts on port 443.
type world struct {
	t      testing.TB
	dns    *dnstest.Server
	ca     *certstest.CA
	caFile string
	port   int
}

func newWorld(t testing.TB) *world {
	t.Helper()
	w := &world{t: t, dns: dnstest.NewServer(t), ca: certstest.NewCA(t, "sealgate test WebPKI root")}
	w.caFile = w.ca.WriteCAFile(t.TempDir())
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	w.port = l.Addr().(*net.TCPAddr).Port
	t.Cleanup(func() { l.Close() })
	return w
}

func (w *world) host(name string) string {
	ip := nextIP()
	w.dns.Add(name + ". 300 IN A " + ip)
	return ip
}

// mx starts an MX with a WebPKI certificate for mxName.
func (w *world) mx(domain, mxName string, pref int) *upstreamtest.MX {
	w.t.Helper()
	ip := w.host(mxName)
	w.dns.Add(fmt.Sprintf("%s. 300 IN MX %d %s.", domain, pref, mxName))
	cert := w.ca.Leaf(mxName)
	return upstreamtest.NewMX(w.t, upstreamtest.MXOptions{Addr: net.JoinHostPort(ip, fmt.Sprint(w.port)), Hostname: mxName, Certificate: &cert})
}

// stsHost is https://mta-sts.DOMAIN/ serving one policy, counting fetches.
type stsHost struct {
	srv  *http.Server
	hits atomic.Int32
}

func (w *world) sts(domain, id, policy string) *stsHost {
	w.t.Helper()
	ip := w.host("mta-sts." + domain)
	w.dns.Add(fmt.Sprintf(`_mta-sts.%s. 300 IN TXT "v=STSv1; id=%s;"`, domain, id))
	l, err := tls.Listen("tcp", ip+":443", &tls.Config{Certificates: []tls.Certificate{w.ca.Leaf("mta-sts." + domain)}})
	if err != nil {
		w.t.Fatalf("binding %s:443 (needs root): %v", ip, err)
	}
	h := &stsHost{}
	h.srv = &http.Server{Handler: http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		h.hits.Add(1)
		if r.URL.Path != "/.well-known/mta-sts.txt" || r.Host != "mta-sts."+domain {
			http.NotFound(rw, r)
			return
		}
		rw.Header().Set("Content-Type", "text/plain")
		fmt.Fprint(rw, policy)
	})}
	go h.srv.Serve(l)
	w.t.Cleanup(func() { h.srv.Close() })
	return h
}

// process is a daemon started by a test, stopped with SIGTERM at cleanup.
type process struct {
	name string
	cmd  *exec.Cmd
	logs *syncBuffer
	done chan struct{}
}

func startProcess(t testing.TB, name string, argv []string, env []string) *process {
	t.Helper()
	p := &process{name: name, logs: &syncBuffer{}, done: make(chan struct{})}
	p.cmd = exec.Command(argv[0], argv[1:]...)
	p.cmd.Env = env
	p.cmd.Stdout, p.cmd.Stderr = p.logs, p.logs
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("starting %s %v: %v", name, argv, err)
	}
	go func() { p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			p.cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-p.done:
			case <-time.After(35 * time.Second):
				p.cmd.Process.Kill()
				<-p.done
			}
		}
		if t.Failed() {
			t.Logf("%s log:\n%s", name, p.logs.String())
		}
	})
	return p
}

// waitLog waits until the log matches re and returns the submatches.
func (p *process) waitLog(t testing.TB, re *regexp.Regexp) []string {
	t.Helper()
	deadline := time.After(20 * time.Second)
	for {
		if m := re.FindStringSubmatch(p.logs.String()); m != nil {
			return m
		}
		select {
		case <-p.done:
			t.Fatalf("%s exited at start:\n%s", p.name, p.logs.String())
		case <-deadline:
			t.Fatalf("%s: no %q in its log:\n%s", p.name, re, p.logs.String())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// send runs one transaction as a legacy server would.
func send(t testing.TB, addr, rcpt string) error {
	t.Helper()
	c, err := smtp.Dial(addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Hello("legacy.sealgate.test"); err != nil {
		return err
	}
	if err := c.Mail("a@legacy.sealgate.test", nil); err != nil {
		return err
	}
	if err := c.Rcpt(rcpt, nil); err != nil {
		return err
	}
	wc, err := c.Data()
	if err != nil {
		return err
	}
	fmt.Fprintf(wc, "From: a@legacy.sealgate.test\r\nTo: %s\r\nSubject: through the pod\r\n\r\nhello\r\n", rcpt)
	if err := wc.Close(); err != nil {
		return err
	}
	return c.Quit()
}

func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

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
