package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/emersion/go-smtp"

	"sealgate/enforcement"
)

// dataRun is one message being received and relayed.
//
// go-smtp calls Session.Data on the connection goroutine for DATA, but on
// a goroutine of its own for BDAT (RFC 3030): while the chunks arrive,
// RSET, QUIT, EHLO, STARTTLS, an oversize chunk or a closed connection
// reach Reset and Logout on the connection goroutine. The upstream
// message may end with the dot only after the client's whole message
// arrived (the BDAT LAST chunk, or the client's own dot); every other
// ending abandons the run: its upstream connection is cut at the socket,
// never with a command (go-smtp's client would first end the open message
// with a dot), and whatever Data still does is discarded.
type dataRun struct {
	mu        sync.Mutex
	up        Upstream
	ctx       context.Context
	cancel    context.CancelFunc
	abandoned bool

	// done is closed when Data returned.
	done chan struct{}
	// pipe is the body's reader when go-smtp runs Data in its own
	// goroutine (BDAT), nil for DATA.
	pipe *io.PipeReader
}

// goSMTPGrace bounds the wait for go-smtp's BDAT goroutine to end after
// its message was abandoned.
const goSMTPGrace = 3 * time.Second

// wait waits until Data returned and go-smtp's BDAT goroutine that ran it
// is done, at most goSMTPGrace. That goroutine delivers Data's result
// into a channel of the connection that the next BDAT transfer replaces;
// were it still running then, the next message's final reply could be
// this abandoned message's error while the MX accepted the new message.
// go-smtp closes the pipe's reader right after that delivery, which is
// what a read of it reports (io.ErrClosedPipe) once it happened.
func (r *dataRun) wait() {
	if r.pipe == nil {
		// DATA: Data runs on the connection goroutine, which is the
		// one abandoning it only when the server closes.
		return
	}
	timeout := time.NewTimer(goSMTPGrace)
	defer timeout.Stop()
	select {
	case <-r.done:
	case <-timeout.C:
		return
	}
	for {
		if _, err := r.pipe.Read(nil); errors.Is(err, io.ErrClosedPipe) {
			return
		}
		select {
		case <-timeout.C:
			return
		case <-time.After(time.Millisecond):
		}
	}
}

// attach gives the run the upstream connection it relays to. It reports
// false, and cuts up, when the run was abandoned already.
func (r *dataRun) attach(up Upstream) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.abandoned {
		up.Abort()
		return false
	}
	r.up = up
	return true
}

// abandon cuts the run's upstream connection without ending its message.
// It is safe to call while Data runs.
func (r *dataRun) abandon() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.abandoned = true
	r.cancel()
	if r.up != nil {
		r.up.Abort()
	}
}

// finish ends the run from Data's side and returns its upstream
// connection, or nil when the run was abandoned (the connection is then
// closed here).
func (r *dataRun) finish() Upstream {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.cancel()
	up := r.up
	r.up = nil
	if r.abandoned && up != nil {
		up.Close()
		return nil
	}
	return up
}

var errNoRecipients = &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 5, 1}, Message: "no valid recipients"}

// beginData hands the transaction to a new run, which owns it until Data
// returns. In the BDAT case it runs on go-smtp's goroutine before the
// first read of the body, while the connection goroutine waits for that
// read.
func (ss *session) beginData(r io.Reader) (*transaction, *dataRun, error) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	t := ss.tx
	if t == nil {
		return nil, nil, errNoRecipients
	}
	if t.lost != nil {
		return nil, nil, t.lost
	}
	if t.up == nil && len(t.pending) == 0 {
		return nil, nil, errNoRecipients
	}
	ctx, cancel := context.WithCancel(context.Background())
	pipe, _ := r.(*io.PipeReader)
	run := &dataRun{up: t.up, ctx: ctx, cancel: cancel, done: make(chan struct{}), pipe: pipe}
	ss.tx, ss.run = nil, run
	return t, run, nil
}

// endData gives the transaction of a run that was not abandoned back to
// the session, whose Reset then closes its upstream connection.
func (ss *session) endData(t *transaction, run *dataRun) {
	defer close(run.done)
	up := run.finish()
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if ss.run != run {
		// Abandoned: the transaction is over, the connection closed.
		t.up = nil
		return
	}
	ss.run = nil
	if run.pipe != nil {
		ss.ended = run
	}
	t.up = up
	if up != nil && up.Broken() {
		t.dropUpstream()
	}
	ss.tx = t
}

// abandonData abandons the message being received, if any.
//
// It also waits for go-smtp's goroutine of a BDAT message that ended on
// its own: when Data fails before the client's last chunk (the MX went
// away, say), go-smtp's connection goroutine learns of it only at the
// next chunk, so a RSET or QUIT arriving first would otherwise let the
// next transfer start while that goroutine still delivers its result.
func (ss *session) abandonData() {
	ss.mu.Lock()
	run, ended := ss.run, ss.ended
	ss.run, ss.ended = nil, nil
	ss.mu.Unlock()
	if run != nil {
		run.abandon()
		run.wait()
	}
	if ended != nil {
		ended.wait()
	}
}

