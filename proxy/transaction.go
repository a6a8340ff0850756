package proxy

import (
	"context"
	"crypto/tls"
	"io"
	"log/slog"
	"time"

	"github.com/emersion/go-smtp"

	"sealgate/enforcement"
	"sealgate/upstream"
)

// Upstream is an open, verified upstream connection as the inbound
// transaction uses it. Upstream replies come back as *smtp.SMTPError,
// sealgate's own failures as *enforcement.Failure.
type Upstream interface {
	Mail(from string, opts *smtp.MailOptions) error
	Rcpt(to string, opts *smtp.RcptOptions) error
	// Data streams the message after header and returns the MX's final
	// reply; it never completes the message when reading r fails.
	Data(header []byte, r io.Reader) (*smtp.SMTPError, error)
	// Close ends the connection with QUIT, or closes a broken one. It
	// must not run while Data does.
	Close() error
	// Release ends a transaction that ended cleanly: the connection
	// may serve a later one (a pool), else it is closed.
	Release()
	// Reused reports whether the connection served an earlier
	// transaction.
	Reused() bool
	// Abort cuts the connection at once, sending nothing; safe while
	// Data runs.
	Abort()
	Broken() bool
	Peer() Peer
}

// Peer is where an upstream connection goes and how it was verified.
type Peer struct {
	Route   *enforcement.Route
	Host    enforcement.Host
	Addr    string
	TLS     tls.ConnectionState
	Verdict enforcement.Verdict
}

// Opener opens a verified upstream connection for a route.
type Opener interface {
	Open(ctx context.Context, route *enforcement.Route) (Upstream, error)
}

// Deliverer makes the Opener of upstream connections from d.
func Deliverer(d *upstream.Deliverer) Opener { return delivererOpener{d} }

type delivererOpener struct{ d *upstream.Deliverer }

func (o delivererOpener) Open(ctx context.Context, route *enforcement.Route) (Upstream, error) {
	c, err := o.d.Open(ctx, route)
	if err != nil {
		return nil, err
	}
	return conn{c}, nil
}

// conn is an *upstream.Conn as an Upstream.
type conn struct{ *upstream.Conn }

func (c conn) Peer() Peer {
	return Peer{Route: c.Route, Host: c.Host, Addr: c.Addr, TLS: c.TLS, Verdict: c.Verdict}
}

var _ Upstream = conn{}

// transaction is one inbound mail transaction, from MAIL to the end of the
// message: the routes of its recipients, the one upstream connection they
// share, and what failed. It has no socket of its own, so its rules
// (recipients of equal routes share, others get 452 4.5.3, failures are
// remembered, a connection lost after recipients were accepted fails the
// rest) are tested with a fake Router and Opener.
type transaction struct {
	router  Router
	opener  Opener
	timeout time.Duration
	// waive lets "TLS-Required: No" waive a policy failure.
	waive bool
	log   *slog.Logger

	id       string
	from     string
	mailOpts *smtp.MailOptions
	helo     string // the client's EHLO name at MAIL
	started  time.Time
	user     string

	routes map[string]*enforcement.Route
	// failed remembers why a domain could not be resolved, and
	// failedRoutes why the upstream of a route could not be opened, so
	// that further recipients do not try again.
	failed       map[string]error
	failedRoutes []routeFailure
	// route is the route of up, the transaction's upstream connection.
	route *enforcement.Route
	up    Upstream
	rcpts []string
	// lost is set when the upstream connection broke after recipients
	// were accepted: the transaction can no longer succeed, every later
	// RCPT and the DATA get 4xx so that the client sends it again.
	lost error

	// recipients accepted on condition of TLS-Required: No
	pending      []pendingRcpt
	pendingRoute *enforcement.Route
	pendingCause *smtp.SMTPError
	// pendingErr is the failure behind pendingCause.
	pendingErr error
}

// routeFailure is why the upstream of a route could not be opened.
type routeFailure struct {
	route *enforcement.Route
	err   error
}

// routeFailed returns why the upstream of route could not be opened in
// this transaction, or nil.
func (t *transaction) routeFailed(route *enforcement.Route) error {
	for _, f := range t.failedRoutes {
		if f.route.Equal(route) {
			return f.err
		}
	}
	return nil
}

// rcpt adds a recipient of domain: it resolves the domain's route, opens
// the upstream connection for the first recipient (MAIL FROM included),
// and sends RCPT TO. Errors are replies to translate with Reply.
func (t *transaction) rcpt(to, domain string, opts *smtp.RcptOptions) error {
	err := t.addRcpt(to, domain, opts)
	if err == nil {
		t.rcpts = append(t.rcpts, to)
	}
	return err
}

func (t *transaction) addRcpt(to, domain string, opts *smtp.RcptOptions) error {
	if t.lost != nil {
		return t.lost
	}
	ctx, cancel := context.WithTimeout(context.Background(), t.timeout)
	defer cancel()
	if len(t.pending) > 0 {
		return t.pend(ctx, to, domain, opts, nil)
	}
	route, ok := t.routes[domain]
	if !ok {
		if err := t.failed[domain]; err != nil {
			return err
		}
		var err error
		route, err = t.router.Resolve(ctx, domain)
		if err == nil && t.mailOpts != nil && t.mailOpts.RequireTLS {
			route, err = route.RequireTLS()
		}
		if err != nil {
			if t.canWaive(err) {
				return t.pend(ctx, to, domain, opts, err)
			}
			t.failed[domain] = err
			return err
		}
		t.routes[domain] = route
	}
	if t.up == nil {
		if err := t.routeFailed(route); err != nil {
			return err
		}
		up, err := t.open(ctx, route)
		if err != nil {
			if t.canWaive(err) {
				return t.pend(ctx, to, domain, opts, err)
			}
			t.failedRoutes = append(t.failedRoutes, routeFailure{route, err})
			return err
		}
		t.up, t.route = up, route
	} else if !route.Equal(t.route) {
		return otherRoute(domain)
	}
	if err := t.up.Rcpt(to, opts); err != nil {
		if t.up.Broken() {
			t.dropUpstream()
			if len(t.rcpts) > 0 {
				t.lost = &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 4, 2},
					Message: domain + ": connection to the MX lost after recipients were accepted; send the message again"}
			}
		}
		return err
	}
	return nil
}

// open opens the upstream connection of route and sends MAIL FROM. A
// connection from an earlier transaction that turns out dead at MAIL is
// replaced by a new one, with no reply to the client in between.
func (t *transaction) open(ctx context.Context, route *enforcement.Route) (Upstream, error) {
	for {
		up, err := t.opener.Open(ctx, route)
		if err != nil {
			return nil, err
		}
		err = up.Mail(t.from, t.mailOpts)
		if err == nil {
			return up, nil
		}
		up.Close()
		if !up.Reused() || !up.Broken() || ctx.Err() != nil {
			return nil, err
		}
		t.log.Debug("pooled upstream connection found dead, replaced", "mx", up.Peer().Host.Name, "error", err)
	}
}

// close ends a transaction that ended cleanly: its upstream connection,
// if any, may serve a later transaction.
func (t *transaction) close() {
	if t.up != nil {
		if t.up.Broken() {
			t.up.Close()
		} else {
			t.up.Release()
		}
		t.up = nil
	}
}

// dropUpstream closes and forgets the upstream connection.
func (t *transaction) dropUpstream() {
	if t.up != nil {
		t.up.Close()
		t.up = nil
	}
}
