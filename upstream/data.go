package upstream

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/textproto"
	"strings"
	"time"

	"github.com/emersion/go-smtp"
)

// Data streams the message from r and returns the server's final reply
// as an *smtp.SMTPError (a 250 too, so that its text can be relayed). A
// connection failure at any point is an *enforcement.Failure of kind
// KindLost: the caller must never turn it into a 250.
//
// sealgate sends DATA itself, on the connection under go-smtp's client:
// the client's dot-stuffer writes a body one byte at a time, the largest
// cost of a big message. Between commands the client's buffers are empty
// (it does not pipeline, and reads no reply ahead: see deadlineConn), so
// the client finds the connection as it left it.
func (c *Conn) Data(header []byte, r io.Reader) (*smtp.SMTPError, error) {
	c.wire.SetDeadline(time.Now().Add(c.client.CommandTimeout))
	if _, err := io.WriteString(c.wire, "DATA\r\n"); err != nil {
		return nil, c.lost("DATA", err)
	}
	if _, _, err := c.reply(3); err != nil {
		return nil, c.result("DATA", err)
	}
	c.wire.SetDeadline(time.Time{})
	bw := bufio.NewWriterSize(c.wire, 32<<10)
	w := &dotWriter{w: bw, bol: true}
	if _, err := w.Write(header); err != nil {
		return nil, c.lost("DATA", err)
	}
	if _, err := io.Copy(w, r); err != nil {
		var we *writeError
		if errors.As(err, &we) {
			return nil, c.lost("DATA", err)
		}
		// Reading from our client failed: the upstream transaction
		// must not complete. Drop the connection, never send the dot.
		c.Abort()
		return nil, err
	}
	if c.broken.Load() {
		// Abandoned while the body was copied: no dot.
		return nil, c.lost("DATA", errAborted)
	}
	if err := w.end(); err != nil {
		return nil, c.lost("end of DATA", err)
	}
	c.wire.SetReadDeadline(time.Now().Add(c.client.SubmissionTimeout))
	defer c.wire.SetReadDeadline(time.Time{})
	code, msg, err := c.reply(2)
	if err != nil {
		var se *smtp.SMTPError
		if errors.As(err, &se) {
			if se.Code == 421 {
				return nil, c.closing("end of DATA", se)
			}
			return relayable(se), nil
		}
		return nil, c.lost("end of DATA", err)
	}
	enh, text := parseEnhanced(msg)
	return &smtp.SMTPError{Code: code, EnhancedCode: enh, Message: text}, nil
}

// reply reads one reply. A reply of the class want (2 for the final
// reply, 3 for the go-ahead to DATA) returns its code and text; a 4xx or
// 5xx reply is an *smtp.SMTPError with the server's code, enhanced code
// and text, to relay; any other reply (a 250 to DATA, a 354 or 1xx to the
// end of data) is a protocol error, never relayed: the connection is
// treated as lost, so that the client never takes it for an answer to
// its message.
// maxReply bounds a reply read here (RFC 5321 §4.5.3.1.5 allows 512
// bytes a line; a long multi-line reply is still far below this).
const maxReply = 64 << 10

func (c *Conn) reply(want int) (int, string, error) {
	// One byte a read (see deadlineConn), at most maxReply bytes: an MX
	// that sends continuation lines for ever is a lost connection, not
	// a growing buffer.
	tr := textproto.NewReader(bufio.NewReaderSize(io.LimitReader(c.wire, maxReply), 16))
	code, msg, err := tr.ReadResponse(want)
	var te *textproto.Error
	if errors.As(err, &te) {
		if te.Code/100 != 4 && te.Code/100 != 5 {
			return 0, "", fmt.Errorf("unexpected reply %d %q", te.Code, te.Msg)
		}
		enh, text := parseEnhanced(te.Msg)
		if enh != smtp.NoEnhancedCode {
			// RFC 2034: the code starts every line; relay it once.
			first, _, _ := strings.Cut(te.Msg, " ")
			text = strings.ReplaceAll(text, "\n"+first+" ", "\n")
		}
		return 0, "", &smtp.SMTPError{Code: te.Code, EnhancedCode: enh, Message: text}
	}
	return code, msg, err
}

// dotWriter writes a message in the DATA framing of RFC 5321 §4.5.2, a
// line at a time: a line that starts with a dot gets another, and a line
// end written as a bare LF goes out as CRLF, as net/textproto's does.
type dotWriter struct {
	w   *bufio.Writer
	bol bool // at the beginning of a line
	cr  bool // the last byte written was a CR
}

func (d *dotWriter) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		if d.bol && p[0] == '.' {
			d.w.WriteByte('.')
		}
		i := bytes.IndexByte(p, '\n')
		seg := p
		if i >= 0 {
			seg = p[:i]
		}
		if len(seg) > 0 {
			d.w.Write(seg)
			d.cr, d.bol = seg[len(seg)-1] == '\r', false
		}
		if i < 0 {
			break
		}
		if !d.cr {
			d.w.WriteByte('\r')
		}
		d.w.WriteByte('\n')
		d.bol, d.cr = true, false
		p = p[i+1:]
	}
	if _, err := d.w.Write(nil); err != nil {
		return 0, err
	}
	return n, nil
}

// end ends the last line if the message did not, writes the end-of-data
// line and flushes.
func (d *dotWriter) end() error {
	if !d.bol {
		if !d.cr {
			d.w.WriteByte('\r')
		}
		d.w.WriteByte('\n')
	}
	d.w.WriteString(".\r\n")
	return d.w.Flush()
}
