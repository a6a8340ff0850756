package proxy

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
	"golang.org/x/crypto/bcrypt"

	"sealgate/certs"
	"sealgate/enforcement"
)

// staticRouter resolves every domain to one route or fails.
type staticRouter struct{ err error }

func (r staticRouter) Resolve(_ context.Context, domain string) (*enforcement.Route, error) {
	if r.err != nil {
		return nil, r.err
	}
	return &enforcement.Route{Domain: domain, Hosts: []enforcement.Host{{Name: "mx." + domain}}}, nil
}

func (r staticRouter) RelaxedRoute(ctx context.Context, domain string) (*enforcement.Route, error) {
	return r.Resolve(ctx, domain)
}

// failOpener never reaches an MX.
type failOpener struct{}

func (failOpener) Open(_ context.Context, route *enforcement.Route) (Upstream, error) {
	return nil, &enforcement.Failure{Kind: enforcement.KindNoSTARTTLS, Domain: route.Domain, Policy: "floor encrypt", Host: "mx." + route.Domain, Reason: "STARTTLS not offered"}
}

// pipeListener serves exactly the connections pushed into it.
type pipeListener struct {
	ch   chan net.Conn
	once sync.Once
	done chan struct{}
}

func newPipeListener() *pipeListener {
	return &pipeListener{ch: make(chan net.Conn), done: make(chan struct{})}
}

func (l *pipeListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ch:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}
func (l *pipeListener) Close() error   { l.once.Do(func() { close(l.done) }); return nil }
func (l *pipeListener) Addr() net.Addr { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 25} }

// addrConn gives a pipe a TCP remote address.
type addrConn struct {
	net.Conn
	remote net.Addr
}

func (c addrConn) RemoteAddr() net.Addr { return c.remote }

func newTestServer(t testing.TB, opts Options) (*Server, func(remote string) net.Conn) {
	t.Helper()
	opts = withTestDefaults(opts, "127.0.0.0/8")
	opts.Log = slog.New(slog.NewTextHandler(io.Discard, nil))
	s := New(opts)
	l := newPipeListener()
	go s.Serve(l)
	t.Cleanup(func() { s.Close() })
	dial := func(remote string) net.Conn {
		c1, c2 := net.Pipe()
		l.ch <- addrConn{Conn: c2, remote: &net.TCPAddr{IP: net.ParseIP(remote), Port: 40000}}
		return c1
	}
	return s, dial
}

// converse sends lines and returns the replies, one string per reply.
func converse(t *testing.T, c net.Conn, lines ...string) []string {
	t.Helper()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(c)
	var replies []string
	read := func() string {
		var sb strings.Builder
		for {
			l, err := br.ReadString('\n')
			if err != nil {
				t.Fatalf("reading reply: %v (so far %q)", err, sb.String())
			}
			sb.WriteString(l)
			if len(l) < 4 || l[3] != '-' {
				return strings.TrimRight(sb.String(), "\r\n")
			}
		}
	}
	replies = append(replies, read()) // greeting
	for _, l := range lines {
		if _, err := io.WriteString(c, l+"\r\n"); err != nil {
			t.Fatal(err)
		}
		replies = append(replies, read())
	}
	return replies
}

func TestEHLOAdvertisesExtensions(t *testing.T) {
	kp, err := certs.SelfSigned("gw.example.test")
	if err != nil {
		t.Fatal(err)
	}
	_, dial := newTestServer(t, Options{TLSConfig: tlsConfig(kp), MaxMessageBytes: 1000})
	r := converse(t, dial("127.0.0.1"), "EHLO legacy.example.test")
	if !strings.HasPrefix(r[0], "220 gw.example.test ") {
		t.Errorf("greeting %q does not name our host", r[0])
	}
	for _, ext := range []string{"PIPELINING", "8BITMIME", "SMTPUTF8", "SIZE 1000", "CHUNKING", "DSN", "ENHANCEDSTATUSCODES", "STARTTLS"} {
		if !strings.Contains(r[1], ext) {
			t.Errorf("EHLO reply lacks %s:\n%s", ext, r[1])
		}
	}
	if strings.Contains(r[1], "AUTH") {
		t.Errorf("AUTH offered without TLS:\n%s", r[1])
	}
}

