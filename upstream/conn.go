package upstream

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/emersion/go-smtp"

	"sealgate/enforcement"
)

// Conn is an upstream SMTP connection over verified TLS.
type Conn struct {
	Route   *enforcement.Route
	Host    enforcement.Host
	Addr    string
	TLS     tls.ConnectionState
	Verdict enforcement.Verdict

	client *smtp.Client
	// raw is the TCP connection under TLS: Abort closes it.
	raw net.Conn
	// wire is the TLS connection under the client, with a write deadline
	// on every write; Data uses it directly.
	wire   net.Conn
	log    *slog.Logger
	opened time.Time
	// broken is set once the connection can no longer be used; Abort
	// sets it from another goroutine.
	broken atomic.Bool

	// pool, if not nil, takes the connection back after a clean
	// transaction (Release).
	pool *Pool
	// certID identifies the client certificate it was made with.
	certID [32]byte
	// uses counts its transactions; reused is set when it came from the
	// pool.
	uses   int
	reused bool
}

// Supports reports whether the server advertised the EHLO keyword after
// STARTTLS.
func (c *Conn) Supports(ext string) bool {
	ok, _ := c.client.Extension(ext)
	return ok
}

// Mail sends MAIL FROM. An upstream refusal comes back as *smtp.SMTPError
// (relay it verbatim); a broken connection as *enforcement.Failure, and so
// does a parameter that the MX or the route cannot honour (KindSMTPUTF8,
// KindRequireTLS), before anything is sent.
func (c *Conn) Mail(from string, opts *smtp.MailOptions) error {
	if opts != nil && opts.UTF8 && !c.Supports("SMTPUTF8") {
		return c.refuse(enforcement.KindSMTPUTF8, "MX does not support SMTPUTF8")
	}
	if opts != nil && opts.RequireTLS {
		// Open skipped hosts without REQUIRETLS on a route that
		// Route.RequireTLS vetted; anything else is refused here.
		switch {
		case !c.Route.REQUIRETLS:
			return c.refuse(enforcement.KindRequireTLS, "route not vetted for REQUIRETLS")
		case !c.Supports("REQUIRETLS"):
			return c.refuse(enforcement.KindRequireTLS, "MX does not support REQUIRETLS")
		}
	}
	c.uses++
	return c.result("MAIL", c.client.Mail(QuoteAddress(from), opts))
}

// Reused reports whether the connection served an earlier transaction.
func (c *Conn) Reused() bool { return c.reused }

// Release ends a transaction that ended cleanly (the MX's final reply,
// or no message at all): the connection goes back to the pool after an
// RSET, or is closed with QUIT when there is no pool. It must not be
// called while Data runs, nor after a failure: use Close or Abort.
func (c *Conn) Release() {
	if c.pool == nil {
		c.Close()
		return
	}
	c.pool.release(c)
}

// Reset sends RSET and reads its reply itself, without reading ahead (as
// Data does). A connection with more bytes waiting after that reply (an
// MX that answered more than it was asked, or spoke out of turn) is out
// of step: pooled, its extra reply would answer another client's
// command. It counts as lost.
func (c *Conn) Reset() error {
	c.wire.SetDeadline(time.Now().Add(c.client.CommandTimeout))
	defer c.wire.SetDeadline(time.Time{})
	if _, err := io.WriteString(c.wire, "RSET\r\n"); err != nil {
		return c.lost("RSET", err)
	}
	if _, _, err := c.reply(2); err != nil {
		return c.result("RSET", err)
	}
	if waiting(c.wire) {
		return c.lost("RSET", errors.New("the MX sent more than the reply to RSET"))
	}
	return nil
}

// waiting reports whether c has bytes to read at once (or is closed):
// under TLS, bytes already decrypted count too, which a peek at the
// socket would not see. A read timeout does not harm a TLS connection.
func waiting(c net.Conn) bool {
	c.SetReadDeadline(time.Now())
	defer c.SetReadDeadline(time.Time{})
	var b [1]byte
	n, err := c.Read(b[:])
	var ne net.Error
	return n > 0 || !(errors.As(err, &ne) && ne.Timeout())
}

// refuse is a transaction that this connection cannot carry; the
// connection itself stays usable.
func (c *Conn) refuse(kind enforcement.Kind, reason string) error {
	return &enforcement.Failure{Kind: kind, Domain: c.Route.Domain, Host: c.Host.Name, Reason: reason}
}

// Rcpt sends RCPT TO, with the same error convention as Mail.
func (c *Conn) Rcpt(to string, opts *smtp.RcptOptions) error {
	return c.result("RCPT", c.client.Rcpt(QuoteAddress(to), opts))
}

// Close ends the session with QUIT (or just closes a broken connection).
// It must not be called while Data runs: use Abort.
func (c *Conn) Close() error {
	if c.broken.Load() {
		return c.client.Close()
	}
	return quit(c.client)
}

// quit says QUIT and closes, waiting for the reply no longer than
// quitTimeout: an MX that does not answer it holds nothing of ours, and
// the next host, or the shutdown, must not wait a command timeout for it.
func quit(client *smtp.Client) error {
	client.CommandTimeout = quitTimeout
	err := client.Quit()
	if err != nil {
		client.Close()
	}
	return err
}

// Abort cuts the connection at the socket, sending nothing more: an open
// message is abandoned without its end-of-data dot, so the MX discards
// it. It is safe to call while another goroutine is in Data.
func (c *Conn) Abort() {
	c.broken.Store(true)
	if c.raw != nil {
		c.raw.Close()
	}
}

