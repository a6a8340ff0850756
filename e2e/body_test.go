package e2e

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"sealgate/upstream/upstreamtest"
)

// rawDATA sends one message with DATA exactly as given (the caller
// dot-stuffs and ends it) and returns sealgate's reply to it.
func rawDATA(t *testing.T, g *gateway, rcpt string, raw []byte) string {
	t.Helper()
	c := g.dialRaw()
	defer c.Close()
	c.begin(rcpt, true)
	c.Write(raw)
	return c.reply()
}

// TestBodySmuggling: bytes that receivers may read as line ends other
// than CRLF (bare CR, bare LF) and NUL never reach the MX; the message is
// refused for good (550 5.6.11), since sending it again cannot help.
func TestBodySmuggling(t *testing.T) {
	w := newWorld(t)
	mx := w.mx("example.test", "mx1.example.test", 10, upstreamtest.MXOptions{Certificate: w.cert("mx1.example.test")})
	g := w.start(nil)
	tests := []struct {
		name string
		raw  string
	}{
		{"bare CR dot CR LF (smuggling)", "Subject: a\r\n\r\nx\r.\r\nMAIL FROM:<evil@sealgate.test>\r\nRCPT TO:<victim@example.test>\r\nDATA\r\n\r\nevil\r\n.\r\n"},
		{"bare LF dot LF (smuggling)", "Subject: a\r\n\r\nx\n.\nMAIL FROM:<evil@sealgate.test>\r\n.\r\n"},
		{"bare CR", "Subject: a\r\n\r\nx\ry\r\n.\r\n"},
		{"bare LF", "Subject: a\r\n\r\nx\ny\r\n.\r\n"},
		{"NUL", "Subject: a\r\n\r\nx\x00y\r\n.\r\n"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := rawDATA(t, g, "b@example.test", []byte(tc.raw))
			if !strings.HasPrefix(r, "550 5.6.11") {
				t.Fatalf("got %q, want 550 5.6.11", r)
			}
		})
	}
	time.Sleep(200 * time.Millisecond)
	for _, m := range mx.Messages() {
		if m.Accepted {
			t.Errorf("the MX accepted %q", m.Data)
		}
		if bytes.Contains(m.Data, []byte("evil")) || bytes.Contains(bytes.ReplaceAll(m.Data, []byte("\r\n"), nil), []byte("\r")) {
			t.Errorf("forbidden bytes reached the MX: %q", m.Data)
		}
	}
	for _, c := range mx.Conns() {
		for _, cmd := range c.Commands {
			if strings.Contains(cmd, "evil") {
				t.Errorf("a smuggled command reached the MX: %q", cmd)
			}
		}
	}
}

// TestLongLines: body lines longer than RFC 5322's 998 bytes are relayed
// up to SEALGATE_MAX_LINE_LENGTH; a longer line is refused for good, not
// deferred for ever.
func TestLongLines(t *testing.T) {
	w := newWorld(t)
	mx := w.mx("example.test", "mx1.example.test", 10, upstreamtest.MXOptions{Certificate: w.cert("mx1.example.test"), MaxLineLength: 1 << 20})
	g := w.start(map[string]string{"SEALGATE_MAX_LINE_LENGTH": "20000"})
	long := "Subject: long\r\n\r\n" + strings.Repeat("a", 10000) + "\r\n"
	if r := rawDATA(t, g, "b@example.test", []byte(long+".\r\n")); !strings.HasPrefix(r, "250") {
		t.Fatalf("10000-byte line: %q, want 250", r)
	}
	msgs := mx.Messages()
	if len(msgs) != 1 || !msgs[0].Accepted {
		t.Fatalf("MX messages: %d", len(msgs))
	}
	if _, rest := stripReceived(t, msgs[0].Data); string(rest) != long {
		t.Fatalf("the long line changed on the way (%d bytes, want %d)", len(rest), len(long))
	}
	tooLong := "Subject: too long\r\n\r\n" + strings.Repeat("b", 30000) + "\r\n.\r\n"
	if r := rawDATA(t, g, "b@example.test", []byte(tooLong)); !strings.HasPrefix(r, "550 5.6.0") {
		t.Fatalf("30000-byte line: %q, want 550 5.6.0", r)
	}
	for _, m := range mx.Messages()[1:] {
		if m.Accepted {
			t.Fatal("the MX accepted the message with the over-long line")
		}
	}
}

// TestBodyDotBareCR: a line made of a dot, a bare CR and more is dropped
// to its rest by go-smtp's DATA reader (the dot and the CR vanish), so the
// body check never sees the bare CR; on a plaintext session sealgate sees
// it in the raw bytes and refuses the message, which the MX never
// completes.
func TestBodyDotBareCR(t *testing.T) {
	w := newWorld(t)
	mx := w.mx("example.test", "mx1.example.test", 10, upstreamtest.MXOptions{Certificate: w.cert("mx1.example.test")})
	g := w.start(map[string]string{"SEALGATE_UPSTREAM_MAX_REUSE": "1"})
	raw := "Subject: a\r\n\r\nx\r\n.\rMAIL FROM:<evil@sealgate.test>\r\n.\r\n"
	if r := rawDATA(t, g, "b@example.test", []byte(raw)); !strings.HasPrefix(r, "550 5.6.11") || !strings.Contains(r, "dot and a bare CR") {
		t.Fatalf("got %q, want 550 5.6.11 naming the dot and the bare CR", r)
	}
	mx.WaitIdle(10 * time.Second)
	for _, m := range mx.Messages() {
		if m.Accepted {
			t.Fatalf("the MX completed %q", m.Data)
		}
	}
	for _, c := range mx.Conns() {
		for _, cmd := range c.Commands {
			if strings.Contains(cmd, "evil") {
				t.Errorf("a smuggled command reached the MX: %q", cmd)
			}
		}
	}
	// The same from a client that sends the body with DATA, not waiting
	// for 354: go-smtp may read the body before the message starts.
	c := g.dialRaw()
	c.begin("b@example.test", false)
	c.Write([]byte("DATA\r\n" + raw))
	if r := c.reply(); !strings.HasPrefix(r, "354") {
		t.Fatalf("DATA: %q", r)
	}
	if r := c.reply(); !strings.HasPrefix(r, "550 5.6.11") {
		t.Fatalf("body sent with DATA: got %q, want 550 5.6.11", r)
	}
	c.Close()
	// A clean message on the same kind of session still goes through.
	if r := rawDATA(t, g, "b@example.test", []byte("Subject: ok\r\n\r\n..dot line\r\n.\r\n")); !strings.HasPrefix(r, "250") {
		t.Fatalf("clean message after: %q", r)
	}
}
