// Package upstreamtest provides fakes for the outbound side of an SMTP relay,
// in the style of net/http/httptest: a recording MX server built on go-smtp's
// server (RFC 5321) with STARTTLS (RFC 3207), implicit TLS (RFC 8314), AUTH
// PLAIN (RFC 4954, RFC 4616), REQUIRETLS (RFC 8689), DSN (RFC 3461),
// SMTPUTF8 (RFC 6531), SIZE (RFC 1870) and CHUNKING (RFC 3030), with fault
// switches for every stage; and a STRIPTLS man in the middle that removes
// STARTTLS from EHLO replies (the downgrade RFC 3207 §6 warns of, which
// RFC 7672 and RFC 8461 exist to defeat).
//
// Every fake binds before it returns, records what it saw, and is closed by
// t.Cleanup; Close waits for its connection handlers to finish.
//
//	ca := certstest.NewCA(t, "root")
//	leaf := ca.Leaf("mx1.example.test")
//	mx := upstreamtest.NewMX(t, upstreamtest.MXOptions{Certificate: &leaf})
//	... deliver to mx.Addr() with RootCAs: ca.Pool() ...
//	if msgs := mx.Messages(); len(msgs) != 1 { ... }
package upstreamtest

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
)

// Stage is a step of the SMTP conversation, used to place delays.
type Stage int

// The stages, in conversation order.
const (
	StageGreeting Stage = iota // before the 220 greeting (after implicit TLS)
	StageEHLO                  // before answering EHLO or HELO
	StageSTARTTLS              // before answering STARTTLS
	StageMail                  // before answering MAIL FROM
	StageRcpt                  // before answering RCPT TO
	StageData                  // after the body arrived, before the final reply

	// Stages added later; their place in the conversation is in the
	// comment.
	StageHandshake   // after the 220 reply to STARTTLS, before the TLS handshake
	StageDataCommand // before answering the DATA command (354)
)

var stageNames = [...]string{"greeting", "EHLO", "STARTTLS", "MAIL", "RCPT", "DATA", "TLS handshake", "DATA command"}

func (s Stage) String() string {
	if s < 0 || int(s) >= len(stageNames) {
		return fmt.Sprintf("unknown(%d)", int(s))
	}
	return stageNames[s]
}

// Extensions chooses the EHLO capabilities beyond those go-smtp always
// offers (PIPELINING, 8BITMIME, ENHANCEDSTATUSCODES, CHUNKING, SIZE).
type Extensions struct {
	// REQUIRETLS is advertised (after TLS only) and accepted on MAIL.
	REQUIRETLS bool
	// DSN enables RET, ENVID, NOTIFY and ORCPT.
	DSN bool
	// SMTPUTF8 enables the SMTPUTF8 MAIL parameter.
	SMTPUTF8 bool
	// Size, when positive, is advertised as "SIZE n" and enforced (MAIL
	// SIZE= above it gets 552, a longer body 552 too).
	Size int64
	// Hide lists keywords removed from every EHLO reply, e.g. "SIZE",
	// "CHUNKING", "PIPELINING" or even "STARTTLS" (then STARTTLS still works
	// when a client sends it unannounced). Parameters stay accepted.
	Hide []string
}

