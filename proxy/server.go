// Package proxy is the inbound side of sealgate: an SMTP server (RFC 5321)
// for legacy mail servers with STARTTLS (RFC 3207), AUTH PLAIN and LOGIN
// (RFC 4954) under TLS, PIPELINING, 8BITMIME, SMTPUTF8 (RFC 6531), SIZE,
// CHUNKING (RFC 3030), DSN (RFC 3461), ENHANCEDSTATUSCODES (RFC 2034,
// RFC 3463) and REQUIRETLS with the TLS-Required header field (RFC 8689).
// It relays each transaction synchronously: it never says 250 to DATA
// before the upstream MX did.
package proxy

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"time"

	"github.com/emersion/go-smtp"

	"sealgate/enforcement"
)

// Router works out the route for a recipient domain.
type Router interface {
	Resolve(ctx context.Context, domain string) (*enforcement.Route, error)
	// RelaxedRoute is the route for a message with "TLS-Required: No".
	RelaxedRoute(ctx context.Context, domain string) (*enforcement.Route, error)
}

var _ Router = (*enforcement.Engine)(nil)

// Options configure a Server. Zero values take the documented defaults.
type Options struct {
	// Hostname is the greeting and Received name (required).
	Hostname string
	// AllowedNetworks may relay without AUTH.
	AllowedNetworks []netip.Prefix
	// Users enables AUTH (under TLS only) when non-empty.
	Users Users
	// TLSConfig enables inbound STARTTLS when non-nil.
	TLSConfig *tls.Config
	// MaxConnections bounds concurrent sessions (100 if 0); the next
	// client gets 421 4.3.2.
	MaxConnections int
	// Limits bound what one client can take: per address, idle, slow,
	// password guessing.
	Limits Limits
	// MaxMessageBytes is the SIZE limit (50 MiB if 0).
	MaxMessageBytes int64
	// MaxRecipients per transaction (100 if 0).
	MaxRecipients int
	// MaxLineLength bounds a line of a command or of a DATA body, CRLF
	// included (64 KiB if 0). Longer body lines are refused for good
	// (550 5.6.0), never deferred: a retry could not succeed.
	MaxLineLength int
	// CommandTimeout bounds the wait for each command (5 minutes if 0).
	CommandTimeout time.Duration
	// DataTimeout bounds the wait for each chunk of the body (10 minutes
	// if 0).
	DataTimeout time.Duration
	// UpstreamTimeout bounds route resolution and opening the upstream
	// connection for one recipient (2 minutes if 0).
	UpstreamTimeout time.Duration
	// HonorTLSRequiredNo lets a "TLS-Required: No" header field (RFC 8689
	// §5) waive a domain's TLS policy, never the encrypt floor.
	HonorTLSRequiredNo bool

	Router Router
	Opener Opener
	Log    *slog.Logger
	// Metrics counts refused connections; nothing if nil.
	Metrics Recorder
	// Intercepts counts connections the kernel redirected to a listener
	// (see intercept.go); nothing if nil.
	Intercepts InterceptRecorder
	// OwnSockets, if not nil, recognises sealgate's own upstream
	// connections redirected back to it: they get 421 4.3.0, never a
	// session.
	OwnSockets OwnSockets
	// Outcomes records delivered and deferred messages per recipient
	// domain; nothing if nil.
	Outcomes Outcomes
	// Now is the clock for Received headers; time.Now if nil.
	Now func() time.Time
}

// Server is the inbound SMTP server.
type Server struct {
	opts Options
	smtp *smtp.Server
	log  *slog.Logger

	conns     *connTable
	penalties *penaltyBox
	authSem   chan struct{}
	refusals  *rateLog
}

