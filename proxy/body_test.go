package proxy

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"
	"time"
)

func TestBodyReader(t *testing.T) {
	tests := []struct {
		name string
		in   string
		// bad names the offence, "" for a clean message; line is
		// where it is.
		bad  string
		line int
	}{
		{name: "clean", in: "Subject: x\r\n\r\nhello\r\n"},
		{name: "8bit is fine", in: "Subject: \xc3\xa9\r\n\r\n\xff\r\n"},
		{name: "empty", in: ""},
		{name: "bare LF", in: "a\r\nb\nc\r\n", bad: "bare LF", line: 2},
		{name: "bare CR mid-line", in: "a\r\nb\rc\r\n", bad: "bare CR", line: 2},
		{name: "smuggling pattern", in: "x\r\n\r.\r\nMAIL FROM:<a@b>\r\n", bad: "bare CR", line: 2},
		{name: "bare CR at the end", in: "a\r\nb\r", bad: "bare CR", line: 2},
		{name: "CR CR LF", in: "a\r\r\n", bad: "bare CR", line: 1},
		{name: "NUL", in: "a\r\nb\x00c\r\n", bad: "NUL byte", line: 2},
		{name: "LF first", in: "\nx", bad: "bare LF", line: 1},
	}
	for _, tc := range tests {
		for _, split := range []struct {
			name string
			wrap func(io.Reader) io.Reader
		}{
			{"whole", func(r io.Reader) io.Reader { return r }},
			{"byte by byte", iotest.OneByteReader},
		} {
			t.Run(tc.name+"/"+split.name, func(t *testing.T) {
				out, err := io.ReadAll(newBodyReader(split.wrap(bytes.NewReader([]byte(tc.in)))))
				var be *bodyError
				if tc.bad == "" {
					if err != nil || string(out) != tc.in {
						t.Fatalf("got %q, %v; want the message unchanged", out, err)
					}
					return
				}
				if !errors.As(err, &be) {
					t.Fatalf("got %q, %v; want a *bodyError", out, err)
				}
				if be.what != tc.bad || be.line != tc.line {
					t.Fatalf("got %s in line %d, want %s in line %d", be.what, be.line, tc.bad, tc.line)
				}
				if !bytes.HasPrefix([]byte(tc.in), out) {
					t.Fatalf("passed %q, not a prefix of the input", out)
				}
			})
		}
	}
}

func FuzzBodyReader(f *testing.F) {
	for _, s := range []string{"a\r\n", "a\nb", "a\rb", "\x00", "x\r\n\r.\r\n", ""} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		out, err := io.ReadAll(newBodyReader(iotest.HalfReader(bytes.NewReader(in))))
		if err == nil {
			// What passes has only CRLF line ends and no NUL.
			if !bytes.Equal(out, in) {
				t.Fatalf("changed %q to %q", in, out)
			}
			clean := bytes.ReplaceAll(in, []byte("\r\n"), nil)
			if bytes.ContainsAny(clean, "\r\n\x00") {
				t.Fatalf("passed %q", in)
			}
			return
		}
		var be *bodyError
		if !errors.As(err, &be) {
			t.Fatalf("error %v is not a *bodyError", err)
		}
		if !bytes.HasPrefix(in, out) {
			t.Fatalf("passed %q, not a prefix of %q", out, in)
		}
	})
}

func TestDotCRScanner(t *testing.T) {
	tests := []struct {
		name   string
		chunks []string
		hit    bool
	}{
		{name: "clean", chunks: []string{"DATA\r\n", "a\r\n..b\r\n.\r\n"}},
		{name: "end of data is no hit", chunks: []string{"x\r\n.\r\n"}},
		{name: "dot bare CR", chunks: []string{"x\r\n.\rMAIL FROM:<a@b>\r\n.\r\n"}, hit: true},
		{name: "split before the dot", chunks: []string{"x\r\n", ".\rX\r\n.\r\n"}, hit: true},
		{name: "split after the dot", chunks: []string{"x\r\n.", "\rX\r\n.\r\n"}, hit: true},
		{name: "split after the CR", chunks: []string{"x\r\n.\r", "X\r\n.\r\n"}, hit: true},
		{name: "split after the CR, then LF", chunks: []string{"x\r\n.\r", "\n"}},
		{name: "byte by byte", chunks: strings.Split("y\r\n.\rZ\r\n.\r\n", ""), hit: true},
		{name: "end of data byte by byte", chunks: strings.Split("y\r\n.\r\n", "")},
		{name: "CR in mid-line is not this", chunks: []string{"a.\rb\r\n.\r\n"}},
		{name: "bare LF end", chunks: []string{"x\r\n.\rX\r\n.\n"}, hit: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var s dotCRScanner
			for _, c := range tc.chunks {
				s.scan([]byte(c))
			}
			if got := s.endMessage(); got != tc.hit {
				t.Fatalf("hit %t, want %t", got, tc.hit)
			}
		})
	}
}

