package proxy

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/netip"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"sealgate/enforcement"
)

// fakeRouter resolves the domains it knows; the others fail.
type fakeRouter struct {
	routes   map[string]*enforcement.Route
	fail     map[string]error
	resolved map[string]int
}

func (r *fakeRouter) Resolve(_ context.Context, domain string) (*enforcement.Route, error) {
	r.resolved[domain]++
	if err := r.fail[domain]; err != nil {
		return nil, err
	}
	route := *r.routes[domain]
	route.Domain = domain
	return &route, nil
}

func (r *fakeRouter) RelaxedRoute(ctx context.Context, domain string) (*enforcement.Route, error) {
	return r.Resolve(ctx, domain)
}

// fakeUpstream records what the transaction sends and answers from its
// switches.
type fakeUpstream struct {
	route   *enforcement.Route
	mailErr error
	// rcptErr answers RCPT for an address; breaks makes that answer
	// break the connection.
	rcptErr  map[string]error
	breaks   bool
	rcpts    []string
	broken   bool
	closed   int
	released int
	reused   bool
}

func (u *fakeUpstream) Mail(string, *smtp.MailOptions) error { return u.mailErr }
func (u *fakeUpstream) Rcpt(to string, _ *smtp.RcptOptions) error {
	if err := u.rcptErr[to]; err != nil {
		u.broken = u.breaks
		return err
	}
	u.rcpts = append(u.rcpts, to)
	return nil
}
func (u *fakeUpstream) Data([]byte, io.Reader) (*smtp.SMTPError, error) {
	return &smtp.SMTPError{Code: 250}, nil
}
func (u *fakeUpstream) Close() error { u.closed++; return nil }
func (u *fakeUpstream) Release()     { u.released++ }
func (u *fakeUpstream) Reused() bool { return u.reused }
func (u *fakeUpstream) Abort()       { u.broken = true }
func (u *fakeUpstream) Broken() bool { return u.broken }
func (u *fakeUpstream) Peer() Peer   { return Peer{Route: u.route} }

// fakeOpener opens fake upstreams, or fails for the hosts it is told.
type fakeOpener struct {
	fail   map[string]error // by first host name
	tries  int
	opened []*fakeUpstream
	// next configures the next upstream opened.
	next func(*fakeUpstream)
}

func (o *fakeOpener) Open(_ context.Context, route *enforcement.Route) (Upstream, error) {
	o.tries++
	if err := o.fail[route.Hosts[0].Name]; err != nil {
		return nil, err
	}
	u := &fakeUpstream{route: route}
	if o.next != nil {
		o.next(u)
	}
	o.opened = append(o.opened, u)
	return u, nil
}

func routeVia(mx string) *enforcement.Route {
	return &enforcement.Route{Hosts: []enforcement.Host{{
		Name:  mx,
		Addrs: []netip.Addr{netip.MustParseAddr("192.0.2.1")},
		Req:   enforcement.Requirement{Source: enforcement.SourceFloor, Level: enforcement.LevelEncrypt},
	}}}
}

func newTransaction(router *fakeRouter, opener *fakeOpener) *transaction {
	return &transaction{
		router: router, opener: opener, timeout: time.Second,
		log:    slog.New(slog.NewTextHandler(io.Discard, nil)),
		from:   "a@legacy.test",
		routes: map[string]*enforcement.Route{}, failed: map[string]error{},
	}
}

func wantCode(t *testing.T, what string, err error, code int, enh smtp.EnhancedCode) {
	t.Helper()
	r := Reply(err)
	if err == nil {
		t.Fatalf("%s: accepted, want %d", what, code)
	}
	if r.Code != code || r.EnhancedCode != enh {
		t.Fatalf("%s: got %d %v %s, want %d %v", what, r.Code, r.EnhancedCode, r.Message, code, enh)
	}
}