// New makes a server from opts.
func New(opts Options) *Server {
	if opts.MaxConnections <= 0 {
		opts.MaxConnections = 100
	}
	if opts.MaxMessageBytes <= 0 {
		opts.MaxMessageBytes = 50 << 20
	}
	if opts.MaxRecipients <= 0 {
		opts.MaxRecipients = 100
	}
	if opts.MaxLineLength <= 0 {
		opts.MaxLineLength = 64 << 10
	}
	if opts.CommandTimeout <= 0 {
		opts.CommandTimeout = 5 * time.Minute
	}
	if opts.DataTimeout <= 0 {
		opts.DataTimeout = 10 * time.Minute
	}
	if opts.UpstreamTimeout <= 0 {
		opts.UpstreamTimeout = 2 * time.Minute
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Metrics == nil {
		opts.Metrics = noRecorder{}
	}
	if opts.Outcomes == nil {
		opts.Outcomes = noOutcomes{}
	}
	opts.Limits = opts.Limits.withDefaults(opts.MaxConnections)
	log := opts.Log
	if log == nil {
		log = slog.Default()
	}
	s := &Server{
		opts:      opts,
		log:       log,
		conns:     newConnTable(opts.MaxConnections, opts.Limits),
		penalties: newPenaltyBox(opts.Limits, time.Now),
		authSem:   make(chan struct{}, opts.Limits.AuthConcurrency),
		refusals:  newRateLog(opts.Limits.RefusalLogInterval, opts.Limits.TrackedAddresses, time.Now),
	}
	srv := smtp.NewServer(smtp.BackendFunc(s.newGuardedSession))
	srv.Domain = opts.Hostname
	srv.MaxMessageBytes = opts.MaxMessageBytes
	srv.MaxRecipients = opts.MaxRecipients
	srv.MaxLineLength = opts.MaxLineLength
	srv.ReadTimeout = opts.CommandTimeout
	srv.WriteTimeout = opts.CommandTimeout
	srv.TLSConfig = opts.TLSConfig
	srv.EnableSMTPUTF8 = true
	srv.EnableDSN = true
	srv.EnableREQUIRETLS = true // advertised under TLS only
	srv.ErrorLog = errorLog{log}
	s.smtp = srv
	return s
}

// Serve accepts sessions on l until Close or Shutdown.
func (s *Server) Serve(l net.Listener) error {
	if err := checkChunkCount(); err != nil {
		return err
	}
	return s.smtp.Serve(&limitListener{Listener: l, s: s})
}

// Close stops the server and drops every session.
func (s *Server) Close() error { return s.smtp.Close() }

// Shutdown stops accepting and waits for sessions to end, or ctx.
func (s *Server) Shutdown(ctx context.Context) error { return s.smtp.Shutdown(ctx) }

// errorLog routes go-smtp's messages (including a panic's stack) to slog.
type errorLog struct{ l *slog.Logger }

func (e errorLog) Printf(format string, v ...any) { e.l.Error(fmt.Sprintf(format, v...)) }
func (e errorLog) Println(v ...any)               { e.l.Error(fmt.Sprint(v...)) }

// limitListener admits connections within the limits (in all, outside
// the allowed networks, per address) and answers 421 to the others
// without starting a session.
type limitListener struct {
	net.Listener
	s *Server
}

func (l *limitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if g := l.s.admit(l.s.intercept(c, l.Listener.Addr())); g != nil {
			return g, nil
		}
	}
}

// admit wraps an accepted connection in its guard, or refuses it and
// returns nil.
func (s *Server) admit(c net.Conn) *guardConn {
	addr, key := remoteKey(c)
	trusted := s.allowed(addr)
	reason, ok := s.conns.admit(key, trusted)
	if ok {
		release := func() { s.conns.release(key, trusted) }
		return newGuardConn(c, s.opts, func(why string) { s.refused(why, key, s.log) }, release)
	}
	s.refused(reason, key, s.log)
	text := "4.3.2 " + s.opts.Hostname + " too many connections, try again later"
	if reason == ReasonPerAddress {
		text = "4.7.0 " + s.opts.Hostname + " too many connections from your address, try again later"
	}
	c.SetWriteDeadline(time.Now().Add(time.Second))
	io.WriteString(c, "421 "+text+"\r\n")
	c.Close()
	return nil
}

// allowed reports whether addr is in the allowed networks.
func (s *Server) allowed(addr netip.Addr) bool {
	for _, p := range s.opts.AllowedNetworks {
		if p.Contains(addr) {
			return true
		}
	}
	return false
}

// refused counts a refused or cut connection and logs it, at most once a
// while per address and reason.
func (s *Server) refused(reason string, key netip.Prefix, log *slog.Logger) {
	s.opts.Metrics.ConnectionRefused(reason)
	msg := "connection refused"
	switch reason {
	case ReasonIdle, ReasonSlow:
		msg = "session cut"
	case ReasonAuth:
		msg = "authentication locked out"
	}
	client := key.String()
	if key.Addr().Is4() {
		client = key.Addr().String()
	}
	s.refusals.warn(log, reason+" "+client, msg, "reason", reason, "client", client)
}

// newGuardedSession makes a session whose progress and AUTH attempts its
// connection's guard watches.
func (s *Server) newGuardedSession(c *smtp.Conn) (smtp.Session, error) {
	sess, err := s.newSession(c)
	if err != nil {
		return nil, err
	}
	g := guardOf(c.Conn())
	inner, ok := sess.(smtp.AuthSession)
	if g == nil || !ok {
		return sess, nil
	}
	_, key := remoteKey(c.Conn())
	return &guardedSession{inner: inner, g: g, s: s, key: key, log: s.log}, nil
}
