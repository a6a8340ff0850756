package proxy

import (
	"bytes"
	"fmt"
	"io"
)

// bodyError is a message that sealgate refuses to relay: it holds bytes
// that RFC 5321 §2.3.8 and §4.1.1.4 forbid in a message (a CR or LF that
// is not part of CRLF, or NUL). Receivers that take a lone CR or LF as a
// line end would read a different message than sealgate and the MX, the
// ground of SMTP smuggling; sealgate never forwards such bytes and never
// rewrites the message, it refuses it (550 5.6.11).
type bodyError struct {
	what string
	line int
}

func (e *bodyError) Error() string {
	where := "the message"
	if e.line > 0 {
		where = fmt.Sprintf("line %d of the message", e.line)
	}
	return fmt.Sprintf("%s in %s (RFC 5321 §2.3.8); lines must end with CRLF", e.what, where)
}

// bodyReader passes a message through, failing with a *bodyError at the
// first bare CR, bare LF or NUL. It sees the message as go-smtp decoded
// it (dot-unstuffed for DATA, the chunks joined for BDAT), so a bare CR
// split across chunks or reads is caught too.
type bodyReader struct {
	r    io.Reader
	cr   bool // the last byte was a CR
	line int
	err  error
	// atEOF, if set, may refuse the end of the message.
	atEOF func() error
}

func newBodyReader(r io.Reader) *bodyReader { return &bodyReader{r: r, line: 1} }

func (b *bodyReader) Read(p []byte) (int, error) {
	if b.err != nil {
		return 0, b.err
	}
	n, err := b.r.Read(p)
	for i := 0; i < n; {
		if b.cr {
			if p[i] != '\n' {
				return b.fail(i, "bare CR")
			}
			b.cr = false
			b.line++
			i++
			continue
		}
		j := bytes.IndexAny(p[i:n], "\r\n\x00")
		if j < 0 {
			break
		}
		i += j
		switch p[i] {
		case '\r':
			b.cr = true
			i++
		case '\n':
			return b.fail(i, "bare LF")
		default:
			return b.fail(i, "NUL byte")
		}
	}
	if err == io.EOF && b.cr {
		return b.fail(n, "bare CR")
	}
	if err == io.EOF {
		// The end is judged once: a reader above may read again after
		// an EOF (bufio clears it), and atEOF consumes state (the
		// dot-CR scanner's end of the message).
		b.err = io.EOF
		if b.atEOF != nil {
			if e := b.atEOF(); e != nil {
				b.err = e
				return n, e
			}
		}
	}
	return n, err
}

// fail hands out the bytes before the offending one (they are never
// followed by the end of the message) and the error.
func (b *bodyReader) fail(i int, what string) (int, error) {
	b.err = &bodyError{what: what, line: b.line}
	return i, b.err
}
