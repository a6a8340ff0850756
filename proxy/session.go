package proxy

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"sealgate/enforcement"
	"sealgate/upstream"
)

// session is one inbound SMTP session. go-smtp makes a new one at EHLO
// and again after STARTTLS.
type session struct {
	s       *Server
	conn    *smtp.Conn
	remote  netip.Addr
	trusted bool
	user    string
	log     *slog.Logger

	// transaction state
	id       string
	from     string
	mailOpts *smtp.MailOptions
	up       *upstream.Conn
	route    *enforcement.Route // the route of up
	routes   map[string]*enforcement.Route
	rcpts    []string
	started  time.Time

	// lost is set when the upstream connection broke after recipients
	// were accepted: the transaction can no longer succeed, every later
	// RCPT and the DATA get 4xx so that the client sends it again.
	lost error
	// failed remembers why a domain could not be resolved, and
	// failedRoutes why the upstream of a route could not be opened, so
	// that further recipients in the transaction do not try again.
	failed       map[string]error
	failedRoutes []routeFailure

	// recipients accepted on condition of TLS-Required: No
	pending      []pendingRcpt
	pendingRoute *enforcement.Route
	pendingCause *smtp.SMTPError

	// What Data needs of the connection, read at EHLO: with CHUNKING,
	// Data runs in its own goroutine and must not read go-smtp's
	// connection fields while the connection goroutine changes them.
	helo     string
	inTLS    *tls.ConnectionState
	clientNC net.Conn

	// mu guards run, the message being received (see data.go).
	mu  sync.Mutex
	run *dataRun
}

func (s *Server) newSession(c *smtp.Conn) (smtp.Session, error) {
	if r := checkHelo(c.Hostname()); r != nil {
		return nil, r
	}
	remote := netip.Addr{}
	if ta, ok := c.Conn().RemoteAddr().(*net.TCPAddr); ok {
		remote = ta.AddrPort().Addr().Unmap()
	}
	sess := &session{s: s, conn: c, remote: remote, helo: c.Hostname(), clientNC: c.Conn()}
	if cs, ok := c.TLSConnectionState(); ok {
		sess.inTLS = &cs
	}
	for _, p := range s.opts.AllowedNetworks {
		if p.Contains(remote) {
			sess.trusted = true
			break
		}
	}
	sess.log = withOriginalDst(s.log.With("client", remote.String()), c.Conn())
	return sess, nil
}

var _ smtp.AuthSession = (*session)(nil)

func (ss *session) AuthMechanisms() []string {
	if len(ss.s.opts.Users) == 0 {
		return nil
	}
	return []string{sasl.Plain, sasl.Login}
}

func (ss *session) Auth(mech string) (sasl.Server, error) {
	if len(ss.s.opts.Users) == 0 {
		return nil, smtp.ErrAuthUnsupported
	}
	check := func(user, password string) error {
		if !ss.s.opts.Users.Check(user, password) {
			ss.log.Warn("authentication failed", "user", user)
			return errAuthFailed
		}
		ss.user = user
		ss.log = ss.log.With("user", user)
		return nil
	}
	switch mech {
	case sasl.Plain:
		return sasl.NewPlainServer(func(identity, user, password string) error {
			if identity != "" && identity != user {
				return errAuthFailed
			}
			return check(user, password)
		}), nil
	case sasl.Login:
		return newLoginServer(check), nil
	}
	return nil, smtp.ErrAuthUnknownMechanism
}

func (ss *session) Mail(from string, opts *smtp.MailOptions) error {
	if r := checkSender(from); r != nil {
		return r
	}
	ss.endTransaction()
	if opts != nil && opts.RequireTLS {
		if _, ok := ss.conn.TLSConnectionState(); !ok {
			// go-smtp accepts the parameter over cleartext (RFC 8689 §4.1).
			return &smtp.SMTPError{Code: 530, EnhancedCode: smtp.EnhancedCode{5, 7, 10}, Message: "REQUIRETLS needs STARTTLS first"}
		}
	}
	ss.id = newID()
	ss.from = from
	ss.mailOpts = opts
	ss.started = time.Now()
	ss.routes = map[string]*enforcement.Route{}
	ss.failed = map[string]error{}
	return nil
}

