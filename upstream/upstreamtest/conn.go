package upstreamtest

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emersion/go-smtp"
)

// errDropped is returned to go-smtp once DropInData closed the connection.
var errDropped = fmt.Errorf("upstreamtest: connection dropped in DATA: %w", net.ErrClosed)

// errHungUp is returned to go-smtp once Hangup closed the connection.
var errHungUp = fmt.Errorf("upstreamtest: hung up: %w", net.ErrClosed)

// Fixed replies of the transport layer.
var (
	replySTARTTLSReady = &smtp.SMTPError{Code: 220, EnhancedCode: smtp.EnhancedCode{2, 0, 0}, Message: "Ready to start TLS"}
	replyNoTLS         = &smtp.SMTPError{Code: 502, EnhancedCode: smtp.EnhancedCode{5, 5, 1}, Message: "STARTTLS not supported"}
	replyTLSActive     = &smtp.SMTPError{Code: 503, EnhancedCode: smtp.EnhancedCode{5, 5, 1}, Message: "TLS already active"}
	replyEHLOFirst     = &smtp.SMTPError{Code: 503, EnhancedCode: smtp.EnhancedCode{5, 5, 1}, Message: "EHLO first after STARTTLS"}
)

// mxConn is the transport under go-smtp's server. go-smtp only ever sees
// cleartext SMTP through it; mxConn itself does STARTTLS and implicit TLS,
// rewrites EHLO replies, answers the fault switches of the greeting, EHLO and
// STARTTLS stages, records command lines, and drops connections in DATA.
//
// go-smtp reads commands through a bufio.Reader and handles one before it
// reads the next, so Read hands it at most one line per call: every reply
// go-smtp writes then belongs to the last line handed over.
type mxConn struct {
	mx  *MX
	raw net.Conn
	id  int

	mu      sync.Mutex
	tlsConn *tls.Conn // guarded by mu; read by Close
	closed  bool
	dropped atomic.Bool // DropInData struck: write nothing more

	// Used only by the connection's handler goroutine.
	cur       net.Conn // raw, or the TLS connection over it
	br        *bufio.Reader
	info      *TLSInfo
	started   bool
	startErr  error
	greeted   bool
	pending   []byte // bytes of the current line not yet read by go-smtp
	readErr   error  // returned once pending is drained
	midLine   bool   // the last read ended inside an over-long line
	dataMode  bool   // between a 354 reply and the final dot
	lastCRLF  bool   // in DATA: the previous body line ended in CRLF
	bdatLeft  int64  // bytes of a BDAT chunk still to pass through
	bodyBytes int64  // body bytes of the current transaction
	needEHLO  bool   // STARTTLS done, no EHLO yet
	ehloReply bool   // the reply being written answers EHLO
	ehloLines []string
	wbuf      []byte
}

func newMXConn(mx *MX, raw net.Conn, id int) *mxConn {
	return &mxConn{mx: mx, raw: raw, id: id, cur: raw, br: bufio.NewReader(raw)}
}

// start runs the implicit TLS handshake before anything else.
func (c *mxConn) start() error {
	if !c.started {
		c.started = true
		if c.mx.opts.ImplicitTLS {
			c.startErr = c.handshake()
		}
	}
	return c.startErr
}

func (c *mxConn) handshake() error {
	tc := tls.Server(c.raw, c.mx.tlsConfig)
	ctx, cancel := context.WithTimeout(c.mx.ctx, handshakeTimeout)
	defer cancel()
	if err := tc.HandshakeContext(ctx); err != nil {
		c.mx.update(c.id, func(ci *ConnInfo) { ci.HandshakeError = err.Error() })
		_ = c.raw.Close()
		return fmt.Errorf("upstreamtest: TLS handshake: %w", err)
	}
	c.info = tlsInfoOf(tc.ConnectionState())
	c.mx.update(c.id, func(ci *ConnInfo) { ci.TLS = c.info })
	c.mu.Lock()
	c.tlsConn = tc
	c.mu.Unlock()
	c.cur = tc
	c.br = bufio.NewReader(tc)
	return nil
}

func (c *mxConn) Read(p []byte) (int, error) {
	if err := c.start(); err != nil {
		return 0, err
	}
	for len(c.pending) == 0 {
		if c.readErr != nil {
			return 0, c.readErr
		}
		if err := c.fill(); err != nil {
			return 0, err
		}
	}
	n := copy(p, c.pending)
	c.pending = c.pending[n:]
	return n, nil
}

// fill reads the next line (or BDAT chunk piece) from the client into
// pending, or sets readErr.
func (c *mxConn) fill() error {
	if c.bdatLeft > 0 {
		buf := make([]byte, min(c.bdatLeft, 32<<10))
		n, err := c.br.Read(buf)
		c.bdatLeft -= int64(n)
		c.body(buf[:n])
		if err != nil && c.readErr == nil {
			c.readErr = err
		}
		return nil
	}
	line, err := c.br.ReadSlice('\n')
	line = slices.Clone(line)
	switch {
	case errors.Is(err, bufio.ErrBufferFull):
		if c.dataMode {
			c.body(line)
		} else {
			c.pending = line
		}
		c.midLine = true
		return nil
	case err != nil:
		c.pending, c.readErr = line, err
		return nil
	case c.midLine:
		c.midLine = false
		if c.dataMode {
			c.body(line)
		} else {
			c.pending = line
		}
		return nil
	case c.dataMode:
		if c.lastCRLF && string(line) == ".\r\n" {
			c.dataMode = false
			c.pending = line
			return nil
		}
		c.lastCRLF = bytes.HasSuffix(line, []byte("\r\n"))
		c.body(line)
		return nil
	}
	return c.command(line)
}