func (ss *session) Data(r io.Reader) error {
	t, run, err := ss.beginData(r)
	if err != nil {
		return err
	}
	defer ss.endData(t, run)
	// body renews the read deadline and counts the bytes go-smtp hands
	// over; the check reads through it.
	body := &renewingReader{r: r, conn: ss.clientNC, timeout: ss.s.opts.DataTimeout}
	check := newBodyReader(body)
	// On a plaintext session the raw bytes show what go-smtp's DATA
	// reader hides: a line starting with a dot and a bare CR (dotcr.go).
	// BDAT chunks reach Data as they were sent: the body check sees all.
	var dots *dotCRScanner
	ended := false // the scanner was told of the end of the body
	if g := guardOf(ss.clientNC); g != nil && ss.inTLS == nil && run.pipe == nil {
		dots = &g.dotCR
		defer func() {
			if !ended {
				dots.abandonMessage()
			}
		}()
	}
	check.atEOF = func() error {
		if dots != nil {
			ended = true
			if dots.endMessage() {
				return &bodyError{what: "a line starting with a dot and a bare CR"}
			}
		}
		// BDAT only: go-smtp takes a stream ended inside the LAST chunk
		// for its end (DATA's reader reports it as an error).
		if run.pipe != nil {
			return chunksWhole(ss.conn, body.n)
		}
		return nil
	}
	var in io.Reader = check
	if t.up == nil {
		if in, err = t.openPending(run, in); err != nil {
			t.log.Info("conditional recipients deferred", "reason", err.Error())
			r := dataReply(err, ss.s.opts.MaxLineLength)
			if cause, ok := pendingOutcome(err); ok {
				ss.s.recordRefusal(t.pendingRoute.Domain, cause, r)
			}
			return r
		}
	}
	up := t.up
	peer := up.Peer()
	info := receivedInfo{
		Helo:       t.helo,
		RemoteIP:   ss.remote.String(),
		By:         ss.s.opts.Hostname,
		ID:         t.id,
		InboundTLS: ss.inTLS,
		Authed:     t.user != "",
		Upstream:   peer.Host.Name,
		UpTLS:      peer.TLS,
		Verified:   peer.Verdict.Detail,
		Date:       ss.s.opts.Now(),
	}
	if len(t.rcpts) == 1 {
		info.For = t.rcpts[0]
	}
	final, err := up.Data(info.header(), in)
	ss.logDelivery(t, peer, final, err, body.n)
	ss.s.recordData(t.rcpts, peer, final, err)
	if err != nil {
		return dataReply(err, ss.s.opts.MaxLineLength)
	}
	return final
}

// dataReply is the reply to a message that was not delivered: the
// upstream connection broke, or our client's message could not be read.
func dataReply(err error, maxLine int) *smtp.SMTPError {
	var be *bodyError
	switch {
	case errors.As(err, &be):
		return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 6, 11}, Message: "message refused: " + be.Error()}
	case errors.Is(err, smtp.ErrTooLongLine):
		return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 6, 0},
			Message: "message refused: a line is longer than " + strconv.Itoa(maxLine) + " bytes"}
	}
	if _, ok := enforcement.AsFailure(err); ok {
		// Before the SMTP error it may wrap: an MX's 421.
		return Reply(err)
	}
	var se *smtp.SMTPError
	if errors.As(err, &se) {
		return se // from our client's side, e.g. message too large
	}
	// Reading our client failed; the upstream transaction was abandoned
	// before its end.
	return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "message not received completely: " + err.Error()}
}

func (ss *session) logDelivery(t *transaction, up Peer, final *smtp.SMTPError, err error, n int64) {
	attrs := []slog.Attr{
		slog.String("id", t.id),
		slog.String("domain", up.Route.Domain),
		slog.String("mx", up.Host.Name),
		slog.String("ip", up.Addr),
		slog.String("tls_version", tls.VersionName(up.TLS.Version)),
		slog.String("cipher", tls.CipherSuiteName(up.TLS.CipherSuite)),
		slog.String("policy", up.Host.Req.Describe()),
		slog.Bool("authenticated", up.Verdict.Authenticated),
		slog.String("verification", up.Verdict.Detail),
		slog.Int("rcpts", len(t.rcpts)),
		slog.Int64("bytes", n),
		slog.Duration("duration", time.Since(t.started)),
	}
	switch {
	case err != nil:
		r := dataReply(err, ss.s.opts.MaxLineLength)
		attrs = append(attrs, slog.Int("reply", r.Code), slog.String("text", r.Message), slog.String("error", err.Error()))
		t.log.LogAttrs(context.Background(), slog.LevelWarn, "delivery failed", attrs...)
	default:
		attrs = append(attrs, slog.Int("reply", final.Code), slog.String("text", final.Message))
		t.log.LogAttrs(context.Background(), slog.LevelInfo, "delivery", attrs...)
	}
}

// renewingReader renews the read deadline of our client's connection
// before every read of the body (go-smtp sets it once per command) and
// counts bytes.
type renewingReader struct {
	r       io.Reader
	conn    net.Conn
	timeout time.Duration
	n       int64
}

func (r *renewingReader) Read(p []byte) (int, error) {
	r.conn.SetReadDeadline(time.Now().Add(r.timeout))
	n, err := r.r.Read(p)
	r.n += int64(n)
	return n, err
}