func TestTransactionRouteSharing(t *testing.T) {
	router := &fakeRouter{resolved: map[string]int{}, routes: map[string]*enforcement.Route{
		"a.test": routeVia("mx.shared.test"),
		"b.test": routeVia("mx.shared.test"),
		"c.test": routeVia("mx.other.test"),
	}}
	opener := &fakeOpener{}
	tx := newTransaction(router, opener)
	for _, to := range []string{"x@a.test", "y@b.test", "z@a.test"} {
		if err := tx.rcpt(to, to[2:], nil); err != nil {
			t.Fatalf("%s: %v", to, err)
		}
	}
	wantCode(t, "recipient of another route", tx.rcpt("w@c.test", "c.test", nil), 452, smtp.EnhancedCode{4, 5, 3})
	if len(opener.opened) != 1 || len(opener.opened[0].rcpts) != 3 {
		t.Fatalf("want one upstream with three recipients, got %d upstreams", len(opener.opened))
	}
	if len(tx.rcpts) != 3 {
		t.Fatalf("accepted %v", tx.rcpts)
	}
	if router.resolved["a.test"] != 1 {
		t.Errorf("a.test resolved %d times in one transaction", router.resolved["a.test"])
	}
	tx.close()
	if u := opener.opened[0]; u.released != 1 || u.closed != 0 {
		t.Errorf("at the clean end of the transaction the upstream was released %d and closed %d times, want released once", u.released, u.closed)
	}
}

func TestTransactionRemembersFailures(t *testing.T) {
	dnsFail := &enforcement.Failure{Kind: enforcement.KindDNS, Domain: "dns.test", Reason: "SERVFAIL"}
	noTLS := &enforcement.Failure{Kind: enforcement.KindNoSTARTTLS, Domain: "a.test", Host: "mx.plain.test", Reason: "STARTTLS not offered"}
	router := &fakeRouter{resolved: map[string]int{},
		fail: map[string]error{"dns.test": dnsFail},
		routes: map[string]*enforcement.Route{
			"a.test":  routeVia("mx.plain.test"),
			"b.test":  routeVia("mx.plain.test"),
			"ok.test": routeVia("mx.ok.test"),
		}}
	opener := &fakeOpener{fail: map[string]error{"mx.plain.test": noTLS}}
	tx := newTransaction(router, opener)

	wantCode(t, "DNS failure", tx.rcpt("x@dns.test", "dns.test", nil), 451, smtp.EnhancedCode{4, 4, 3})
	wantCode(t, "DNS failure again", tx.rcpt("y@dns.test", "dns.test", nil), 451, smtp.EnhancedCode{4, 4, 3})
	if n := router.resolved["dns.test"]; n != 1 {
		t.Errorf("a failed domain resolved %d times, want once", n)
	}
	wantCode(t, "no STARTTLS", tx.rcpt("x@a.test", "a.test", nil), 451, smtp.EnhancedCode{4, 7, 4})
	// b.test has an equal route: the failure is remembered, no new
	// connection is tried.
	wantCode(t, "equal route", tx.rcpt("x@b.test", "b.test", nil), 451, smtp.EnhancedCode{4, 7, 4})
	// A route that works still does.
	if err := tx.rcpt("x@ok.test", "ok.test", nil); err != nil {
		t.Fatalf("working route after failures: %v", err)
	}
	if opener.tries != 2 || len(opener.opened) != 1 || tx.rcpts[0] != "x@ok.test" {
		t.Fatalf("tried %d upstreams (want 2: the failed route once, the working one), opened %d, accepted %v", opener.tries, len(opener.opened), tx.rcpts)
	}
}

func TestTransactionLostAfterRecipients(t *testing.T) {
	router := &fakeRouter{resolved: map[string]int{}, routes: map[string]*enforcement.Route{"a.test": routeVia("mx.a.test")}}
	gone := &enforcement.Failure{Kind: enforcement.KindLost, Domain: "a.test", Host: "mx.a.test", Reason: "connection lost during RCPT"}
	opener := &fakeOpener{next: func(u *fakeUpstream) {
		u.rcptErr, u.breaks = map[string]error{"second@a.test": gone}, true
	}}
	tx := newTransaction(router, opener)
	if err := tx.rcpt("first@a.test", "a.test", nil); err != nil {
		t.Fatal(err)
	}
	wantCode(t, "the recipient whose RCPT broke the connection", tx.rcpt("second@a.test", "a.test", nil), 451, smtp.EnhancedCode{4, 4, 2})
	wantCode(t, "a later recipient", tx.rcpt("third@a.test", "a.test", nil), 451, smtp.EnhancedCode{4, 4, 2})
	if tx.lost == nil || tx.up != nil {
		t.Fatal("the transaction goes on after its connection broke with recipients accepted")
	}
	if len(opener.opened) != 1 || opener.opened[0].closed != 1 {
		t.Fatal("the broken upstream was not closed, or another was opened")
	}
}