// errAborted is the cause of a transaction whose message was abandoned.
var errAborted = errors.New("message abandoned")

// Broken reports whether the connection can no longer be used.
func (c *Conn) Broken() bool { return c.broken.Load() }

func (c *Conn) result(stage string, err error) error {
	if err == nil {
		return nil
	}
	var se *smtp.SMTPError
	if errors.As(err, &se) {
		switch {
		case se.Code == 421:
			return c.closing(stage, se)
		case se.Code/100 != 4 && se.Code/100 != 5:
			// A reply outside the command's classes (a 220, 354 or
			// 1xx to MAIL or RCPT): the MX and we no longer agree on
			// where the dialogue is. Relayed, a 2xx would tell our
			// client that a recipient the MX never took was
			// accepted.
			return c.lost(stage, fmt.Errorf("unexpected reply %d %q", se.Code, se.Message))
		}
		return relayable(se)
	}
	return c.lost(stage, err)
}

// closing handles a 421 (RFC 5321 §3.8: the MX is closing the
// connection). It is not relayed as it is: for our client it would mean
// that sealgate closes the session. The transaction fails with a 4xx that
// keeps the MX's text.
func (c *Conn) closing(stage string, se *smtp.SMTPError) error {
	c.broken.Store(true)
	c.client.Close()
	text := strconv.Itoa(se.Code)
	if se.EnhancedCode != (smtp.EnhancedCode{0, 0, 0}) && se.EnhancedCode != smtp.NoEnhancedCode {
		text += fmt.Sprintf(" %d.%d.%d", se.EnhancedCode[0], se.EnhancedCode[1], se.EnhancedCode[2])
	}
	return &enforcement.Failure{
		Kind:   enforcement.KindLost,
		Domain: c.Route.Domain,
		Policy: c.Host.Req.Describe(),
		Host:   c.Host.Name,
		Reason: "the MX closed the connection during " + stage + ": " + text + " " + se.Message,
		Err:    se,
	}
}

func (c *Conn) lost(stage string, err error) error {
	c.broken.Store(true)
	c.client.Close()
	return &enforcement.Failure{
		Kind:   enforcement.KindLost,
		Domain: c.Route.Domain,
		Policy: c.Host.Req.Describe(),
		Host:   c.Host.Name,
		Reason: "connection lost during " + stage + ": " + err.Error(),
		Err:    err,
	}
}

// relayable fixes what go-smtp would print wrongly: a reply without an
// enhanced code comes back as {0,0,0}.
func relayable(se *smtp.SMTPError) *smtp.SMTPError {
	out := *se
	if out.EnhancedCode == (smtp.EnhancedCode{0, 0, 0}) {
		out.EnhancedCode = smtp.NoEnhancedCode
	}
	return &out
}

// parseEnhanced splits "2.0.0 Ok: queued" into code and text. The code
// must be a status-code of RFC 3463 §2 in canonical form (class 2, 4 or
// 5, subject and detail of one to three digits without leading zeros) and
// end at a space or at the end; otherwise the whole text is the text and
// the code NoEnhancedCode, so that the reply is relayed as it came.
func parseEnhanced(text string) (smtp.EnhancedCode, string) {
	first, rest, _ := strings.Cut(text, " ")
	parts := strings.Split(first, ".")
	if len(parts) != 3 || len(parts[0]) != 1 || !strings.Contains("245", parts[0]) {
		return smtp.NoEnhancedCode, text
	}
	var code smtp.EnhancedCode
	for i, p := range parts {
		if p == "" || len(p) > 3 || (len(p) > 1 && p[0] == '0') || strings.Trim(p, "0123456789") != "" {
			return smtp.NoEnhancedCode, text
		}
		code[i], _ = strconv.Atoi(p)
	}
	return code, rest
}

// replayConn replays a synthetic greeting before the real stream, so that
// go-smtp's client can take over a connection that already did STARTTLS.
type replayConn struct {
	net.Conn
	pending []byte
}

func (c *replayConn) Read(p []byte) (int, error) {
	if len(c.pending) > 0 {
		n := copy(p, c.pending)
		c.pending = c.pending[n:]
		return n, nil
	}
	return c.Conn.Read(p)
}

// deadlineConn sets a write deadline before every write (go-smtp's client
// writes the message body with none) and reads one byte at a time.
type deadlineConn struct {
	net.Conn
	timeout time.Duration
}

// writeError marks a failure to write upstream (as opposed to a failure to
// read the message from our client).
type writeError struct{ err error }

func (e *writeError) Error() string { return e.err.Error() }
func (e *writeError) Unwrap() error { return e.err }

// Read reads at most one byte. Everything that reads replies (go-smtp's
// client, and Data and Reset here) reads through the connection, and
// none may read ahead of the reply it reads: bytes an MX sent unasked
// then stay in the connection, where waiting finds them before it is
// pooled, instead of in a reader's buffer, from where they would answer
// the next command. The bytes come from the TLS layer's buffer, so this
// costs a call per byte of a reply, not a system call.
func (c *deadlineConn) Read(p []byte) (int, error) {
	if len(p) > 1 {
		p = p[:1]
	}
	return c.Conn.Read(p)
}

func (c *deadlineConn) Write(p []byte) (int, error) {
	c.Conn.SetWriteDeadline(time.Now().Add(c.timeout))
	n, err := c.Conn.Write(p)
	if err != nil {
		return n, &writeError{err}
	}
	return n, nil
}
