package upstream

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/textproto"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
)

// scriptConn plays an MX's side of the cleartext phase: reply i becomes
// readable once the client has written i lines, as if the server answered
// each command; a read with nothing readable times out, as a silent server
// would. Each read returns what is readable, up to the buffer's size.
type scriptConn struct {
	replies [][]byte
	written bytes.Buffer
	avail   []byte // readable, not yet read
	next    int    // replies made readable so far
	read    int    // bytes handed to the reader
}

func newScriptConn(replies ...[]byte) *scriptConn {
	c := &scriptConn{replies: replies}
	c.release()
	return c
}

// release makes readable the replies to the lines written so far.
func (c *scriptConn) release() {
	for c.next < len(c.replies) && c.next <= bytes.Count(c.written.Bytes(), []byte("\n")) {
		c.avail = append(c.avail, c.replies[c.next]...)
		c.next++
	}
}

func (c *scriptConn) Read(p []byte) (int, error) {
	if len(c.avail) == 0 {
		return 0, os.ErrDeadlineExceeded
	}
	n := copy(p, c.avail)
	c.avail = c.avail[n:]
	c.read += n
	return n, nil
}

func (c *scriptConn) Write(p []byte) (int, error) {
	c.written.Write(p)
	c.release()
	return len(p), nil
}

func (c *scriptConn) Close() error                     { return nil }
func (c *scriptConn) LocalAddr() net.Addr              { return &net.TCPAddr{} }
func (c *scriptConn) RemoteAddr() net.Addr             { return &net.TCPAddr{} }
func (c *scriptConn) SetDeadline(time.Time) error      { return nil }
func (c *scriptConn) SetReadDeadline(time.Time) error  { return nil }
func (c *scriptConn) SetWriteDeadline(time.Time) error { return nil }

var _ net.Conn = (*scriptConn)(nil)

// replyEnd returns the length of the prefix of the server's stream that
// holds a greeting (220), an EHLO reply (250) and a STARTTLS reply (220),
// and the EHLO reply's text, as textproto reads them; ok is false when the
// stream holds no such three replies.
func replyEnd(stream []byte) (end int, ehlo string, ok bool) {
	r := bufio.NewReader(bytes.NewReader(stream))
	tp := textproto.NewReader(r)
	for i, want := range []int{220, 250, 220} {
		_, msg, err := tp.ReadResponse(want)
		if err != nil {
			return 0, "", false
		}
		if i == 1 {
			ehlo = msg
		}
	}
	return len(stream) - r.Buffered(), ehlo, true
}

