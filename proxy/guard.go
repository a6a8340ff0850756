package proxy

import (
	"bytes"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"sync"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

// guardConn is one client's TCP connection as the SMTP server sees it. It
// holds the client's slot in the connTable until closed, and bounds reads
// beyond go-smtp's deadline per command, which a client renews at will:
//
//   - A budget of read time: every reply we write sets it to the longer of
//     the command and data timeouts; time spent waiting in Read uses it up;
//     every byte read earns 1/MinDataRate seconds more, up to that
//     maximum. A byte-a-second trickle runs dry, a message body at any
//     sensible rate never does, and time we spend elsewhere (waiting on
//     the MX) is not counted against the client.
//   - Idleness: no recipient accepted and no message received for
//     SessionIdleTimeout (the clock stops while a message is received).
//
// The deadline the caller sets still applies when it is earlier. Once a
// deadline passes, every read fails with a timeout, and go-smtp answers
// 421 4.4.2 and closes. Without that, go-smtp would take the part of a
// line read before the deadline for a command (bufio hands it over
// without the error) and wait for the next line with a fresh deadline: a
// trickle would survive timeout after timeout.
type guardConn struct {
	net.Conn
	maxBudget time.Duration
	perByte   time.Duration
	idle      time.Duration
	onCut     func(reason string)
	release   func()
	closeOnce sync.Once

	mu           sync.Mutex
	caller       time.Time // read deadline set by the caller
	budget       time.Duration
	lastProgress time.Time
	receiving    int  // messages being received
	chunked      int  // of them, BDAT messages (see errChunkTimeout)
	expired      bool // a read deadline passed: reads fail from now on
	doomed       bool // close after the next write
	authFailures int

	// dotCR counts lines starting with a dot and a bare CR (Read runs on
	// go-smtp's connection goroutine only).
	dotCR dotCRScanner
}

func newGuardConn(c net.Conn, opts Options, onCut func(string), release func()) *guardConn {
	maxBudget := max(opts.CommandTimeout, opts.DataTimeout)
	return &guardConn{
		Conn:         c,
		maxBudget:    maxBudget,
		perByte:      time.Second / time.Duration(opts.Limits.MinDataRate),
		idle:         opts.Limits.SessionIdleTimeout,
		onCut:        onCut,
		release:      release,
		budget:       maxBudget,
		lastProgress: time.Now(),
	}
}

// NetConn returns the connection under the guard.
func (c *guardConn) NetConn() net.Conn { return c.Conn }

// guardOf finds our connection under a go-smtp connection, which is a
// *tls.Conn after STARTTLS.
func guardOf(c net.Conn) *guardConn {
	for c != nil {
		if g, ok := c.(*guardConn); ok {
			return g
		}
		u, ok := c.(interface{ NetConn() net.Conn })
		if !ok {
			return nil
		}
		c = u.NetConn()
	}
	return nil
}

// deadline is the earliest of the caller's deadline and our bounds, and
// the reason when it is ours. c.mu must be held.
func (c *guardConn) deadline(now time.Time) (time.Time, string) {
	d, why := now.Add(c.budget), ReasonSlow
	if c.receiving == 0 {
		if idle := c.lastProgress.Add(c.idle); idle.Before(d) {
			d, why = idle, ReasonIdle
		}
	}
	if !c.caller.IsZero() && !c.caller.After(d) {
		return c.caller, ""
	}
	return d, why
}

func (c *guardConn) Read(p []byte) (int, error) {
	c.mu.Lock()
	if c.doomed {
		c.mu.Unlock()
		return 0, net.ErrClosed
	}
	if c.expired {
		c.mu.Unlock()
		return 0, os.ErrDeadlineExceeded
	}
	start := time.Now()
	d, why := c.deadline(start)
	c.mu.Unlock()

	c.Conn.SetReadDeadline(d)
	n, err := c.Conn.Read(p)
	c.dotCR.scan(p[:n])

	c.mu.Lock()
	c.budget -= time.Since(start)
	c.budget = min(c.budget+time.Duration(n)*c.perByte, c.maxBudget)
	timeout := errors.Is(err, os.ErrDeadlineExceeded)
	expired := timeout && !c.expired
	if expired {
		c.expired = true
	}
	chunked := c.chunked > 0
	c.mu.Unlock()
	if expired && why != "" {
		c.onCut(why)
	}
	if timeout && chunked {
		return n, errChunkTimeout
	}
	return n, err
}

// errChunkTimeout is a read that timed out while a BDAT message was being
// received. go-smtp reads the chunks itself and answers a chunk whose read
// failed with the error as it is, or with 554 for anything but an
// *smtp.SMTPError: a client that stalled inside a chunk would have its
// message bounced. This answer defers it instead. (A command line read
// failing with it gets go-smtp's "421 4.4.0"; the connection ends either
// way.)
var errChunkTimeout = &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 4, 2},
	Message: "timeout while receiving the message; it was not delivered, send it again"}