// MXOptions configures NewMX. The zero value is a cleartext-only MX on
// 127.0.0.1 with a kernel-assigned port that accepts everything.
type MXOptions struct {
	// Addr is the listen address; default "127.0.0.1:0". For several MX
	// hosts on one shared port use e.g. "127.0.0.2:PORT", "127.0.0.3:PORT".
	Addr string
	// Hostname is used in the greeting and EHLO reply; default "mx.test".
	Hostname string

	// Certificate enables TLS. Nil means STARTTLS is neither advertised
	// nor accepted (answered 502 5.5.1).
	Certificate *tls.Certificate
	// ImplicitTLS makes the server speak TLS from the first byte (port 465
	// style) instead of offering STARTTLS. It needs Certificate.
	ImplicitTLS bool
	// MinVersion and MaxVersion bound the TLS versions; zero means Go's
	// defaults.
	MinVersion, MaxVersion uint16
	// RequireClientCert makes the handshake fail unless the client presents
	// a certificate, verified against ClientCAs when that is set. ClientCAs
	// alone verifies a certificate if one is given.
	RequireClientCert bool
	ClientCAs         *x509.CertPool

	Extensions Extensions
	// AuthUsers, when not empty, enables AUTH PLAIN after TLS with these
	// user names and passwords. AUTH before TLS is answered 538 5.7.11.
	AuthUsers map[string]string

	// GreetingReply replaces the 220 greeting; the connection is closed
	// right after it.
	GreetingReply *smtp.SMTPError
	// EHLOReply answers every EHLO and HELO.
	EHLOReply *smtp.SMTPError
	// STARTTLSReply answers STARTTLS instead of 220 (e.g. 454 4.7.0) while
	// STARTTLS stays advertised. Needs Certificate to matter.
	STARTTLSReply *smtp.SMTPError
	// MailReply answers every MAIL FROM.
	MailReply *smtp.SMTPError
	// RcptReply answers every RCPT TO not named in RejectRcpt.
	RcptReply *smtp.SMTPError
	// RejectRcpt answers RCPT TO for the addresses it names (compared
	// case-insensitively).
	RejectRcpt map[string]*smtp.SMTPError
	// DataReply is the final reply to the message body.
	DataReply *smtp.SMTPError
	// DropInData, when positive, closes the TCP connection without a reply
	// once that many bytes of a message body (as sent, dot-stuffed) have
	// arrived in a transaction.
	DropInData int64
	// Delay holds the time to wait at a stage before answering.
	Delay map[Stage]time.Duration

	// Hangup closes the TCP connection without a reply at every stage set
	// to true: StageGreeting instead of the greeting; StageEHLO,
	// StageSTARTTLS, StageMail, StageRcpt and StageDataCommand when the
	// command arrives; StageHandshake after the 220 reply to STARTTLS,
	// before the TLS handshake; StageData once the whole body arrived,
	// instead of the final reply (the message is recorded, not Accepted).
	// A hangup is recorded in ConnInfo.HungUp.
	Hangup map[Stage]bool
	// DataCommandReply answers every DATA command instead of 354.
	DataCommandReply *smtp.SMTPError
	// DropInDataReply, with DropInData, is written just before the
	// connection is closed in the middle of the body (a server giving up
	// with, say, 421).
	DropInDataReply *smtp.SMTPError
	// CloseOn421 closes the connection right after any 421 reply the MX
	// writes, as RFC 5321 §3.8 has servers do; without it a 421 of a
	// fault switch leaves the connection open.
	CloseOn421 bool
	// MaxLineLength bounds command and body lines (go-smtp's 2000 if 0).
	MaxLineLength int
	// BeforeDataReply, when set, is called once a whole body arrived and
	// was recorded (after Delay[StageData]), right before the final reply
	// is written; it runs on the connection's handler goroutine, so the
	// reply waits for it. Crash tests stop the client in it.
	BeforeDataReply func(Message)
}

// MX is a fake SMTP server that records every connection and message.
type MX struct {
	t         testing.TB
	opts      MXOptions
	ln        net.Listener
	srv       *smtp.Server
	tlsConfig *tls.Config

	ctx       context.Context
	cancel    context.CancelFunc
	serveDone chan struct{}
	closeOnce sync.Once

	mu       sync.Mutex
	closed   bool
	live     map[*mxConn]struct{}
	conns    []ConnInfo
	messages []Message
}

const (
	handshakeTimeout = 10 * time.Second
	closeTimeout     = 10 * time.Second
)

