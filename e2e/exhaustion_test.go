package e2e

import (
	"bufio"
	"crypto/tls"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"sealgate/upstream/upstreamtest"
)

// dialFrom connects to addr from a chosen loopback address.
func dialFrom(t *testing.T, from, addr string) *rawClient {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}, Timeout: 5 * time.Second}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &rawClient{Conn: c, t: t, br: bufio.NewReader(c)}
}

func (c *rawClient) cmd(line string) string {
	c.t.Helper()
	if _, err := io.WriteString(c.Conn, line+"\r\n"); err != nil {
		c.t.Fatal(err)
	}
	return c.reply()
}

// closed reports whether the gateway closed the connection.
func (c *rawClient) closed() bool {
	c.Conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err := io.Copy(io.Discard, c.br)
	return err == nil
}

// metric returns the /metrics line that starts with name, or "".
func metric(t *testing.T, admin, name string) string {
	t.Helper()
	resp, err := http.Get("http://" + admin + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	for _, l := range strings.Split(string(body), "\n") {
		if strings.HasPrefix(l, name+" ") {
			return l
		}
	}
	return ""
}

// TestOutsideFloodDoesNotLockOutLegacyServers fills every slot open to
// clients outside SEALGATE_ALLOWED_NETWORKS with idle connections; the
// legacy server still delivers.
func TestOutsideFloodDoesNotLockOutLegacyServers(t *testing.T) {
	w := newWorld(t)
	w.mx("example.test", "mx.example.test", 10, upstreamtest.MXOptions{Certificate: w.cert("mx.example.test")})
	admin := freeAddr(t)
	g := w.start(map[string]string{
		"SEALGATE_ALLOWED_NETWORKS":       "127.0.0.1/32",
		"SEALGATE_MAX_CONNECTIONS":        "20",
		"SEALGATE_MAX_CONNECTIONS_PER_IP": "5",
		"SEALGATE_ADMIN_LISTEN":           admin,
	})
	accepted, perAddress, reserved := 0, 0, 0
	for i := range 30 {
		c := dialFrom(t, fmt.Sprintf("127.0.2.%d", 1+i/6), g.addr)
		switch r := c.reply(); {
		case strings.HasPrefix(r, "220 "):
			accepted++
		case strings.HasPrefix(r, "421 4.7.0 "):
			perAddress++
		case strings.HasPrefix(r, "421 4.3.2 "):
			reserved++
		default:
			t.Fatalf("outside client %d got %q", i, r)
		}
	}
	// Five addresses of six connections each: five get in (the limit per
	// address) until the 16 slots open to outside clients are taken, a
	// fifth of 20 being reserved.
	if accepted != 16 || perAddress != 3 || reserved != 11 {
		t.Errorf("outside clients: %d accepted, %d refused per address, %d refused for the reserve; want 16, 3, 11", accepted, perAddress, reserved)
	}
	res := g.send("a@legacy.sealgate.test", []string{"b@example.test"}, message("during a flood"))
	if res.Rcpt[0] != nil || res.Data != nil {
		t.Fatalf("legacy server locked out by the flood: %+v", res)
	}
	if got := metric(t, admin, `sealgate_connections_refused_total{reason="reserved"}`); !strings.HasSuffix(got, " 11") {
		t.Errorf("metric: %q, want 11 refusals for the reserve", got)
	}
	if got := metric(t, admin, `sealgate_connections_refused_total{reason="per_address"}`); !strings.HasSuffix(got, " 3") {
		t.Errorf("metric: %q, want 3 refusals per address", got)
	}
	// One line per address and reason: three addresses over their limit,
	// two turned away for the reserve.
	if n := strings.Count(g.logs.String(), "connection refused"); n != 5 {
		t.Errorf("%d log lines for 14 refusals, want 5", n)
	}
}

// TestAuthGuessingLockedOut guesses passwords: each failure is answered
// later than the one before, the third closes the connection, and the
// address stays locked out when it reconnects.
func TestAuthGuessingLockedOut(t *testing.T) {
	const delay = 300 * time.Millisecond
	w := newWorld(t)
	hash, _ := bcrypt.GenerateFromPassword([]byte("right"), bcrypt.MinCost)
	users := filepath.Join(t.TempDir(), "users")
	if err := os.WriteFile(users, []byte("alice:"+string(hash)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	admin := freeAddr(t)
	g := w.start(map[string]string{
		"SEALGATE_ALLOWED_NETWORKS":   "127.0.0.1/32",
		"SEALGATE_AUTH_USERS_FILE":    users,
		"SEALGATE_AUTH_MAX_FAILURES":  "3",
		"SEALGATE_AUTH_FAILURE_DELAY": delay.String(),
		"SEALGATE_ADMIN_LISTEN":       admin,
	})
	login := func(from string) *rawClient {
		c := dialFrom(t, from, g.addr)
		c.reply()
		c.cmd("EHLO legacy.sealgate.test")
		if r := c.cmd("STARTTLS"); !strings.HasPrefix(r, "220 ") {
			t.Fatalf("STARTTLS: %q", r)
		}
		tc := tls.Client(c.Conn, &tls.Config{InsecureSkipVerify: true})
		c.Conn, c.br = tc, bufio.NewReader(tc)
		if r := c.cmd("EHLO legacy.sealgate.test"); !strings.Contains(r, "AUTH") {
			t.Fatalf("no AUTH offered under TLS: %q", r)
		}
		return c
	}
	plain := func(pass string) string {
		return "AUTH PLAIN " + base64.StdEncoding.EncodeToString([]byte("\x00alice\x00"+pass))
	}

	c := login("127.0.3.1")
	for i, want := range []struct {
		reply string
		after time.Duration
	}{{"535 ", delay}, {"535 ", 2 * delay}, {"421 4.7.0 ", 4 * delay}} {
		start := time.Now()
		r := c.cmd(plain("guess"))
		took := time.Since(start)
		if !strings.HasPrefix(r, want.reply) {
			t.Fatalf("guess %d: %q, want %s", i+1, r, want.reply)
		}
		if took < want.after || took > want.after+5*time.Second {
			t.Errorf("guess %d answered after %v, want %v", i+1, took, want.after)
		}
	}
	if !c.closed() {
		t.Fatal("connection not closed after the third failure")
	}

	c = login("127.0.3.1")
	if r := c.cmd(plain("right")); !strings.HasPrefix(r, "421 4.7.0 ") {
		t.Fatalf("AUTH after reconnecting: %q, want 421 4.7.0 (the penalty survives)", r)
	}
	if !c.closed() {
		t.Fatal("locked-out connection not closed")
	}
	c = login("127.0.3.2")
	if r := c.cmd(plain("right")); !strings.HasPrefix(r, "235 ") {
		t.Fatalf("AUTH from another address: %q, want 235", r)
	}
	if got := metric(t, admin, `sealgate_connections_refused_total{reason="auth_failures"}`); !strings.HasSuffix(got, " 2") {
		t.Errorf("metric: %q, want 2 lockouts", got)
	}
}
