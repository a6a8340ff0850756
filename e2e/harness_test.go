// Package e2e tests the built sealgate binary through its environment
// variables, against in-process fakes (DNS, MX hosts, a STRIPTLS man in
// the middle) and real peers from Debian's packages (Postfix, swaks,
// unbound, nsd, Redis). Every name is under .test and every address is on
// loopback.
package e2e

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"sealgate/certs/certstest"
	"sealgate/e2e/gwstat"
	"sealgate/enforcement/resolver/dnstest"
	"sealgate/upstream/upstreamtest"
)

// binPath is the sealgate binary built once for all tests.
var binPath string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "sealgate-e2e")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binPath = filepath.Join(dir, "sealgate")
	args := []string{"build", "-o", binPath}
	if raceEnabled {
		args = append(args, "-race")
	}
	build := exec.Command("go", append(args, "sealgate/cmd/sealgate")...)
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building sealgate:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// ipCounter hands out loopback addresses 127.1.x.y, unique in the process,
// so that MX hosts of every test can share a port without colliding.
var ipCounter atomic.Int32

func nextIP() string {
	n := ipCounter.Add(1)
	return fmt.Sprintf("127.1.%d.%d", n/250, n%250+1)
}

// world is one test's network: a fake DNS, a WebPKI CA trusted by the
// gateway (through SSL_CERT_FILE), and fake MX hosts on one shared port.
type world struct {
	t      testing.TB
	dns    *dnstest.Server
	ca     *certstest.CA
	caFile string
	port   int
	anchor net.Listener
}

func newWorld(t testing.TB) *world {
	t.Helper()
	w := &world{t: t, dns: dnstest.NewServer(t), ca: certstest.NewCA(t, "sealgate test WebPKI root")}
	w.caFile = w.ca.WriteCAFile(t.TempDir())
	// Reserve a port on 127.0.0.1; MX hosts bind it on other addresses.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	w.anchor = l
	w.port = l.Addr().(*net.TCPAddr).Port
	t.Cleanup(func() { l.Close() })
	return w
}

// host publishes name with a fresh loopback address and returns the
// address.
func (w *world) host(name string) string {
	ip := nextIP()
	w.dns.Add(name + ". 300 IN A " + ip)
	return ip
}

// mx starts a fake MX for domain at host mxName (preference pref) with the
// given options; Addr and Hostname are filled in.
func (w *world) mx(domain, mxName string, pref int, opts upstreamtest.MXOptions) *upstreamtest.MX {
	w.t.Helper()
	ip := w.host(mxName)
	w.dns.Add(fmt.Sprintf("%s. 300 IN MX %d %s.", domain, pref, mxName))
	opts.Addr = net.JoinHostPort(ip, fmt.Sprint(w.port))
	if opts.Hostname == "" {
		opts.Hostname = mxName
	}
	return upstreamtest.NewMX(w.t, opts)
}

// cert issues a WebPKI certificate for names.
func (w *world) cert(names ...string) *tls.Certificate {
	c := w.ca.Leaf(names...)
	return &c
}

// gateway is a running sealgate process.
type gateway struct {
	t    testing.TB
	cmd  *exec.Cmd
	addr string
	logs *syncBuffer
	done chan struct{}
}

// start runs the binary with the world's DNS, MX port and CA, plus env.
func (w *world) start(env map[string]string) *gateway {
	w.t.Helper()
	base := map[string]string{
		"SEALGATE_LISTEN":       "127.0.0.1:0",
		"SEALGATE_HOSTNAME":     "gw.sealgate.test",
		"SEALGATE_DNS_RESOLVER": w.dns.Addr(),
		"SEALGATE_MX_PORT":      fmt.Sprint(w.port),
		"SEALGATE_STATE_DIR":    w.t.TempDir(),
		"SEALGATE_ADMIN_LISTEN": "127.0.0.1:0",
		"SEALGATE_DNS_TIMEOUT":  "2s",
		"SSL_CERT_FILE":         w.caFile,
	}
	for k, v := range env {
		base[k] = v
	}
	return startGateway(w.t, base)
}

var listening = regexp.MustCompile(`msg=listening addr=(\S+)|"msg":"listening","addr":"([^"]+)"`)

func startGateway(t testing.TB, env map[string]string) *gateway {
	t.Helper()
	return startGatewayCmd(t, exec.Command(binPath, "serve"), env)
}

// startGatewayCmd starts the gateway with cmd, which runs the binary
// (inside a network namespace, say).
func startGatewayCmd(t testing.TB, cmd *exec.Cmd, env map[string]string) *gateway {
	t.Helper()
	g := &gateway{t: t, logs: &syncBuffer{}, done: make(chan struct{})}
	g.cmd = cmd
	g.cmd.Env = envList(env)
	g.cmd.Stderr = g.logs
	g.cmd.Stdout = g.logs
	if err := g.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { g.cmd.Wait(); close(g.done) }()
	t.Cleanup(g.stop)
	deadline := time.After(20 * time.Second)
	for g.addr == "" {
		if m := listening.FindStringSubmatch(g.logs.String()); m != nil {
			g.addr = m[1] + m[2]
			break
		}
		select {
		case <-g.done:
			t.Fatalf("sealgate exited at start:\n%s", g.logs.String())
		case <-deadline:
			t.Fatalf("sealgate did not start listening:\n%s", g.logs.String())
		case <-time.After(20 * time.Millisecond):
		}
	}
	return g
}

func (g *gateway) stop() {
	gwstat.Stop(g.cmd.Process, g.done, gwstat.StopGrace)
	if g.t.Failed() {
		g.t.Logf("sealgate log:\n%s", g.logs.String())
	}
}