func TestRelayDeniedOutsideAllowedNetworks(t *testing.T) {
	_, dial := newTestServer(t, Options{})
	r := converse(t, dial("192.0.2.7"), "EHLO x.test", "MAIL FROM:<a@x.test>", "RCPT TO:<b@example.test>")
	if !strings.HasPrefix(r[3], "554 5.7.1 ") {
		t.Errorf("RCPT from outside: %q, want 554 5.7.1", r[3])
	}
}

func TestRefusalsFollowTheTable(t *testing.T) {
	tests := []struct {
		name   string
		router Router
		rcpt   string
		want   string
	}{
		{name: "no STARTTLS", router: staticRouter{}, rcpt: "b@example.test", want: "451 4.7.4 example.test: floor encrypt: mx.example.test: STARTTLS not offered"},
		{name: "DNS failure", router: staticRouter{err: &enforcement.Failure{Kind: enforcement.KindDNS, Domain: "example.test", Reason: "SERVFAIL"}}, rcpt: "b@example.test", want: "451 4.4.3 example.test: SERVFAIL"},
		{name: "null MX", router: staticRouter{err: &enforcement.Failure{Kind: enforcement.KindNullMX, Domain: "example.test", Reason: "null MX"}}, rcpt: "b@example.test", want: "556 5.1.10 "},
		{name: "no domain", router: staticRouter{err: &enforcement.Failure{Kind: enforcement.KindNoDomain, Domain: "example.test", Reason: "domain does not exist"}}, rcpt: "b@example.test", want: "550 5.1.2 "},
		{name: "internal error hides details", router: staticRouter{err: errors.New("secret internal detail")}, rcpt: "b@example.test", want: "451 4.3.0 internal error"},
		{name: "no domain in address", router: staticRouter{}, rcpt: "postmaster", want: "501 5."},
		{name: "address literal", router: staticRouter{}, rcpt: "b@[192.0.2.1]", want: "501 5.1.3 "},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, dial := newTestServer(t, Options{Router: tc.router})
			r := converse(t, dial("127.0.0.1"), "EHLO x.test", "MAIL FROM:<a@x.test>", "RCPT TO:<"+tc.rcpt+">")
			if !strings.HasPrefix(r[3], tc.want) {
				t.Errorf("RCPT reply %q, want prefix %q", r[3], tc.want)
			}
			if strings.Contains(r[3], "secret") {
				t.Errorf("reply leaks internal text: %q", r[3])
			}
		})
	}
}

func TestDataWithoutRecipientsRefused(t *testing.T) {
	_, dial := newTestServer(t, Options{})
	r := converse(t, dial("127.0.0.1"), "EHLO x.test", "MAIL FROM:<a@x.test>", "DATA")
	if r[3][0] != '5' {
		t.Errorf("DATA without recipients: %q", r[3])
	}
}

func TestConnectionLimit(t *testing.T) {
	_, dial := newTestServer(t, Options{MaxConnections: 1})
	first := dial("127.0.0.1")
	converse(t, first, "EHLO x.test")
	second := dial("127.0.0.1")
	second.SetDeadline(time.Now().Add(5 * time.Second))
	line, err := bufio.NewReader(second).ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "421 4.3.2 ") {
		t.Errorf("second connection got %q, %v; want 421 4.3.2", line, err)
	}
	first.Close()
}

func TestPanicAnswered421(t *testing.T) {
	_, dial := newTestServer(t, Options{Router: panicRouter{}})
	r := converse(t, dial("127.0.0.1"), "EHLO x.test", "MAIL FROM:<a@x.test>", "RCPT TO:<b@example.test>")
	if !strings.HasPrefix(r[3], "421 ") {
		t.Errorf("panic answered %q, want 421", r[3])
	}
	// The server lives on: a new session works.
	r = converse(t, dial("127.0.0.1"), "EHLO x.test")
	if !strings.HasPrefix(r[1], "250") {
		t.Errorf("after a panic, EHLO got %q", r[1])
	}
}

type panicRouter struct{ staticRouter }

func (panicRouter) Resolve(context.Context, string) (*enforcement.Route, error) {
	panic("boom")
}