// TestDotCRScannerCharges: a finding counts against the message whose
// body holds it, however the stream was read: ahead of time (a pipelined
// next message), or after the message's Data returned (its rest drained).
func TestDotCRScannerCharges(t *testing.T) {
	const (
		clean = "DATA\r\nSubject: x\r\n\r\nclean\r\n.\r\n"
		dirty = "DATA\r\nSubject: y\r\n\r\n.\rX\r\n.\r\n"
	)
	t.Run("pipelined dirty after clean", func(t *testing.T) {
		var s dotCRScanner
		s.scan([]byte("EHLO x\r\n" + clean + "MAIL FROM:<a@b>\r\n" + dirty))
		if s.endMessage() {
			t.Error("the clean message was charged with the next one's line")
		}
		if !s.endMessage() {
			t.Error("the dirty message was not charged")
		}
	})
	t.Run("rest of an abandoned dirty message read after it", func(t *testing.T) {
		var s dotCRScanner
		s.scan([]byte("EHLO x\r\nDATA\r\nSubject: y\r\n"))
		s.abandonMessage() // Data returned early; go-smtp drains the rest
		s.scan([]byte("\r\n.\rX\r\n.\r\nMAIL FROM:<a@b>\r\n" + clean))
		if s.endMessage() {
			t.Error("the clean message was charged with the abandoned one's line")
		}
	})
	t.Run("dirty after an abandoned clean one", func(t *testing.T) {
		var s dotCRScanner
		s.scan([]byte("EHLO x\r\n" + clean))
		s.abandonMessage()
		s.scan([]byte(dirty))
		if !s.endMessage() {
			t.Error("the dirty message was not charged")
		}
	})
	t.Run("stopped", func(t *testing.T) {
		var s dotCRScanner
		s.stop()
		s.scan([]byte(dirty))
		if s.endMessage() {
			t.Error("a stopped scanner charged a message")
		}
	})
}