// FuzzPreTLS feeds the cleartext phase arbitrary replies of an MX (its
// greeting, its EHLO reply, its STARTTLS reply). preTLS must not panic,
// must send nothing but EHLO, STARTTLS (only when the EHLO reply lists
// it) and QUIT, and may accept STARTTLS only when the server sent three
// proper replies and nothing after the 220 to STARTTLS, neither in the
// same read nor ahead of the command.
func FuzzPreTLS(f *testing.F) {
	f.Add([]byte("220 mx ESMTP\r\n"), []byte("250-mx\r\n250 STARTTLS\r\n"), []byte("220 go ahead\r\n"))
	f.Add([]byte("220 mx ESMTP\r\n"), []byte("250-mx\r\n250 STARTTLS\r\n"), []byte("220 go ahead\r\n250 injected\r\n"))
	f.Add([]byte("220 mx ESMTP\r\n"), []byte("250-mx\r\n250 STARTTLS\r\n220 early\r\n"), []byte(""))
	f.Add([]byte("220 mx ESMTP\r\n"), []byte("250-mx\r\n250 SIZE 1000\r\n"), []byte(""))
	f.Add([]byte("220 mx ESMTP\r\n"), []byte("250-mx\r\n250 ſTARTTLS\r\n"), []byte("220 go ahead\r\n"))
	f.Add([]byte("220 mx ESMTP\r\n"), []byte("502 5.5.1 no\r\n"), []byte(""))
	f.Add([]byte("220 mx ESMTP\r\n"), []byte("250-mx\r\n250 STARTTLS\r\n"), []byte("454 4.7.0 not now\r\n"))
	f.Add([]byte("554 go away\r\n"), []byte(""), []byte(""))
	f.Add([]byte("220-mx\r\n220 ESMTP\r\n"), []byte("250-mx\r\n250-PIPELINING\r\n250 starttls\r\n"), []byte("220 2.0.0 Ready\r\n"))
	f.Add([]byte("220 mx\n"), []byte("250-mx\n250 STARTTLS\n"), []byte("220 ok\n"))
	f.Fuzz(func(t *testing.T, greeting, ehlo, starttls []byte) {
		// Each reply ends a line: a read that times out in the middle
		// of a line hands the partial line over as a whole one (Go's
		// bufio.Reader.ReadLine), which would make the oracle's reading
		// of the joined stream differ from preTLS's.
		for _, r := range []*[]byte{&greeting, &ehlo, &starttls} {
			if len(*r) > 0 && (*r)[len(*r)-1] != '\n' {
				*r = append(*r, '\n')
			}
		}
		c := newScriptConn(greeting, ehlo, starttls)
		_, err := preTLS(c, "gw.example.test", time.Second)
		sent := strings.Split(strings.TrimSuffix(c.written.String(), "\r\n"), "\r\n")
		if c.written.Len() == 0 {
			sent = nil
		}
		stream := slices.Concat(greeting, ehlo, starttls)
		end, ehloText, ok := replyEnd(stream)
		switch {
		case len(sent) == 0:
		case sent[0] != "EHLO gw.example.test":
			t.Fatalf("first command %q", sent[0])
		case len(sent) > 1 && sent[1] == "STARTTLS":
			if !ok && !hasSTARTTLSAfterGreeting(stream) {
				t.Fatalf("STARTTLS sent though no EHLO reply lists it: %q", stream)
			}
			if len(sent) > 3 || (len(sent) == 3 && sent[2] != "QUIT") {
				t.Fatalf("commands after STARTTLS: %q", sent)
			}
		case len(sent) > 1:
			if len(sent) > 2 || sent[1] != "QUIT" {
				t.Fatalf("commands %q", sent)
			}
		}
		if err != nil {
			return
		}
		if !ok || !slices.Contains(ehloKeywords(ehloText), "STARTTLS") {
			t.Fatalf("STARTTLS accepted from %q", stream)
		}
		if end != len(stream) {
			t.Fatalf("STARTTLS accepted with %q after the 220", stream[end:])
		}
		if c.read != len(stream) || len(c.avail) != 0 {
			t.Fatalf("STARTTLS accepted with %d bytes unread", len(stream)-c.read)
		}
		if !slices.Equal(sent, []string{"EHLO gw.example.test", "STARTTLS"}) {
			t.Fatalf("commands %q before the handshake", sent)
		}
	})
}

// hasSTARTTLSAfterGreeting: the stream holds a greeting and an EHLO reply
// listing STARTTLS (the STARTTLS reply may be missing or bad).
func hasSTARTTLSAfterGreeting(stream []byte) bool {
	tp := textproto.NewReader(bufio.NewReader(bytes.NewReader(stream)))
	if _, _, err := tp.ReadResponse(220); err != nil {
		return false
	}
	_, msg, err := tp.ReadResponse(250)
	return err == nil && slices.Contains(ehloKeywords(msg), "STARTTLS")
}