func TestUsersFile(t *testing.T) {
	hash, _ := bcrypt.GenerateFromPassword([]byte("s3cret"), bcrypt.MinCost)
	u, err := ParseUsers("users", []byte("# comment\n\nalice:"+string(hash)+"\n"))
	if err != nil {
		t.Fatal(err)
	}
	if !u.Check("alice", "s3cret") || u.Check("alice", "wrong") || u.Check("bob", "s3cret") {
		t.Error("Check gives wrong answers")
	}
	for _, bad := range []string{"alice", "alice:notahash", ":" + string(hash), "a:" + string(hash) + "\na:" + string(hash)} {
		if _, err := ParseUsers("users", []byte(bad)); err == nil || !strings.Contains(err.Error(), "users:") {
			t.Errorf("ParseUsers(%q) = %v, want an error naming file and line", bad, err)
		}
	}
}

func TestLoginMechanism(t *testing.T) {
	check := func(u, p string) error {
		if u == "alice" && p == "pw" {
			return nil
		}
		return errAuthFailed
	}
	s := newLoginServer(check)
	ch, done, err := s.Next(nil)
	if string(ch) != "Username:" || done || err != nil {
		t.Fatalf("first challenge %q %v %v", ch, done, err)
	}
	ch, done, _ = s.Next([]byte("alice"))
	if string(ch) != "Password:" || done {
		t.Fatalf("second challenge %q", ch)
	}
	if _, done, err = s.Next([]byte("pw")); !done || err != nil {
		t.Fatalf("good password: %v %v", done, err)
	}
	// Initial response carries the user name.
	s = newLoginServer(check)
	if ch, _, _ = s.Next([]byte("alice")); string(ch) != "Password:" {
		t.Fatalf("with initial response: %q", ch)
	}
	if _, _, err = s.Next([]byte("bad")); err == nil {
		t.Fatal("bad password accepted")
	}
}

func TestAuthOverTLSAllowsRelay(t *testing.T) {
	hash, _ := bcrypt.GenerateFromPassword([]byte("pw"), bcrypt.MinCost)
	kp, _ := certs.SelfSigned("gw.example.test")
	_, dial := newTestServer(t, Options{TLSConfig: tlsConfig(kp), Users: Users{"alice": hash}})
	c := smtp.NewClient(dial("192.0.2.9"))
	defer c.Close()
	if err := c.Hello("x.test"); err != nil {
		t.Fatal(err)
	}
	if ok, _ := c.Extension("AUTH"); ok {
		t.Fatal("AUTH offered before STARTTLS")
	}
	if err := c.Mail("a@x.test", nil); err != nil {
		t.Fatal(err)
	}
	err := c.Rcpt("b@example.test", nil)
	var se *smtp.SMTPError
	if !errors.As(err, &se) || se.Code != 554 {
		t.Fatalf("unauthenticated RCPT: %v, want 554", err)
	}
}

func tlsConfig(c *tls.Certificate) *tls.Config {
	return &tls.Config{Certificates: []tls.Certificate{*c}}
}

func TestReceivedHeader(t *testing.T) {
	h := string(receivedInfo{
		Helo: "legacy(evil)\r\nX-Injected: 1", RemoteIP: "10.0.0.5", By: "gw.example.test", ID: "ABC",
		Upstream: "mx.example.test", Verified: "certificate chain valid for mx.example.test",
		For: "b@example.test", Date: time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC),
	}.header())
	want := "Received: from legacy_evil_X-Injected: 1 ([10.0.0.5])\r\n\tby gw.example.test (sealgate) with ESMTP id ABC\r\n"
	if !strings.HasPrefix(h, want) {
		t.Errorf("header:\n%q\nwant prefix\n%q", h, want)
	}
	if strings.Count(h, "\r\n") != strings.Count(h, "\r\n\t")+1 || !strings.HasSuffix(h, "+0000\r\n") {
		t.Errorf("header not folded correctly: %q", h)
	}
	if !strings.Contains(h, "for <b@example.test>;") {
		t.Errorf("no for clause: %q", h)
	}
	// A local part that is not a Dot-string is quoted again, as upstream.
	h = string(receivedInfo{For: "a b@example.test", Date: time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)}.header())
	if !strings.Contains(h, `for <"a b"@example.test>;`) {
		t.Errorf("for clause of a quoted local part: %q", h)
	}
}
