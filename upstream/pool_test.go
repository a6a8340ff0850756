package upstream

import (
	"bufio"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"sealgate/certs/certstest"
	"sealgate/enforcement"
	"sealgate/upstream/upstreamtest"
)

// send runs one whole transaction on a connection from d and releases
// it.
func send(t *testing.T, d *Deliverer, r *enforcement.Route, subject string) *Conn {
	t.Helper()
	c, err := d.Open(context.Background(), r)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Mail("a@example.test", nil); err != nil {
		t.Fatal(err)
	}
	if err := c.Rcpt("b@example.test", nil); err != nil {
		t.Fatal(err)
	}
	if final, err := c.Data(nil, strings.NewReader("Subject: "+subject+"\r\n\r\nx\r\n")); err != nil || final.Code != 250 {
		t.Fatalf("final %v, %v", final, err)
	}
	c.Release()
	return c
}

// waitIdle waits until the pool holds n idle connections.
func waitIdle(t *testing.T, p *Pool, n int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for p.Idle() != n {
		if time.Now().After(deadline) {
			t.Fatalf("pool holds %d idle connections, want %d", p.Idle(), n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func poolWorld(t *testing.T) (*certstest.CA, *upstreamtest.MX, *Deliverer) {
	ca := certstest.NewCA(t, "root")
	cert := ca.Leaf("mx.example.test")
	mx := upstreamtest.NewMX(t, upstreamtest.MXOptions{Hostname: "mx.example.test", Certificate: &cert})
	d := deliverer(ca)
	d.Pool = &Pool{}
	t.Cleanup(d.Pool.Close)
	return ca, mx, d
}

func TestPoolReusesAVerifiedConnection(t *testing.T) {
	_, mx, d := poolWorld(t)
	req := enforcement.Requirement{Source: enforcement.SourceFloor, Level: enforcement.LevelVerify, Names: []string{"mx.example.test"}}
	r := route("example.test", hostAt(t, "mx.example.test", mx.Addr(), req))
	first := send(t, d, r, "one")
	waitIdle(t, d.Pool, 1)
	second := send(t, d, route("other.test", r.Hosts...), "two")
	if second != first || !second.Reused() {
		t.Fatal("the second transaction did not reuse the pooled connection")
	}
	if second.Route.Domain != "other.test" {
		t.Errorf("a reused connection reports route %q", second.Route.Domain)
	}
	waitIdle(t, d.Pool, 1)
	d.Pool.Close()
	conns := mx.Conns()
	if len(conns) != 1 || len(mx.Messages()) != 2 {
		t.Fatalf("MX saw %d connections and %d messages, want 1 and 2", len(conns), len(mx.Messages()))
	}
	var rsets int
	for _, cmd := range conns[0].Commands {
		if cmd == "RSET" {
			rsets++
		}
	}
	if rsets < 1 || conns[0].Commands[len(conns[0].Commands)-1] != "QUIT" {
		t.Errorf("want RSET between transactions and QUIT at close: %q", conns[0].Commands)
	}
}

// TestPoolNeverServesAnotherRequirement: a connection verified under one
// requirement serves no route whose requirement for that host differs in
// anything, stronger or weaker.
func TestPoolNeverServesAnotherRequirement(t *testing.T) {
	_, mx, d := poolWorld(t)
	encrypt := enforcement.Requirement{Source: enforcement.SourceFloor, Level: enforcement.LevelEncrypt}
	verify := enforcement.Requirement{Source: enforcement.SourceFloor, Level: enforcement.LevelVerify, Names: []string{"mx.example.test"}}
	sts := enforcement.Requirement{Source: enforcement.SourceMTASTS, Level: enforcement.LevelVerify, Mode: "enforce", Names: []string{"mx.example.test"}}
	weak := send(t, d, route("a.test", hostAt(t, "mx.example.test", mx.Addr(), encrypt)), "encrypt")
	waitIdle(t, d.Pool, 1)
	for _, req := range []enforcement.Requirement{verify, sts} {
		c := send(t, d, route("a.test", hostAt(t, "mx.example.test", mx.Addr(), req)), req.Describe())
		if c == weak || c.Reused() {
			t.Fatalf("a connection verified under %s served %s", encrypt.Describe(), req.Describe())
		}
	}
	// And a REQUIRETLS route does not take a connection whose MX did
	// not advertise REQUIRETLS.
	rt := route("a.test", hostAt(t, "mx.example.test", mx.Addr(), encrypt))
	rt.REQUIRETLS = true
	if c := d.Pool.take(rt, rt.Hosts[0], mx.Addr(), [32]byte{}); c != nil {
		t.Fatal("a REQUIRETLS route took a connection to an MX without REQUIRETLS")
	}
}

func TestPoolBounds(t *testing.T) {
	t.Run("max reuse 1 turns reuse off", func(t *testing.T) {
		_, mx, d := poolWorld(t)
		d.Pool.MaxReuse = 1
		r := route("a.test", hostAt(t, "mx.example.test", mx.Addr(), enforcement.Requirement{}))
		a, b := send(t, d, r, "1"), send(t, d, r, "2")
		if a == b || b.Reused() || d.Pool.Idle() != 0 {
			t.Fatal("a connection was reused with MaxReuse 1")
		}
	})
	t.Run("transactions per connection", func(t *testing.T) {
		_, mx, d := poolWorld(t)
		d.Pool.MaxReuse = 3
		r := route("a.test", hostAt(t, "mx.example.test", mx.Addr(), enforcement.Requirement{}))
		for i := range 7 {
			send(t, d, r, "m")
			if (i+1)%3 != 0 {
				waitIdle(t, d.Pool, 1)
			}
		}
		d.Pool.Close()
		if n := len(mx.Conns()); n != 3 {
			t.Fatalf("7 messages at 3 per connection took %d connections, want 3", n)
		}
	})
	t.Run("idle connections per host", func(t *testing.T) {
		_, mx, d := poolWorld(t)
		d.Pool.MaxIdle = 2
		r := route("a.test", hostAt(t, "mx.example.test", mx.Addr(), enforcement.Requirement{}))
		var open []*Conn
		for range 4 {
			c, err := d.Open(context.Background(), r)
			if err != nil {
				t.Fatal(err)
			}
			open = append(open, c)
		}
		for _, c := range open {
			c.Release()
		}
		d.Pool.wg.Wait()
		if n := d.Pool.Idle(); n != 2 {
			t.Fatalf("%d idle connections, want the bound 2", n)
		}
	})
	t.Run("idle timeout", func(t *testing.T) {
		_, mx, d := poolWorld(t)
		d.Pool.IdleTimeout = 100 * time.Millisecond
		r := route("a.test", hostAt(t, "mx.example.test", mx.Addr(), enforcement.Requirement{}))
		send(t, d, r, "m")
		waitIdle(t, d.Pool, 1)
		waitIdle(t, d.Pool, 0)
		deadline := time.Now().Add(5 * time.Second)
		for {
			cmds := mx.Conns()[0].Commands
			if cmds[len(cmds)-1] == "QUIT" {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("the idle connection was not closed with QUIT: %q", cmds)
			}
			time.Sleep(10 * time.Millisecond)
		}
	})
}

// TestPoolDropsWhatFailed: a broken connection is never pooled, and a
// pooled connection that the MX closed meanwhile is not handed out.
func TestPoolDropsWhatFailed(t *testing.T) {
	_, mx, d := poolWorld(t)
	r := route("a.test", hostAt(t, "mx.example.test", mx.Addr(), enforcement.Requirement{}))
	c, err := d.Open(context.Background(), r)
	if err != nil {
		t.Fatal(err)
	}
	c.Abort()
	c.Release()
	d.Pool.wg.Wait()
	if d.Pool.Idle() != 0 {
		t.Fatal("an aborted connection was pooled")
	}

	first := send(t, d, r, "m")
	waitIdle(t, d.Pool, 1)
	first.raw.Close() // as if the MX had gone away
	c, err = d.Open(context.Background(), r)
	if err != nil {
		t.Fatal(err)
	}
	if c == first || c.Reused() {
		t.Fatal("a dead pooled connection was handed out")
	}
	c.Close()
}

func TestPoolClientCertificateChange(t *testing.T) {
	ca, mx, d := poolWorld(t)
	cert := ca.Leaf("gw.example.test")
	d.ClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &cert, nil }
	r := route("a.test", hostAt(t, "mx.example.test", mx.Addr(), enforcement.Requirement{}))
	first := send(t, d, r, "m")
	waitIdle(t, d.Pool, 1)
	if first.certID != sha256.Sum256(cert.Certificate[0]) {
		t.Fatal("the connection does not know its client certificate")
	}
	cert = ca.Leaf("gw.example.test") // reloaded
	if c := send(t, d, r, "m"); c == first {
		t.Fatal("a connection made with the old client certificate was reused")
	}
}

// TestResumedSessionIsJudged: a new connection to a host seen before
// resumes its TLS session, and the verifier judges the resumed session
// like a full handshake: a requirement it does not meet still fails.
func TestResumedSessionIsJudged(t *testing.T) {
	ca := certstest.NewCA(t, "root")
	cert := ca.Leaf("mx.example.test")
	mx := upstreamtest.NewMX(t, upstreamtest.MXOptions{Hostname: "mx.example.test", Certificate: &cert})
	d := deliverer(ca)
	verify := enforcement.Requirement{Source: enforcement.SourceFloor, Level: enforcement.LevelVerify, Names: []string{"mx.example.test"}}
	r := route("a.test", hostAt(t, "mx.example.test", mx.Addr(), verify))
	first := send(t, d, r, "full")
	if first.TLS.DidResume {
		t.Fatal("the first handshake resumed")
	}
	second := send(t, d, r, "resumed")
	if !second.TLS.DidResume {
		t.Fatal("the second connection did not resume its TLS session")
	}
	if !second.Verdict.OK || !second.Verdict.Authenticated {
		t.Fatalf("the resumed session was not judged: %+v", second.Verdict)
	}
	wrong := enforcement.Requirement{Source: enforcement.SourceFloor, Level: enforcement.LevelVerify, Names: []string{"other.example.test"}}
	_, err := d.Open(context.Background(), route("a.test", hostAt(t, "mx.example.test", mx.Addr(), wrong)))
	f, ok := enforcement.AsFailure(err)
	if !ok || f.Kind != enforcement.KindTLS {
		t.Fatalf("a resumed session passed a requirement it does not meet: %v", err)
	}
}

// TestPoolDropsOutOfStepConnection: an MX that answers RSET with two
// replies in one write leaves one waiting, which would answer the next
// transaction's MAIL (another client's, perhaps) and shift every reply
// after it. Such a connection is never pooled: the next transaction gets
// a new one and the right replies.
func TestPoolDropsOutOfStepConnection(t *testing.T) {
	for _, twice := range []string{"RSET", "RCPT", "MAIL"} {
		t.Run(twice+" answered twice", func(t *testing.T) { testPoolDropsOutOfStep(t, twice) })
	}
}

func testPoolDropsOutOfStep(t *testing.T, twice string) {
	ca := certstest.NewCA(t, "root")
	cert := ca.Leaf("mx.example.test")
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	var conns atomic.Int32
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			// Only the first connection answers twice.
			if conns.Add(1) == 1 {
				go scriptedMX(c, &cert, twice)
			} else {
				go scriptedMX(c, &cert, "-")
			}
		}
	}()
	d := deliverer(ca)
	d.Pool = &Pool{}
	t.Cleanup(d.Pool.Close)
	r := route("example.test", hostAt(t, "mx.example.test", l.Addr().String(), enforcement.Requirement{}))
	// The first transaction sees the extra reply where it is: after
	// RSET (the message went through), or in place of the reply to
	// DATA (the connection is lost, the message not acknowledged).
	first, err := d.Open(context.Background(), r)
	if err != nil {
		t.Fatal(err)
	}
	if err := first.Mail("a@example.test", nil); err != nil {
		t.Fatal(err)
	}
	if err := first.Rcpt("b@example.test", nil); err != nil {
		t.Fatal(err)
	}
	final, err := first.Data(nil, strings.NewReader("Subject: one\r\n\r\nx\r\n"))
	if f, lost := enforcement.AsFailure(err); lost && f.Kind == enforcement.KindLost {
		first.Close()
	} else if err != nil || final.Code != 250 {
		t.Fatalf("first message: final %v, %v; want 250 or the connection lost", final, err)
	} else {
		first.Release()
	}
	d.Pool.wg.Wait() // the release runs in the background
	if n := d.Pool.Idle(); n != 0 {
		t.Fatalf("%d connections pooled, want none: a reply is waiting on it", n)
	}
	c, err := d.Open(context.Background(), r)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if c == first || c.Reused() || conns.Load() != 2 {
		t.Fatal("the out-of-step connection was handed out")
	}
	if err := c.Mail("a@example.test", nil); err != nil {
		t.Fatal(err)
	}
	var se *smtp.SMTPError
	if err := c.Rcpt("unknown@example.test", nil); !errors.As(err, &se) || se.Code != 550 {
		t.Fatalf("RCPT of an unknown user: %v, want the MX's 550", err)
	}
}

// scriptedMX serves one connection line by line: STARTTLS, then MAIL,
// RCPT (550 for unknown@), DATA and RSET, answering the first command
// named twice twice in one write.
func scriptedMX(raw net.Conn, cert *tls.Certificate, twice string) {
	defer raw.Close()
	raw.SetDeadline(time.Now().Add(10 * time.Second))
	var c net.Conn = raw
	br := bufio.NewReader(c)
	doubled := false
	say := func(s string) { io.WriteString(c, s) }
	reply := func(cmd, s string) {
		if strings.HasPrefix(cmd, twice) && !doubled {
			doubled = true
			s += s[:4] + "2.0.0 stale\r\n"
		}
		say(s)
	}
	say("220 mx.example.test ESMTP\r\n")
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			return
		}
		cmd := strings.ToUpper(strings.TrimSpace(line))
		switch {
		case strings.HasPrefix(cmd, "EHLO"):
			if _, ok := c.(*tls.Conn); ok {
				say("250-mx.example.test\r\n250 8BITMIME\r\n")
			} else {
				say("250-mx.example.test\r\n250 STARTTLS\r\n")
			}
		case cmd == "STARTTLS":
			say("220 2.0.0 go ahead\r\n")
			tc := tls.Server(raw, &tls.Config{Certificates: []tls.Certificate{*cert}})
			if tc.Handshake() != nil {
				return
			}
			c, br = tc, bufio.NewReader(tc)
		case strings.HasPrefix(cmd, "MAIL"):
			reply(cmd, "250 2.1.0 ok\r\n")
		case strings.HasPrefix(cmd, "RCPT"):
			if strings.Contains(cmd, "UNKNOWN@") {
				say("550 5.1.1 no such user\r\n")
			} else {
				reply(cmd, "250 2.1.5 ok\r\n")
			}
		case cmd == "DATA":
			say("354 go ahead\r\n")
			for {
				l, err := br.ReadString('\n')
				if err != nil {
					return
				}
				if l == ".\r\n" {
					break
				}
			}
			say("250 2.0.0 queued\r\n")
		case cmd == "RSET":
			reply(cmd, "250 2.0.0 ok\r\n")
		case cmd == "QUIT":
			if twice == "silent QUIT" {
				raw.SetDeadline(time.Now().Add(time.Minute))
				io.Copy(io.Discard, br) // until the client closes
				return
			}
			say("221 2.0.0 bye\r\n")
			return
		default:
			say("500 5.5.1 what\r\n")
		}
	}
}

// TestCloseDoesNotWaitForASilentMX: an MX that does not answer QUIT holds
// nothing of ours; the connection is closed after quitTimeout, not after
// the command timeout (minutes), which the next host or the shutdown
// would wait.
func TestCloseDoesNotWaitForASilentMX(t *testing.T) {
	ca := certstest.NewCA(t, "root")
	cert := ca.Leaf("mx.example.test")
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go scriptedMX(c, &cert, "silent QUIT")
		}
	}()
	d := deliverer(ca)
	d.CommandTimeout = time.Minute
	c, err := d.Open(context.Background(), route("example.test", hostAt(t, "mx.example.test", l.Addr().String(), enforcement.Requirement{})))
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	c.Close()
	if took := time.Since(start); took > quitTimeout+5*time.Second {
		t.Fatalf("Close waited %v for a silent MX, want about %v", took, quitTimeout)
	}
}
