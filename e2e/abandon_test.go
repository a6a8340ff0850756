package e2e

import (
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"sealgate/upstream/upstreamtest"
)

// TestBDATAbandoned: a client that stops in the middle of a BDAT message
// (RSET, QUIT, EHLO, a new MAIL, a closed socket, an oversize chunk) never
// had the message accepted, so the MX must never complete it: sealgate
// cuts the upstream connection without the end-of-data dot. Before the
// fix the MX received the first chunk and the dot, and accepted it, in
// most tries; each ending runs several times to catch that race.
func TestBDATAbandoned(t *testing.T) {
	w := newWorld(t)
	mx := w.mx("example.test", "mx1.example.test", 10, upstreamtest.MXOptions{Certificate: w.cert("mx1.example.test")})
	g := w.start(map[string]string{"SEALGATE_MAX_MESSAGE_SIZE": "30000"})
	chunk := strings.Repeat("x", 78) + "\r\n"
	first := "Subject: abandoned\r\n\r\n" + strings.Repeat(chunk, 20000/len(chunk))

	endings := []struct {
		name string
		// end abandons the message; it returns the reply that must
		// start with want, or "" when none is read.
		end  func(c net.Conn, reply func() string) string
		want string
	}{
		{"RSET", func(c net.Conn, reply func() string) string { fmt.Fprint(c, "RSET\r\n"); return reply() }, "250"},
		{"QUIT", func(c net.Conn, reply func() string) string { fmt.Fprint(c, "QUIT\r\n"); return reply() }, "221"},
		{"EHLO", func(c net.Conn, reply func() string) string {
			fmt.Fprint(c, "EHLO legacy.sealgate.test\r\n")
			return reply()
		}, "250"},
		{"new MAIL then close", func(c net.Conn, reply func() string) string {
			fmt.Fprint(c, "MAIL FROM:<b@legacy.sealgate.test>\r\n")
			r := reply()
			c.Close()
			return r
		}, "5"},
		{"closed socket", func(c net.Conn, reply func() string) string { c.Close(); return "" }, ""},
		{"oversize chunk", func(c net.Conn, reply func() string) string {
			fmt.Fprintf(c, "BDAT 20000 LAST\r\n%s", strings.Repeat("y", 20000))
			return reply()
		}, "552 5.3.4"},
	}
	for _, e := range endings {
		t.Run(e.name, func(t *testing.T) {
			for i := 0; i < 5; i++ {
				before := len(mx.Messages())
				rc := g.dialRaw()
				c, reply := rc.Conn, rc.reply
				rc.begin("b@example.test", false)
				fmt.Fprintf(c, "BDAT %d\r\n%s", len(first), first)
				if r := reply(); !strings.HasPrefix(r, "250") {
					t.Fatalf("first chunk: %s", r)
				}
				if r := e.end(c, reply); !strings.HasPrefix(r, e.want) {
					t.Fatalf("ending: got %q, want %q", r, e.want)
				}
				c.Close()
				// The MX records the message when its connection
				// ends: cut (Dropped) or completed (Accepted).
				var msgs []upstreamtest.Message
				deadline := time.Now().Add(10 * time.Second)
				for {
					msgs = mx.Messages()
					if len(msgs) > before || time.Now().After(deadline) {
						break
					}
					time.Sleep(10 * time.Millisecond)
				}
				if len(msgs) != before+1 {
					t.Fatalf("try %d: the MX saw %d new messages, want 1 (cut)", i, len(msgs)-before)
				}
				if m := msgs[before]; m.Accepted || !m.Dropped {
					t.Fatalf("try %d: the MX completed an abandoned message (%d bytes, accepted=%t, dropped=%t)", i, len(m.Data), m.Accepted, m.Dropped)
				}
			}
		})
	}
}