// FuzzEHLOKeywords: the keywords read from an EHLO reply are the first
// words of its lines after the first, upper-cased, each an ehlo-keyword
// of RFC 5321 (ASCII); hasExtension agrees with them.
func FuzzEHLOKeywords(f *testing.F) {
	f.Add("mx.example.test\nPIPELINING\nSIZE 1000\nSTARTTLS")
	f.Add("mx\nſTARTTLS\nSTARTTLS-X\n8BITMIME")
	f.Add("STARTTLS")
	f.Add("mx\n\n  starttls  \n-X\nAUTH PLAIN LOGIN")
	keyword := regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9-]*$`)
	f.Fuzz(func(t *testing.T, reply string) {
		kws := ehloKeywords(reply)
		var listed []string
		for _, l := range strings.Split(reply, "\n")[1:] {
			if f := strings.Fields(l); len(f) > 0 {
				listed = append(listed, f[0])
			}
		}
		for _, k := range kws {
			if !keyword.MatchString(k) || k != strings.ToUpper(k) {
				t.Fatalf("keyword %q is not an upper-cased ehlo-keyword", k)
			}
			if !slices.Contains(listed, k) && !slices.ContainsFunc(listed, func(w string) bool { return strings.ToUpper(w) == k }) {
				t.Fatalf("keyword %q is not listed in %q", k, reply)
			}
			if !hasExtension(reply, k) || !hasExtension(reply, strings.ToLower(k)) {
				t.Fatalf("hasExtension(%q) false, but it is a keyword", k)
			}
		}
		if hasExtension(reply, "STARTTLS") != slices.Contains(kws, "STARTTLS") {
			t.Fatal("hasExtension(STARTTLS) disagrees with the keywords")
		}
	})
}

// enhancedCode is RFC 3463's status-code in canonical form, then a space
// or the end.
var enhancedCode = regexp.MustCompile(`^[245]\.(0|[1-9][0-9]{0,2})\.(0|[1-9][0-9]{0,2})( |$)`)

// FuzzParseEnhanced: "X.Y.Z text" gives back X.Y.Z and text, the input
// being exactly the code, a space and the text; anything else gives
// NoEnhancedCode and the input unchanged.
func FuzzParseEnhanced(f *testing.F) {
	for _, s := range []string{"2.0.0 Ok: queued as X", "Ok", "2.6.0x nope", "9.9.9 bad class", "+2.0.0 sign", "2.00.0 zero",
		"3.0.0 class", "2.0.0", "5.999.999 max", "5.1000.0 big", "4.7.0  two spaces", "2.0.0\ttab", "", "2..0 x", "2.0.-0 x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		code, text := parseEnhanced(in)
		if !enhancedCode.MatchString(in) {
			if code != smtp.NoEnhancedCode || text != in {
				t.Fatalf("parseEnhanced(%q) = %v %q, want no code and the input", in, code, text)
			}
			return
		}
		prefix := fmt.Sprintf("%d.%d.%d", code[0], code[1], code[2])
		if in != prefix+" "+text && !(text == "" && in == prefix) {
			t.Fatalf("parseEnhanced(%q) = %s %q: does not round-trip", in, prefix, text)
		}
		again, text2 := parseEnhanced(prefix + " " + text)
		if again != code || text2 != text {
			t.Fatalf("parseEnhanced(%q) = %v %q, want %v %q", prefix+" "+text, again, text2, code, text)
		}
	})
}

// TestPreTLSRefusesUnaskedData: bytes after the 220 to STARTTLS, in the
// same read, at the edge of the read buffer, or sent ahead of the
// command, stop the session before the handshake; a clean exchange
// passes.
func TestPreTLSRefusesUnaskedData(t *testing.T) {
	greeting, ehlo := []byte("220 mx ESMTP\r\n"), []byte("250-mx\r\n250 STARTTLS\r\n")
	// A 220 reply that fills the 4096-byte read buffer to its edge.
	long := []byte("220-" + strings.Repeat("x", 4096-4-2-len("220 go\r\n")) + "\r\n220 go\r\n")
	tests := []struct {
		name     string
		ehlo     []byte
		starttls []byte
		wantErr  error
	}{
		{name: "clean", ehlo: ehlo, starttls: []byte("220 go ahead\r\n")},
		{name: "injected in the same read", ehlo: ehlo, starttls: []byte("220 go ahead\r\n250 injected\r\n"), wantErr: errInjected},
		{name: "injected behind a reply that fills the buffer", ehlo: ehlo, starttls: append(long, "250 injected\r\n"...), wantErr: errInjected},
		{name: "220 sent ahead of STARTTLS", ehlo: append(slices.Clone(ehlo), "220 go ahead\r\n"...), starttls: []byte("250 injected\r\n"), wantErr: errInjected},
		{name: "Unicode look-alike keyword", ehlo: []byte("250-mx\r\n250 ſTARTTLS\r\n"), starttls: []byte("220 go ahead\r\n"), wantErr: errNoSTARTTLS},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := newScriptConn(greeting, tc.ehlo, tc.starttls)
			_, err := preTLS(c, "gw.example.test", time.Second)
			if !errors.Is(err, tc.wantErr) || (tc.wantErr == nil) != (err == nil) {
				t.Fatalf("preTLS = %v, want %v", err, tc.wantErr)
			}
		})
	}
}
