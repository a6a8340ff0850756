package e2e

import (
	"bufio"
	"net"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"sealgate/upstream/upstreamtest"
)

// rawSession is a legacy client that writes command lines byte for byte
// (go-smtp's client refuses CR and LF in addresses).
type rawSession struct {
	t  *testing.T
	c  net.Conn
	br *bufio.Reader
}

func dialRaw(t *testing.T, addr string) *rawSession {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(30 * time.Second))
	s := &rawSession{t: t, c: c, br: bufio.NewReader(c)}
	if r := s.reply(); !strings.HasPrefix(r, "220 ") {
		t.Fatalf("greeting %q", r)
	}
	return s
}

// reply reads one reply, continuation lines joined.
func (s *rawSession) reply() string {
	s.t.Helper()
	var all strings.Builder
	for {
		l, err := s.br.ReadString('\n')
		if err != nil {
			s.t.Fatalf("reading reply: %v (so far %q)", err, all.String())
		}
		all.WriteString(l)
		if len(l) < 4 || l[3] != '-' {
			return strings.TrimRight(all.String(), "\r\n")
		}
	}
}

// command writes line and CRLF and wants replies beginning with each of
// wants in turn (a line with a bare LF is two commands to the server).
func (s *rawSession) command(line string, wants ...string) {
	s.t.Helper()
	if _, err := s.c.Write([]byte(line + "\r\n")); err != nil {
		s.t.Fatal(err)
	}
	for _, want := range wants {
		if r := s.reply(); !strings.HasPrefix(r, want) {
			s.t.Errorf("%q: got %q, want %q", line, r, want)
		}
	}
}

// TestCommandSmuggling: EHLO, MAIL FROM and RCPT TO carrying NUL, a bare
// CR, a bare LF or bytes that are not UTF-8 are refused with 501 (RFC 5321
// §2.3.8, §4.1.2) and nothing of them reaches the MX; quoted local parts
// arrive quoted.
func TestCommandSmuggling(t *testing.T) {
	w := newWorld(t)
	mx := w.mx("example.test", "mx1.example.test", 10, upstreamtest.MXOptions{Certificate: w.cert("mx1.example.test")})
	// The MX's record is read once its connection ended: no pooling.
	g := w.start(map[string]string{"SEALGATE_UPSTREAM_MAX_REUSE": "1"})

	s := dialRaw(t, g.addr)
	s.command("EHLO legacy\x00.sealgate.test", "501 5.5.2 ")
	s.command("EHLO legacy\r.sealgate.test", "501 5.5.2 ")
	s.command("HELO legacy\x7f.sealgate.test", "501 5.5.2 ")
	s.command("EHLO legacy.sealgate.test", "250")
	s.command("MAIL FROM:<a\x00@legacy.sealgate.test>", "501 5.1.7 ")
	s.command("MAIL FROM:<a\rb@legacy.sealgate.test>", "501 5.1.7 ")
	s.command("MAIL FROM:<a@legacy\xff.sealgate.test>", "501 5.1.7 ")
	s.command("MAIL FROM:<\"\x01\"@legacy.sealgate.test>", "501 5.1.7 ")
	s.command(`MAIL FROM:<"j doe"@legacy.sealgate.test>`, "250 ")
	s.command("RCPT TO:<b\x00@example.test>", "501 5.1.3 ")
	s.command("RCPT TO:<b@example.test\x00>", "501 5.1.3 ")
	s.command("RCPT TO:b@example.test\x00", "501 5.1.3 ")
	s.command("RCPT TO:<b\r@example.test>", "501 5.1.3 ")
	s.command("RCPT TO:<b@ex\xffample.test>", "501 5.1.3 ")
	s.command("RCPT TO:<b\xc3@example.test>", "501 5.1.3 ")
	s.command("RCPT TO:<"+strings.Repeat("b", 65)+"@example.test>", "501 5.1.3 ")
	s.command(`RCPT TO:<"a b"@example.test>`, "250 ")
	s.command(`RCPT TO:<"x@y"@example.test>`, "250 ")
	s.command(`RCPT TO:<"q\"\\"@example.test>`, "250 ")
	s.command("DATA", "354 ")
	s.command(string(message("quoted"))+".", "250 ")
	// A bare LF ends a command line for the server: the two halves are
	// refused as separate commands (after the last one, too many errors
	// close the connection).
	s.command("MAIL FROM:<a@legacy.sealgate.test>", "250 ")
	s.command("RCPT TO:<b\n@example.test>", "501 5.5.2 ", "501 5.5.2 ")
	s.command("QUIT", "221 ")

	mx.WaitIdle(10 * time.Second)
	var cmds []string
	for _, c := range mx.Conns() {
		cmds = append(cmds, c.Commands...)
	}
	for _, c := range cmds {
		if strings.ContainsAny(c, "\x00\r\n\x01\x7f") || !utf8.ValidString(c) {
			t.Errorf("the MX got %q", c)
		}
	}
	for _, want := range []string{
		`MAIL FROM:<"j doe"@legacy.sealgate.test> BODY=8BITMIME`,
		`RCPT TO:<"a b"@example.test>`,
		`RCPT TO:<"x@y"@example.test>`,
		`RCPT TO:<"q\"\\"@example.test>`,
	} {
		if !slices.Contains(cmds, want) {
			t.Errorf("the MX did not get %s; it got:\n%s", want, strings.Join(cmds, "\n"))
		}
	}
	msgs := mx.Messages()
	if len(msgs) != 1 {
		t.Fatalf("the MX got %d messages, want 1", len(msgs))
	}
	var rcpts []string
	for _, r := range msgs[0].Rcpts {
		rcpts = append(rcpts, r.To)
	}
	if want := []string{"a b@example.test", "x@y@example.test", `q"\@example.test`}; !slices.Equal(rcpts, want) || msgs[0].From != "j doe@legacy.sealgate.test" {
		t.Errorf("the MX read from %q to %q, want from %q to %q", msgs[0].From, rcpts, "j doe@legacy.sealgate.test", want)
	}
}