func TestTransactionRefusedRecipientKeepsTheConnection(t *testing.T) {
	router := &fakeRouter{resolved: map[string]int{}, routes: map[string]*enforcement.Route{"a.test": routeVia("mx.a.test")}}
	unknown := &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no such user"}
	opener := &fakeOpener{next: func(u *fakeUpstream) { u.rcptErr = map[string]error{"nobody@a.test": unknown} }}
	tx := newTransaction(router, opener)
	err := tx.rcpt("nobody@a.test", "a.test", nil)
	var se *smtp.SMTPError
	if !errors.As(err, &se) || se != unknown {
		t.Fatalf("the MX's refusal is not relayed verbatim: %v", err)
	}
	if err := tx.rcpt("somebody@a.test", "a.test", nil); err != nil {
		t.Fatalf("a recipient after a refused one: %v", err)
	}
	if tx.lost != nil || len(opener.opened) != 1 {
		t.Fatal("a refused recipient broke the transaction")
	}
}

func TestTransactionMailRefusedClosesTheConnection(t *testing.T) {
	router := &fakeRouter{resolved: map[string]int{}, routes: map[string]*enforcement.Route{"a.test": routeVia("mx.a.test")}}
	refused := &smtp.SMTPError{Code: 553, EnhancedCode: smtp.EnhancedCode{5, 7, 1}, Message: "sender refused"}
	opener := &fakeOpener{next: func(u *fakeUpstream) { u.mailErr = refused }}
	tx := newTransaction(router, opener)
	if err := tx.rcpt("x@a.test", "a.test", nil); Reply(err) != refused {
		t.Fatalf("got %v, want the MX's reply to MAIL", err)
	}
	if opener.opened[0].closed != 1 || tx.up != nil {
		t.Fatal("the upstream whose MAIL was refused stays open")
	}
}

func TestTransactionReplacesADeadPooledConnection(t *testing.T) {
	router := &fakeRouter{resolved: map[string]int{}, routes: map[string]*enforcement.Route{"a.test": routeVia("mx.a.test")}}
	gone := &enforcement.Failure{Kind: enforcement.KindLost, Domain: "a.test", Host: "mx.a.test", Reason: "connection lost during MAIL"}
	n := 0
	opener := &fakeOpener{next: func(u *fakeUpstream) {
		n++
		if n == 1 { // from the pool, closed by the MX meanwhile
			u.reused, u.mailErr, u.broken = true, gone, true
		}
	}}
	tx := newTransaction(router, opener)
	if err := tx.rcpt("x@a.test", "a.test", nil); err != nil {
		t.Fatalf("a dead pooled connection reached the client: %v", err)
	}
	if len(opener.opened) != 2 || opener.opened[0].closed != 1 || tx.up != opener.opened[1] {
		t.Fatalf("want the dead connection closed and a new one used; opened %d", len(opener.opened))
	}

	// A new connection that breaks at MAIL is a failure, not retried.
	opener = &fakeOpener{next: func(u *fakeUpstream) { u.mailErr, u.broken = gone, true }}
	tx = newTransaction(router, opener)
	wantCode(t, "fresh connection lost at MAIL", tx.rcpt("x@a.test", "a.test", nil), 451, smtp.EnhancedCode{4, 4, 2})
	if len(opener.opened) != 1 {
		t.Fatalf("a fresh connection lost at MAIL was retried (%d opened)", len(opener.opened))
	}
}
