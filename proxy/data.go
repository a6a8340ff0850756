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
	"sealgate/upstream"
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
	up        *upstream.Conn
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
func (r *dataRun) attach(up *upstream.Conn) bool {
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
func (r *dataRun) finish() *upstream.Conn {
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

// dataTx is what Data needs of the transaction, copied when it starts so
// that the connection goroutine may go on (and start another
// transaction) once the run is abandoned.
type dataTx struct {
	run *dataRun
	ctx context.Context

	id, from     string
	mailOpts     *smtp.MailOptions
	rcpts        []string
	up           *upstream.Conn
	pending      []pendingRcpt
	pendingRoute *enforcement.Route
	pendingCause *smtp.SMTPError
	started      time.Time
	user         string
	log          *slog.Logger
}

var errNoRecipients = &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 5, 1}, Message: "no valid recipients"}

// beginData hands the transaction's upstream connection to a new run.
// In the BDAT case it runs on go-smtp's goroutine before the first read
// of the body, while the connection goroutine waits for that read.
func (ss *session) beginData(r io.Reader) (*dataTx, error) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if ss.lost != nil {
		return nil, ss.lost
	}
	if ss.up == nil && len(ss.pending) == 0 {
		return nil, errNoRecipients
	}
	ctx, cancel := context.WithCancel(context.Background())
	pipe, _ := r.(*io.PipeReader)
	tx := &dataTx{
		run: &dataRun{up: ss.up, cancel: cancel, done: make(chan struct{}), pipe: pipe},
		ctx: ctx,
		id:  ss.id, from: ss.from, mailOpts: ss.mailOpts,
		rcpts:   append([]string(nil), ss.rcpts...),
		up:      ss.up,
		pending: append([]pendingRcpt(nil), ss.pending...), pendingRoute: ss.pendingRoute, pendingCause: ss.pendingCause,
		started: ss.started, user: ss.user, log: ss.log,
	}
	ss.up = nil
	ss.run = tx.run
	return tx, nil
}

// endData returns the upstream connection of a run that was not
// abandoned to the transaction, which Reset then closes.
func (ss *session) endData(tx *dataTx) {
	defer close(tx.run.done)
	up := tx.run.finish()
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if ss.run != tx.run {
		// Abandoned: the transaction is gone, the connection closed.
		return
	}
	ss.run = nil
	if up == nil {
		return
	}
	if up.Broken() {
		up.Close()
		return
	}
	ss.up = up
}

// abandonData abandons the message being received, if any.
func (ss *session) abandonData() {
	ss.mu.Lock()
	run := ss.run
	ss.run = nil
	ss.mu.Unlock()
	if run != nil {
		run.abandon()
		run.wait()
	}
}

func (ss *session) Data(r io.Reader) error {
	tx, err := ss.beginData(r)
	if err != nil {
		return err
	}
	defer ss.endData(tx)
	check := newBodyReader(r)
	check.atEOF = func() error {
		if peerClosed(ss.clientNC) {
			return errClientGone
		}
		return nil
	}
	body := &renewingReader{r: check, conn: ss.clientNC, timeout: ss.s.opts.DataTimeout}
	var in io.Reader = body
	if tx.up == nil {
		if in, err = ss.openPending(tx, in); err != nil {
			tx.log.Info("conditional recipients deferred", "reason", err.Error())
			return Reply(err)
		}
	}
	up := tx.up
	info := receivedInfo{
		Helo:       ss.helo,
		RemoteIP:   ss.remote.String(),
		By:         ss.s.opts.Hostname,
		ID:         tx.id,
		InboundTLS: ss.inTLS,
		Authed:     tx.user != "",
		Upstream:   up.Host.Name,
		UpTLS:      up.TLS,
		Verified:   up.Verdict.Detail,
		Date:       ss.s.opts.Now(),
	}
	if len(tx.rcpts) == 1 {
		info.For = tx.rcpts[0]
	}
	final, err := up.Data(info.header(), in)
	ss.logDelivery(tx, up, final, err, body.n)
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

func (ss *session) logDelivery(tx *dataTx, up *upstream.Conn, final *smtp.SMTPError, err error, n int64) {
	attrs := []slog.Attr{
		slog.String("id", tx.id),
		slog.String("domain", up.Route.Domain),
		slog.String("mx", up.Host.Name),
		slog.String("ip", up.Addr),
		slog.String("tls_version", tls.VersionName(up.TLS.Version)),
		slog.String("cipher", tls.CipherSuiteName(up.TLS.CipherSuite)),
		slog.String("policy", up.Host.Req.Describe()),
		slog.Bool("authenticated", up.Verdict.Authenticated),
		slog.String("verification", up.Verdict.Detail),
		slog.Int("rcpts", len(tx.rcpts)),
		slog.Int64("bytes", n),
		slog.Duration("duration", time.Since(tx.started)),
	}
	switch {
	case err != nil:
		r := dataReply(err, ss.s.opts.MaxLineLength)
		attrs = append(attrs, slog.Int("reply", r.Code), slog.String("text", r.Message), slog.String("error", err.Error()))
		tx.log.LogAttrs(context.Background(), slog.LevelWarn, "delivery failed", attrs...)
	default:
		attrs = append(attrs, slog.Int("reply", final.Code), slog.String("text", final.Message))
		tx.log.LogAttrs(context.Background(), slog.LevelInfo, "delivery", attrs...)
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