// rawClient speaks SMTP to the gateway byte for byte, for what go-smtp's
// client will not send: BDAT, bare CR and LF, messages left unfinished.
type rawClient struct {
	net.Conn
	t  testing.TB
	br *bufio.Reader
}

// dialRaw connects to the gateway and reads its greeting.
func (g *gateway) dialRaw() *rawClient {
	g.t.Helper()
	c, err := net.Dial("tcp", g.addr)
	if err != nil {
		g.t.Fatal(err)
	}
	g.t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(30 * time.Second))
	rc := &rawClient{Conn: c, t: g.t, br: bufio.NewReader(c)}
	rc.reply()
	return rc
}

// reply reads one reply, all its lines; a read error ends it, in
// parentheses.
func (c *rawClient) reply() string {
	c.SetReadDeadline(time.Now().Add(30 * time.Second))
	var all string
	for {
		l, err := c.br.ReadString('\n')
		if err != nil {
			return all + "(" + err.Error() + ")"
		}
		all += l
		if len(l) < 4 || l[3] != '-' {
			return strings.TrimSpace(all)
		}
	}
}

// begin says EHLO, MAIL and RCPT for rcpt, each of which must get 250
// (and DATA its 354 when data is set).
func (c *rawClient) begin(rcpt string, data bool) {
	c.t.Helper()
	cmds := []string{"EHLO legacy.sealgate.test", "MAIL FROM:<a@legacy.sealgate.test>", "RCPT TO:<" + rcpt + ">"}
	if data {
		cmds = append(cmds, "DATA")
	}
	for _, cmd := range cmds {
		fmt.Fprintf(c, "%s\r\n", cmd)
		want := "250"
		if cmd == "DATA" {
			want = "354"
		}
		if r := c.reply(); !strings.HasPrefix(r, want) {
			c.t.Fatalf("%s: %s, want %s", cmd, r, want)
		}
	}
}

// waitLog waits (a few seconds at most) until the gateway's log holds s:
// the log travels through a pipe, so a line written before a reply may
// reach the test after it.
func (g *gateway) waitLog(s string) bool {
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(g.logs.String(), s) {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(10 * time.Millisecond)
	}
	return true
}

// result is what the legacy client saw for one transaction.
type result struct {
	Rcpt []error // one per recipient, nil for 250
	Data error   // nil for 250; not set when no recipient was accepted
	// DataReply is the text of the final 250.
	DataReply string
}

// send runs one transaction as a legacy client would.
func (g *gateway) send(from string, rcpts []string, body []byte) result {
	g.t.Helper()
	c, err := smtp.Dial(g.addr)
	if err != nil {
		g.t.Fatal(err)
	}
	defer c.Close()
	if err := c.Hello("legacy.sealgate.test"); err != nil {
		g.t.Fatal(err)
	}
	if err := c.Mail(from, nil); err != nil {
		g.t.Fatalf("MAIL: %v", err)
	}
	var res result
	accepted := 0
	for _, r := range rcpts {
		err := c.Rcpt(r, nil)
		res.Rcpt = append(res.Rcpt, err)
		if err == nil {
			accepted++
		}
	}
	if accepted == 0 {
		return res
	}
	w, err := c.Data()
	if err != nil {
		res.Data = err
		return res
	}
	if _, err := w.Write(body); err != nil {
		res.Data = err
		return res
	}
	resp, err := w.CloseWithResponse()
	res.Data = err
	if resp != nil {
		res.DataReply = resp.StatusText
	}
	c.Quit()
	return res
}

// wantReply fails unless err is an SMTP reply with code and enhanced code
// and its text contains every part.
func wantReply(t *testing.T, what string, err error, code int, enh string, parts ...string) {
	t.Helper()
	var se *smtp.SMTPError
	if !errors.As(err, &se) {
		t.Fatalf("%s: got %v, want %d %s", what, err, code, enh)
	}
	got := fmt.Sprintf("%d.%d.%d", se.EnhancedCode[0], se.EnhancedCode[1], se.EnhancedCode[2])
	if se.Code != code || got != enh {
		t.Fatalf("%s: got %d %s %s, want %d %s", what, se.Code, got, se.Message, code, enh)
	}
	for _, p := range parts {
		if !strings.Contains(se.Message, p) {
			t.Errorf("%s: reply %q does not contain %q", what, se.Message, p)
		}
	}
}

// message builds a small RFC 5322 message.
func message(subject string) []byte {
	return []byte("From: a@legacy.sealgate.test\r\nTo: b@example.test\r\nSubject: " + subject + "\r\n\r\nhello\r\n")
}

// stripReceived splits the first header field (ours) off data.
func stripReceived(t *testing.T, data []byte) (received string, rest []byte) {
	t.Helper()
	if !bytes.HasPrefix(data, []byte("Received: ")) {
		t.Fatalf("message does not start with our Received header: %q", firstLine(data))
	}
	br := bufio.NewReader(bytes.NewReader(data))
	var hdr strings.Builder
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			t.Fatal("unterminated header")
		}
		if hdr.Len() > 0 && line[0] != ' ' && line[0] != '\t' {
			rest, _ := io.ReadAll(br)
			return hdr.String(), append([]byte(line), rest...)
		}
		hdr.WriteString(line)
	}
}

func firstLine(b []byte) string {
	if i := bytes.IndexByte(b, '\n'); i >= 0 {
		return string(b[:i])
	}
	return string(b)
}

// envList turns env into a process environment with PATH.
func envList(env map[string]string) []string {
	out := []string{"PATH=" + os.Getenv("PATH")}
	for k, v := range env {
		out = append(out, k+"="+v)
	}
	return out
}

// syncBuffer is a goroutine-safe log sink.
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
