package upstreamtest_test

import (
	"bytes"
	"crypto/tls"
	"fmt"
	"net"
	"net/textproto"
	"strings"
	"testing"
	"time"

	"sealgate/upstream/upstreamtest"
)

// TestMain fails the package when a fake leaves a goroutine behind.
func TestMain(m *testing.M) {
	upstreamtest.RunWithLeakCheck(m, 3*time.Second, "sealgate/upstream/upstreamtest.", "emersion/go-smtp.(*Server)")
}

// rawClient speaks SMTP line by line, for conversations go-smtp's client
// will not hold (faults, STARTTLS by hand, AUTH before TLS).
type rawClient struct {
	t    testing.TB
	conn net.Conn
	text *textproto.Conn
}

func dialRaw(t testing.TB, addr string) *rawClient {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	if err := conn.SetDeadline(time.Now().Add(10 * time.Second)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return &rawClient{t: t, conn: conn, text: textproto.NewConn(conn)}
}

// reply reads one reply; err is non-nil for a broken connection only.
func (c *rawClient) reply() (int, string, error) {
	return c.text.ReadResponse(0)
}

// expect reads one reply and fails the test unless its code is code.
func (c *rawClient) expect(code int) string {
	c.t.Helper()
	got, msg, err := c.reply()
	if err != nil {
		c.t.Fatalf("reading reply (want %d): %v", code, err)
	}
	if got != code {
		c.t.Fatalf("reply %d %q, want %d", got, msg, code)
	}
	return msg
}

// cmd sends line and returns the reply, failing on a broken connection.
func (c *rawClient) cmd(line string) (int, string) {
	c.t.Helper()
	if err := c.text.PrintfLine("%s", line); err != nil {
		c.t.Fatalf("send %q: %v", line, err)
	}
	code, msg, err := c.reply()
	if err != nil {
		c.t.Fatalf("reply to %q: %v", line, err)
	}
	return code, msg
}

// ehlo sends EHLO and returns the capability keywords (with arguments)
// keyed by keyword.
func (c *rawClient) ehlo(name string) map[string]string {
	c.t.Helper()
	code, msg := c.cmd("EHLO " + name)
	if code != 250 {
		c.t.Fatalf("EHLO: %d %s", code, msg)
	}
	caps := map[string]string{}
	for _, l := range strings.Split(msg, "\n")[1:] {
		kw, arg, _ := strings.Cut(l, " ")
		caps[strings.ToUpper(kw)] = arg
	}
	return caps
}

// startTLS sends STARTTLS, completes the handshake and switches to TLS.
func (c *rawClient) startTLS(cfg *tls.Config) error {
	c.t.Helper()
	if code, msg := c.cmd("STARTTLS"); code != 220 {
		return fmt.Errorf("STARTTLS: %d %s", code, msg)
	}
	tc := tls.Client(c.conn, cfg)
	if err := tc.Handshake(); err != nil {
		return err
	}
	c.conn = tc
	c.text = textproto.NewConn(tc)
	return nil
}

// data sends DATA, the body (dot-stuffed by textproto) and returns the
// final reply.
func (c *rawClient) data(body string) (int, string, error) {
	c.t.Helper()
	c.expectCmd("DATA", 354)
	w := c.text.DotWriter()
	if _, err := w.Write([]byte(body)); err != nil {
		return 0, "", err
	}
	if err := w.Close(); err != nil {
		return 0, "", err
	}
	return c.reply()
}

func (c *rawClient) expectCmd(line string, code int) string {
	c.t.Helper()
	got, msg := c.cmd(line)
	if got != code {
		c.t.Fatalf("%s: reply %d %q, want %d", line, got, msg, code)
	}
	return msg
}

// closed reports whether the server closed the connection: a NOOP gets no
// reply. An open connection must answer the NOOP with 250.
func (c *rawClient) closed() bool {
	c.t.Helper()
	if err := c.text.PrintfLine("NOOP"); err != nil {
		return true
	}
	code, msg, err := c.reply()
	if err != nil {
		return true
	}
	if code != 250 {
		c.t.Errorf("NOOP: %d %q, want 250", code, msg)
	}
	return false
}

func containsLine(b []byte, prefix string) bool {
	for _, l := range bytes.Split(b, []byte("\n")) {
		if bytes.HasPrefix(bytes.ToUpper(l), []byte(prefix)) {
			return true
		}
	}
	return false
}