// NewMX starts a fake MX listening on opts.Addr and registers its Close with
// t.Cleanup. Invalid options or a failed bind end the test.
func NewMX(t testing.TB, opts MXOptions) *MX {
	t.Helper()
	if opts.Addr == "" {
		opts.Addr = "127.0.0.1:0"
	}
	if opts.Hostname == "" {
		opts.Hostname = "mx.test"
	}
	if opts.ImplicitTLS && opts.Certificate == nil {
		t.Fatalf("upstreamtest: ImplicitTLS needs a Certificate")
	}
	ln, err := net.Listen("tcp", opts.Addr)
	if err != nil {
		t.Fatalf("upstreamtest: listen on %s: %v", opts.Addr, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	mx := &MX{
		t:         t,
		opts:      opts,
		ln:        ln,
		ctx:       ctx,
		cancel:    cancel,
		serveDone: make(chan struct{}),
		live:      make(map[*mxConn]struct{}),
		tlsConfig: serverTLSConfig(opts),
	}

	srv := smtp.NewServer(backend{mx: mx})
	srv.Domain = opts.Hostname
	srv.ErrorLog = testLogger{t: t, prefix: "upstreamtest MX " + ln.Addr().String() + ": "}
	srv.ReadTimeout = time.Minute
	srv.WriteTimeout = 30 * time.Second
	srv.MaxMessageBytes = opts.Extensions.Size
	if opts.MaxLineLength > 0 {
		srv.MaxLineLength = opts.MaxLineLength
	}
	srv.EnableREQUIRETLS = opts.Extensions.REQUIRETLS
	srv.EnableDSN = opts.Extensions.DSN
	srv.EnableSMTPUTF8 = opts.Extensions.SMTPUTF8
	// The fake, not go-smtp, knows about TLS: AuthMechanisms hides AUTH
	// before it.
	srv.AllowInsecureAuth = true
	mx.srv = srv

	go func() {
		defer close(mx.serveDone)
		_ = srv.Serve(listener{Listener: ln, mx: mx})
	}()
	t.Cleanup(mx.Close)
	return mx
}

func serverTLSConfig(opts MXOptions) *tls.Config {
	if opts.Certificate == nil {
		return nil
	}
	cfg := &tls.Config{
		Certificates: []tls.Certificate{*opts.Certificate},
		MinVersion:   opts.MinVersion,
		MaxVersion:   opts.MaxVersion,
		ClientCAs:    opts.ClientCAs,
	}
	switch {
	case opts.RequireClientCert && opts.ClientCAs != nil:
		cfg.ClientAuth = tls.RequireAndVerifyClientCert
	case opts.RequireClientCert:
		cfg.ClientAuth = tls.RequireAnyClientCert
	case opts.ClientCAs != nil:
		cfg.ClientAuth = tls.VerifyClientCertIfGiven
	}
	return cfg
}

// Addr returns the address the MX listens on, "host:port".
func (mx *MX) Addr() string { return mx.ln.Addr().String() }

// Port returns the TCP port the MX listens on.
func (mx *MX) Port() int { return mx.ln.Addr().(*net.TCPAddr).Port }

// Hostname returns the name the MX greets with.
func (mx *MX) Hostname() string { return mx.opts.Hostname }

// Connections returns the number of TCP connections accepted so far.
func (mx *MX) Connections() int {
	mx.mu.Lock()
	defer mx.mu.Unlock()
	return len(mx.conns)
}

// Conns returns a copy of the record of every connection, in accept order.
func (mx *MX) Conns() []ConnInfo {
	mx.mu.Lock()
	defer mx.mu.Unlock()
	out := make([]ConnInfo, len(mx.conns))
	for i, c := range mx.conns {
		out[i] = c.clone()
	}
	return out
}

// Commands returns every command line of every connection, in order.
func (mx *MX) Commands() []string {
	mx.mu.Lock()
	defer mx.mu.Unlock()
	var out []string
	for _, c := range mx.conns {
		out = append(out, c.Commands...)
	}
	return out
}

// EHLONames returns the names of all EHLO and HELO commands, in order.
func (mx *MX) EHLONames() []string {
	mx.mu.Lock()
	defer mx.mu.Unlock()
	var out []string
	for _, c := range mx.conns {
		out = append(out, c.EHLO...)
	}
	return out
}

// SawMailFrom reports whether any client ever sent a MAIL command, in
// cleartext or under TLS, whatever the reply.
func (mx *MX) SawMailFrom() bool {
	return slices.ContainsFunc(mx.Commands(), func(l string) bool {
		return len(l) >= 4 && strings.EqualFold(l[:4], "MAIL")
	})
}

// SawCleartextTransaction reports whether any client ever sent MAIL, RCPT,
// DATA or BDAT before a completed TLS handshake, whatever the reply.
func (mx *MX) SawCleartextTransaction() bool {
	mx.mu.Lock()
	defer mx.mu.Unlock()
	for _, c := range mx.conns {
		if slices.ContainsFunc(c.Cleartext, isTransactionCommand) {
			return true
		}
	}
	return false
}

func isTransactionCommand(line string) bool {
	verb, _, _ := strings.Cut(line, " ")
	switch strings.ToUpper(verb) {
	case "MAIL", "RCPT", "DATA", "BDAT":
		return true
	}
	return false
}

// Messages returns a copy of every transaction that reached the body, in
// order, including rejected and dropped ones (see Message.Accepted).
func (mx *MX) Messages() []Message {
	mx.mu.Lock()
	defer mx.mu.Unlock()
	out := make([]Message, len(mx.messages))
	for i, m := range mx.messages {
		out[i] = m.clone()
	}
	return out
}

// WaitIdle waits until no connection is open, so that every handler has
// finished and recorded what it saw; it fails the test after timeout. Call
// it after the client hung up and before reading the record of a failure
// the client may notice first, such as a handshake the server rejected.
func (mx *MX) WaitIdle(timeout time.Duration) {
	mx.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		mx.mu.Lock()
		n := len(mx.live)
		mx.mu.Unlock()
		if n == 0 {
			return
		}
		if time.Now().After(deadline) {
			mx.t.Fatalf("upstreamtest: MX %s: %d connections still open after %v", mx.Addr(), n, timeout)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Close stops the MX: it closes the listener and every connection, then
// waits for all connection handlers to return. It is safe to call more than
// once.
func (mx *MX) Close() {
	mx.closeOnce.Do(func() {
		mx.mu.Lock()
		mx.closed = true
		live := make([]*mxConn, 0, len(mx.live))
		for c := range mx.live {
			live = append(live, c)
		}
		mx.mu.Unlock()

		_ = mx.ln.Close()
		for _, c := range live {
			_ = c.raw.Close()
		}
		// Wake delayed handlers only now, so they cannot answer.
		mx.cancel()
		<-mx.serveDone
		// Serve has returned, so go-smtp started every handler it will;
		// Shutdown now only waits for them.
		ctx, cancel := context.WithTimeout(context.Background(), closeTimeout)
		defer cancel()
		if err := mx.srv.Shutdown(ctx); errors.Is(err, context.DeadlineExceeded) {
			mx.t.Errorf("upstreamtest: MX %s: connection handlers still running after %v", mx.Addr(), closeTimeout)
		}
	})
}

// hangup reports whether the connection is to be closed at stage.
func (mx *MX) hangup(stage Stage) bool { return mx.opts.Hangup[stage] }

// sleep waits for the delay configured for stage, or until Close.
func (mx *MX) sleep(stage Stage) {
	d := mx.opts.Delay[stage]
	if d <= 0 {
		return
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-timer.C:
	case <-mx.ctx.Done():
	}
}

// track registers a new connection; after Close it closes it at once.
func (mx *MX) track(raw net.Conn) *mxConn {
	mx.mu.Lock()
	defer mx.mu.Unlock()
	c := newMXConn(mx, raw, len(mx.conns))
	mx.conns = append(mx.conns, ConnInfo{RemoteAddr: raw.RemoteAddr().String()})
	if mx.closed {
		_ = raw.Close()
	} else {
		mx.live[c] = struct{}{}
	}
	return c
}

func (mx *MX) untrack(c *mxConn) {
	mx.mu.Lock()
	defer mx.mu.Unlock()
	delete(mx.live, c)
}

// update changes the record of connection id under the lock.
func (mx *MX) update(id int, f func(*ConnInfo)) {
	mx.mu.Lock()
	defer mx.mu.Unlock()
	f(&mx.conns[id])
}

func (mx *MX) addMessage(m Message) {
	mx.mu.Lock()
	defer mx.mu.Unlock()
	mx.messages = append(mx.messages, m)
}

// listener wraps every accepted connection in an mxConn.
type listener struct {
	net.Listener
	mx *MX
}

func (l listener) Accept() (net.Conn, error) {
	raw, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return l.mx.track(raw), nil
}

// testLogger sends go-smtp's error log to the test log.
type testLogger struct {
	t      testing.TB
	prefix string
}

func (l testLogger) Printf(format string, v ...any) { l.t.Logf(l.prefix+format, v...) }
func (l testLogger) Println(v ...any)               { l.t.Log(append([]any{l.prefix}, v...)...) }