// body passes body bytes on, closing the connection once DropInData bytes
// of this transaction have arrived.
func (c *mxConn) body(b []byte) {
	limit := c.mx.opts.DropInData
	if limit <= 0 || c.bodyBytes+int64(len(b)) < limit {
		c.countBody(int64(len(b)))
		c.bodyBytes += int64(len(b))
		c.pending = b
		return
	}
	c.pending = b[:limit-c.bodyBytes]
	c.countBody(limit - c.bodyBytes)
	c.bodyBytes = limit
	c.readErr = errDropped
	c.mx.update(c.id, func(ci *ConnInfo) { ci.Dropped = true })
	if r := c.mx.opts.DropInDataReply; r != nil {
		_, _ = c.cur.Write(formatError(r))
	}
	// The session closes the connection once it recorded the partial
	// message (see session.Data); until then no reply may leave.
	c.dropped.Store(true)
}

// countBody records n more body bytes in ConnInfo.BodyBytes.
func (c *mxConn) countBody(n int64) {
	if n > 0 {
		c.mx.update(c.id, func(ci *ConnInfo) { ci.BodyBytes += n })
	}
}

// hangUp closes the connection without a reply at stage (MXOptions.Hangup)
// and returns the error that ends go-smtp's handler.
func (c *mxConn) hangUp(stage Stage) error {
	c.mx.update(c.id, func(ci *ConnInfo) { ci.HungUp = stage.String() })
	c.dropped.Store(true)
	_ = c.raw.Close()
	return errHungUp
}

// command handles one command line: it records it, answers it itself when a
// fault or the TLS layer says so, or hands it to go-smtp.
func (c *mxConn) command(line []byte) error {
	text := strings.TrimRight(string(line), "\r\n")
	cleartext := c.info == nil
	c.mx.update(c.id, func(ci *ConnInfo) {
		ci.Commands = append(ci.Commands, text)
		if cleartext {
			ci.Cleartext = append(ci.Cleartext, text)
		}
	})
	verb, arg, _ := strings.Cut(text, " ")
	verb = strings.ToUpper(verb)
	opts := &c.mx.opts

	switch verb {
	case "EHLO", "HELO":
		name, _, _ := strings.Cut(strings.TrimSpace(arg), " ")
		c.mx.update(c.id, func(ci *ConnInfo) { ci.EHLO = append(ci.EHLO, name) })
		c.mx.sleep(StageEHLO)
		if c.mx.hangup(StageEHLO) {
			return c.hangUp(StageEHLO)
		}
		if opts.EHLOReply != nil {
			return c.reply(opts.EHLOReply)
		}
		c.needEHLO = false
		c.ehloReply = verb == "EHLO"
	case "STARTTLS":
		return c.startTLS()
	case "QUIT", "NOOP", "RSET":
	default:
		if c.needEHLO {
			return c.reply(replyEHLOFirst)
		}
		switch verb {
		case "MAIL":
			if c.mx.hangup(StageMail) {
				return c.hangUp(StageMail)
			}
			c.bodyBytes = 0
		case "RCPT":
			if c.mx.hangup(StageRcpt) {
				return c.hangUp(StageRcpt)
			}
		case "DATA":
			c.mx.sleep(StageDataCommand)
			if c.mx.hangup(StageDataCommand) {
				return c.hangUp(StageDataCommand)
			}
			if r := opts.DataCommandReply; r != nil {
				return c.reply(r)
			}
		case "BDAT":
			c.bdatLeft = bdatSize(arg)
		}
	}
	c.pending = line
	return nil
}

// bdatSize returns the chunk size of a BDAT command that go-smtp will read
// the chunk of, else 0 (go-smtp then reads no chunk either).
func bdatSize(arg string) int64 {
	f := strings.Fields(arg)
	if len(f) == 0 || len(f) > 2 || (len(f) == 2 && !strings.EqualFold(f[1], "LAST")) {
		return 0
	}
	n, err := strconv.ParseUint(f[0], 10, 32)
	if err != nil {
		return 0
	}
	return int64(n)
}