func (ss *session) Rcpt(to string, opts *smtp.RcptOptions) error {
	if r := checkRecipient(to); r != nil {
		return r
	}
	if !ss.trusted && ss.user == "" {
		ss.log.Warn("relay denied", "rcpt", to)
		return errRelayDenied
	}
	domain, ok := recipientDomain(to)
	if !ok {
		return errBadAddress
	}
	if err := ss.rcpt(to, domain, opts); err != nil {
		r := Reply(err)
		if r == errInternal {
			ss.log.Error("recipient failed", "rcpt", to, "error", err)
		} else {
			ss.log.Info("recipient refused", "rcpt", to, "domain", domain, "reply", r.Code, "text", r.Message)
		}
		return r
	}
	ss.rcpts = append(ss.rcpts, to)
	return nil
}

func (ss *session) rcpt(to, domain string, opts *smtp.RcptOptions) error {
	if ss.lost != nil {
		return ss.lost
	}
	ctx, cancel := context.WithTimeout(context.Background(), ss.s.opts.UpstreamTimeout)
	defer cancel()
	if len(ss.pending) > 0 {
		return ss.pend(ctx, to, domain, opts, nil)
	}
	route, ok := ss.routes[domain]
	if !ok {
		if err := ss.failed[domain]; err != nil {
			return err
		}
		var err error
		route, err = ss.s.opts.Router.Resolve(ctx, domain)
		if err == nil && ss.mailOpts != nil && ss.mailOpts.RequireTLS {
			route, err = route.RequireTLS()
		}
		if err != nil {
			if ss.canWaive(err) {
				return ss.pend(ctx, to, domain, opts, err)
			}
			ss.failed[domain] = err
			return err
		}
		ss.routes[domain] = route
	}
	if ss.up == nil {
		if err := ss.routeFailed(route); err != nil {
			return err
		}
		up, err := ss.s.opts.Opener.Open(ctx, route)
		if err != nil {
			if ss.canWaive(err) {
				return ss.pend(ctx, to, domain, opts, err)
			}
			ss.failedRoutes = append(ss.failedRoutes, routeFailure{route, err})
			return err
		}
		if err := up.Mail(ss.from, ss.mailOpts); err != nil {
			up.Close()
			return err
		}
		ss.up = up
		ss.route = route
	} else if !route.Equal(ss.route) {
		return otherRoute(domain)
	}
	if err := ss.up.Rcpt(to, opts); err != nil {
		if ss.up.Broken() {
			ss.dropUpstream()
			if len(ss.rcpts) > 0 {
				ss.lost = &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 4, 2},
					Message: domain + ": connection to the MX lost after recipients were accepted; send the message again"}
			}
		}
		return err
	}
	return nil
}

func (ss *session) Reset() { ss.endTransaction() }

func (ss *session) Logout() error {
	ss.endTransaction()
	return nil
}

// endTransaction closes the upstream connection, if any, and forgets the
// transaction. A message still being received (BDAT chunks arrive while
// go-smtp runs Data in its own goroutine) is abandoned: its upstream
// connection is cut without the end-of-data dot.
func (ss *session) endTransaction() {
	ss.abandonData()
	if ss.up != nil {
		ss.up.Close()
		ss.up = nil
	}
	ss.from, ss.mailOpts, ss.route, ss.routes, ss.rcpts = "", nil, nil, nil, nil
	ss.pending, ss.pendingRoute, ss.pendingCause = nil, nil, nil
	ss.lost, ss.failed, ss.failedRoutes = nil, nil, nil
}

// dropUpstream forgets a broken upstream connection.
func (ss *session) dropUpstream() {
	if ss.up != nil {
		ss.up.Close()
		ss.up = nil
	}
}

// recipientDomain returns the lower-cased domain of an address, or false
// when it has none.
func recipientDomain(addr string) (string, bool) {
	i := strings.LastIndexByte(addr, '@')
	if i <= 0 || i == len(addr)-1 {
		return "", false
	}
	d := strings.ToLower(strings.TrimSuffix(addr[i+1:], "."))
	if strings.HasPrefix(d, "[") {
		// Address literals need no policy lookup but cannot be
		// authenticated: refuse them rather than deliver unverified.
		return "", false
	}
	for _, l := range strings.Split(d, ".") {
		if l == "" || len(l) > 63 {
			return "", false
		}
	}
	return d, len(d) <= 253
}

func newID() string {
	var b [6]byte
	rand.Read(b[:])
	return strings.ToUpper(hex.EncodeToString(b[:]))
}

// routeFailure is why the upstream of a route could not be opened.
type routeFailure struct {
	route *enforcement.Route
	err   error
}

// routeFailed returns why the upstream of route could not be opened in
// this transaction, or nil.
func (ss *session) routeFailed(route *enforcement.Route) error {
	for _, f := range ss.failedRoutes {
		if f.route.Equal(route) {
			return f.err
		}
	}
	return nil
}