// TestDotBareCRChargedToItsMessage: on a plaintext session, a line
// starting with a dot and a bare CR refuses the message that holds it,
// never its neighbour on the same connection: a message refused before
// go-smtp read all of it (the rest is drained after Data returned), and a
// client that sends the next message without waiting for replies.
func TestDotBareCRChargedToItsMessage(t *testing.T) {
	const dirty = "Subject: dirty\r\n\r\nline\r\n.\rsmuggled-cr\r\nend\r\n.\r\n"
	const clean = "Subject: clean\r\n\r\nline\r\n..dot\r\nend\r\n.\r\n"
	padding := strings.Repeat(strings.Repeat("p", 78)+"\r\n", 1500) // past go-smtp's read-ahead
	tests := []struct {
		name string
		// send writes the session after EHLO; want are the replies to
		// the two messages' ends.
		send string
		want [2]string
		// delivered is the body that must reach the MX, if any.
		delivered string
	}{
		{
			name: "first refused early, the rest drained, then a clean one",
			send: "MAIL FROM:<a@legacy.example.test>\r\nRCPT TO:<b@example.test>\r\nDATA\r\n" +
				"Subject: one\r\nbare\nLF\r\n\r\n" + padding + ".\rX\r\nend\r\n.\r\n" +
				"MAIL FROM:<a@legacy.example.test>\r\nRCPT TO:<b@example.test>\r\nDATA\r\n" + clean,
			want:      [2]string{"550 5.6.11", "250 "},
			delivered: "Subject: clean",
		},
		{
			name: "clean, then dirty, pipelined without waiting for 354",
			send: "MAIL FROM:<a@legacy.example.test>\r\nRCPT TO:<b@example.test>\r\nDATA\r\n" + clean +
				"MAIL FROM:<a@legacy.example.test>\r\nRCPT TO:<b@example.test>\r\nDATA\r\n" + dirty,
			want:      [2]string{"250 ", "550 5.6.11"},
			delivered: "Subject: clean",
		},
		{
			name: "dirty, then clean, pipelined",
			send: "MAIL FROM:<a@legacy.example.test>\r\nRCPT TO:<b@example.test>\r\nDATA\r\n" + dirty +
				"MAIL FROM:<a@legacy.example.test>\r\nRCPT TO:<b@example.test>\r\nDATA\r\n" + clean,
			want:      [2]string{"550 5.6.11", "250 "},
			delivered: "Subject: clean",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			w := newMXWorld(t)
			ts := newTCPServer(t, Options{Router: w.router, Opener: w.opener})
			c := ts.dial(t, "127.0.0.1")
			c.reply(5 * time.Second)
			c.cmd("EHLO legacy.example.test")
			c.c.Write([]byte(tc.send))
			var finals []string
			for len(finals) < 2 {
				r := c.reply(10 * time.Second)
				if r == "" {
					t.Fatalf("connection ended after %q", finals)
				}
				// MAIL, RCPT and 354 come in between.
				if strings.HasPrefix(r, "250 2.0.0 Roger") || strings.HasPrefix(r, "250 2.0.0 I'll") || strings.HasPrefix(r, "354") {
					continue
				}
				finals = append(finals, r)
			}
			for i, want := range tc.want {
				if !strings.HasPrefix(finals[i], want) {
					t.Errorf("message %d answered %q, want %s", i+1, finals[i], want)
				}
			}
			var got []string
			for _, m := range w.mx.Messages() {
				if m.Accepted {
					got = append(got, string(m.Data))
				}
			}
			if len(got) != 1 || !strings.Contains(got[0], tc.delivered) || strings.Contains(got[0], "smuggled") {
				t.Errorf("the MX completed %q, want only the message with %q", got, tc.delivered)
			}
		})
	}
}

// FuzzDotCRScannerChunks: how the stream is cut into reads changes
// nothing: the same lines are found and charged to the same messages.
func FuzzDotCRScannerChunks(f *testing.F) {
	f.Add([]byte("x\r\n.\rX\r\n.\r\nDATA\r\na\r\n.\r\n"), []byte{1, 2, 3})
	f.Add([]byte("\r\n.\r\n.\r\n.\rY\r\n.\n"), []byte{1, 1, 1, 1, 1})
	f.Fuzz(func(t *testing.T, stream, cuts []byte) {
		var whole, cut dotCRScanner
		whole.scan(stream)
		rest := stream
		for _, c := range cuts {
			n := min(int(c)%7, len(rest))
			cut.scan(rest[:n])
			rest = rest[n:]
		}
		cut.scan(rest)
		if whole.pos != cut.pos {
			t.Fatalf("scanned %d and %d bytes", whole.pos, cut.pos)
		}
		for i := 0; i < 8; i++ {
			if a, b := whole.endMessage(), cut.endMessage(); a != b {
				t.Fatalf("message %d: charged %v in one read, %v in pieces", i+1, a, b)
			}
		}
	})
}

// TestBodyReaderJudgesTheEndOnce: a reader above may read again after an
// EOF (bufio clears it, as readHeader's does for a message without a
// blank line); the end of the message is judged once, and the answer
// stays.
func TestBodyReaderJudgesTheEndOnce(t *testing.T) {
	calls := 0
	b := newBodyReader(strings.NewReader("Subject: only a header\r\n"))
	b.atEOF = func() error { calls++; return nil }
	if _, err := io.ReadAll(b); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if n, err := b.Read(make([]byte, 8)); n != 0 || err != io.EOF {
			t.Fatalf("read after the end: %d, %v; want 0, EOF", n, err)
		}
	}
	if calls != 1 {
		t.Fatalf("the end was judged %d times, want once", calls)
	}
	refused := errors.New("refused")
	b = newBodyReader(strings.NewReader("x\r\n"))
	b.atEOF = func() error { calls++; return refused }
	io.ReadAll(b)
	if _, err := b.Read(make([]byte, 8)); err != refused {
		t.Fatalf("read after a refused end: %v, want the refusal again", err)
	}
}