// Write sends a reply: the client gets a fresh budget for what follows.
// After doom, the connection is closed once the reply is out.
func (c *guardConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	c.mu.Lock()
	c.budget = c.maxBudget
	doomed := c.doomed || bytes.HasPrefix(p, handshakeFailed)
	c.mu.Unlock()
	if doomed {
		c.Close()
	}
	return n, err
}

// handshakeFailed starts go-smtp's reply to a STARTTLS whose handshake
// failed. go-smtp then goes on in plaintext, reading what it had buffered
// before the handshake: commands sent together with STARTTLS (RFC 3207
// §4.2 wants them discarded) would run after all, as if the client had
// never asked for TLS. The connection is closed after that reply instead.
var handshakeFailed = []byte("550 5.0.0 Handshake error")

func (c *guardConn) SetReadDeadline(t time.Time) error {
	c.mu.Lock()
	c.caller = t
	d, _ := c.deadline(time.Now())
	c.mu.Unlock()
	// A read in progress (go-smtp reads BDAT chunks in one goroutine
	// while the session renews deadlines in another) sees it at once.
	return c.Conn.SetReadDeadline(d)
}

func (c *guardConn) SetDeadline(t time.Time) error {
	if err := c.SetReadDeadline(t); err != nil {
		return err
	}
	return c.Conn.SetWriteDeadline(t)
}

func (c *guardConn) Close() error {
	c.closeOnce.Do(c.release)
	return c.Conn.Close()
}

// progress restarts the idle clock.
func (c *guardConn) progress() {
	c.mu.Lock()
	c.lastProgress = time.Now()
	c.mu.Unlock()
}

// receive stops the idle clock while a message is received; the returned
// function restarts it.
func (c *guardConn) receive() func() {
	c.mu.Lock()
	c.receiving++
	c.mu.Unlock()
	return func() {
		c.mu.Lock()
		c.receiving--
		c.lastProgress = time.Now()
		c.mu.Unlock()
	}
}

// receiveChunks marks a BDAT message being received until the returned
// function is called.
func (c *guardConn) receiveChunks() func() {
	c.mu.Lock()
	c.chunked++
	c.mu.Unlock()
	return func() {
		c.mu.Lock()
		c.chunked--
		c.mu.Unlock()
	}
}

// doom closes the connection after the next reply and fails reads.
func (c *guardConn) doom() {
	c.mu.Lock()
	c.doomed = true
	c.mu.Unlock()
}

// authFailed counts a failed AUTH on this connection.
func (c *guardConn) authFailed() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.authFailures++
	return c.authFailures
}

// remoteKey is the per-address accounting key of a connection's peer.
func remoteKey(c net.Conn) (netip.Addr, netip.Prefix) {
	ta, ok := c.RemoteAddr().(*net.TCPAddr)
	if !ok {
		return netip.Addr{}, netip.Prefix{}
	}
	a := ta.AddrPort().Addr().Unmap()
	return a, addrKey(a)
}

// guardedSession reports a session's progress to its connection's idle
// clock and puts AUTH under the penalty box. go-smtp makes a new session
// at EHLO and after STARTTLS; the connection and its clock stay.
type guardedSession struct {
	inner smtp.AuthSession
	g     *guardConn
	s     *Server
	key   netip.Prefix
	log   *slog.Logger
}

var _ smtp.AuthSession = (*guardedSession)(nil)

func (gs *guardedSession) Reset()        { gs.inner.Reset() }
func (gs *guardedSession) Logout() error { return gs.inner.Logout() }

func (gs *guardedSession) Mail(from string, opts *smtp.MailOptions) error {
	return gs.inner.Mail(from, opts)
}

func (gs *guardedSession) Rcpt(to string, opts *smtp.RcptOptions) error {
	err := gs.inner.Rcpt(to, opts)
	if err == nil {
		gs.g.progress()
	}
	return err
}

func (gs *guardedSession) Data(r io.Reader) error {
	defer gs.g.receive()()
	if _, bdat := r.(*io.PipeReader); bdat {
		defer gs.g.receiveChunks()()
	}
	return gs.inner.Data(r)
}

func (gs *guardedSession) AuthMechanisms() []string { return gs.inner.AuthMechanisms() }

func (gs *guardedSession) Auth(mech string) (sasl.Server, error) {
	if gs.s.penalties.locked(gs.key) {
		return nil, gs.lockOut()
	}
	srv, err := gs.inner.Auth(mech)
	if err != nil {
		return nil, err
	}
	return &guardedSASL{inner: srv, sem: gs.s.authSem, failed: gs.authFailed}, nil
}

// authFailed pauses before the failure reply, longer after each failure
// of the address, and closes the connection after too many.
func (gs *guardedSession) authFailed(err error) error {
	n := max(gs.s.penalties.fail(gs.key), gs.g.authFailed())
	lim := gs.s.opts.Limits
	time.Sleep(lim.authDelay(n))
	if n >= lim.AuthMaxFailures {
		return gs.lockOut()
	}
	return err
}

// lockOut answers 421 4.7.0 and closes the connection after the reply.
func (gs *guardedSession) lockOut() error {
	gs.s.refused(ReasonAuth, gs.key, gs.log)
	gs.g.doom()
	return errAuthLockedOut
}
