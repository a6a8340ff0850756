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
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/emersion/go-smtp"

	"sealgate/enforcement"
	"sealgate/upstream"
)

// Router works out the route for a recipient domain.
type Router interface {
	Resolve(ctx context.Context, domain string) (*enforcement.Route, error)
	// RelaxedRoute is the route for a message with "TLS-Required: No".
	RelaxedRoute(ctx context.Context, domain string) (*enforcement.Route, error)
}

// Opener opens a verified upstream connection for a route.
type Opener interface {
	Open(ctx context.Context, route *enforcement.Route) (*upstream.Conn, error)
}

var (
	_ Router = (*enforcement.Engine)(nil)
	_ Opener = (*upstream.Deliverer)(nil)
)

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
	// client gets 421.
	MaxConnections int
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
	// Now is the clock for Received headers; time.Now if nil.
	Now func() time.Time
}

// Server is the inbound SMTP server.
type Server struct {
	opts Options
	smtp *smtp.Server
	log  *slog.Logger

	mu     sync.Mutex
	active int
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
	log := opts.Log
	if log == nil {
		log = slog.Default()
	}
	s := &Server{opts: opts, log: log}
	srv := smtp.NewServer(smtp.BackendFunc(s.newSession))
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

// limitListener answers 421 to connections beyond the limit.
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
		l.s.mu.Lock()
		full := l.s.active >= l.s.opts.MaxConnections
		if !full {
			l.s.active++
		}
		l.s.mu.Unlock()
		if full {
			l.s.log.Warn("connection refused: too many sessions", "remote", c.RemoteAddr().String(), "limit", l.s.opts.MaxConnections)
			c.SetWriteDeadline(time.Now().Add(5 * time.Second))
			fmt.Fprintf(c, "421 4.3.2 %s too many connections, try again later\r\n", l.s.opts.Hostname)
			c.Close()
			continue
		}
		return &countedConn{Conn: c, s: l.s}, nil
	}
}

type countedConn struct {
	net.Conn
	s    *Server
	once sync.Once
}

func (c *countedConn) Close() error {
	c.once.Do(func() {
		c.s.mu.Lock()
		c.s.active--
		c.s.mu.Unlock()
	})
	return c.Conn.Close()
}