func (c *mxConn) startTLS() error {
	c.mx.sleep(StageSTARTTLS)
	if c.mx.hangup(StageSTARTTLS) {
		return c.hangUp(StageSTARTTLS)
	}
	switch {
	case c.info != nil:
		return c.reply(replyTLSActive)
	case c.mx.tlsConfig == nil:
		return c.reply(replyNoTLS)
	case c.mx.opts.STARTTLSReply != nil:
		return c.reply(c.mx.opts.STARTTLSReply)
	}
	if err := c.reply(replySTARTTLSReady); err != nil {
		return err
	}
	// RFC 3207 §5: discard anything the client sent after STARTTLS in
	// cleartext (command injection).
	if n := c.br.Buffered(); n > 0 {
		_, _ = c.br.Discard(n)
		c.mx.t.Logf("upstreamtest MX %s: discarded %d bytes sent after STARTTLS", c.mx.Addr(), n)
	}
	c.mx.sleep(StageHandshake)
	if c.mx.hangup(StageHandshake) {
		return c.hangUp(StageHandshake)
	}
	if err := c.handshake(); err != nil {
		return err
	}
	// RFC 3207 §4.2: the client must start over with EHLO, which also
	// makes go-smtp forget any cleartext transaction.
	c.needEHLO = true
	return nil
}

// reply writes a reply of the transport layer itself.
func (c *mxConn) reply(e *smtp.SMTPError) error {
	if _, err := c.cur.Write(formatError(e)); err != nil {
		return err
	}
	if e.Code == 421 {
		c.closeAfter421()
	}
	return nil
}

// closeAfter421 closes the connection after a 421 reply when CloseOn421
// asks for it; go-smtp's handler ends at its next read.
func (c *mxConn) closeAfter421() {
	if c.mx.opts.CloseOn421 {
		c.dropped.Store(true)
		_ = c.raw.Close()
	}
}

func (c *mxConn) Write(p []byte) (int, error) {
	if err := c.start(); err != nil {
		return 0, err
	}
	if c.dropped.Load() {
		return len(p), nil
	}
	if !c.greeted {
		c.greeted = true
		c.mx.sleep(StageGreeting)
		if c.mx.hangup(StageGreeting) {
			_ = c.hangUp(StageGreeting)
			return len(p), nil
		}
		if r := c.mx.opts.GreetingReply; r != nil {
			_ = c.reply(r)
			_ = c.raw.Close()
			return len(p), nil
		}
	}
	c.wbuf = append(c.wbuf, p...)
	for {
		i := bytes.IndexByte(c.wbuf, '\n')
		if i < 0 {
			break
		}
		line := c.wbuf[:i+1]
		c.wbuf = c.wbuf[i+1:]
		if err := c.serverLine(line); err != nil {
			return 0, err
		}
	}
	return len(p), nil
}

// serverLine passes one reply line written by go-smtp to the client, after
// rewriting EHLO replies and noting the start of DATA.
func (c *mxConn) serverLine(line []byte) error {
	code, more, text, ok := parseReplyLine(strings.TrimRight(string(line), "\r\n"))
	if c.ehloReply {
		if ok && code == "250" {
			c.ehloLines = append(c.ehloLines, text)
			if more {
				return nil
			}
			c.ehloReply = false
			texts := c.rewriteEHLO(c.ehloLines)
			c.ehloLines = nil
			_, err := c.cur.Write(joinReply("250", texts))
			return err
		}
		if !more {
			c.ehloReply = false
		}
	}
	if ok && !more && code == "354" {
		c.dataMode = true
		c.lastCRLF = true
	}
	if _, err := c.cur.Write(line); err != nil {
		return err
	}
	if ok && !more && code == "421" {
		c.closeAfter421()
	}
	return nil
}

// rewriteEHLO adjusts go-smtp's EHLO reply to the fake's TLS state:
// STARTTLS before TLS when a certificate is set, REQUIRETLS after TLS when
// enabled, and no hidden keywords.
func (c *mxConn) rewriteEHLO(texts []string) []string {
	caps := texts[1:]
	if c.info == nil && c.mx.tlsConfig != nil {
		caps = append(caps, "STARTTLS")
	}
	if c.info != nil && c.mx.opts.Extensions.REQUIRETLS {
		caps = append(caps, "REQUIRETLS")
	}
	// RFC 5321 §4.1.1.1: the reply starts with the server's name; go-smtp
	// sends only "Hello <client>".
	out := []string{c.mx.opts.Hostname + " " + texts[0]}
	for _, cp := range caps {
		if !slices.ContainsFunc(c.mx.opts.Extensions.Hide, func(h string) bool {
			return strings.EqualFold(h, keyword(cp))
		}) {
			out = append(out, cp)
		}
	}
	return out
}

// Close is called by go-smtp when the session ends: close TLS politely.
func (c *mxConn) Close() error {
	c.mu.Lock()
	tc, already := c.tlsConn, c.closed
	c.closed = true
	c.mu.Unlock()
	if already {
		return nil
	}
	c.mx.untrack(c)
	if tc != nil {
		return tc.Close()
	}
	return c.raw.Close()
}

func (c *mxConn) LocalAddr() net.Addr                { return c.raw.LocalAddr() }
func (c *mxConn) RemoteAddr() net.Addr               { return c.raw.RemoteAddr() }
func (c *mxConn) SetDeadline(t time.Time) error      { return c.raw.SetDeadline(t) }
func (c *mxConn) SetReadDeadline(t time.Time) error  { return c.raw.SetReadDeadline(t) }
func (c *mxConn) SetWriteDeadline(t time.Time) error { return c.raw.SetWriteDeadline(t) }
