package proxy

import (
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
	"golang.org/x/net/idna"

	"sealgate/enforcement"
	"sealgate/enforcement/dnsname"
)

// session is one inbound SMTP session. go-smtp makes a new one at EHLO
// and again after STARTTLS.
type session struct {
	s       *Server
	conn    *smtp.Conn
	remote  netip.Addr
	trusted bool
	user    string
	// log is the session's logger, made at its first line (see logger).
	log *slog.Logger

	// tx is the transaction in progress, nil outside one and while a
	// run owns it (see data.go).
	tx *transaction

	// What Data needs of the connection, read at EHLO: with CHUNKING,
	// Data runs in its own goroutine and must not read go-smtp's
	// connection fields while the connection goroutine changes them.
	inTLS    *tls.ConnectionState
	clientNC net.Conn

	// helo is the client's EHLO or HELO name; a transaction takes it at
	// MAIL (Data reads it there). heloErr refuses a later name: MAIL is
	// refused with it until a valid one comes.
	helo    string
	heloErr *smtp.SMTPError

	// mu guards tx and run, the message being received (see data.go).
	mu  sync.Mutex
	run *dataRun
	// ended is the last BDAT run that ended on its own: go-smtp's
	// goroutine that ran it may still deliver its result (see
	// dataRun.wait), and the next transaction waits for that.
	ended *dataRun
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
		if g := guardOf(sess.clientNC); g != nil {
			g.dotCR.stop() // what it reads now is ciphertext
		}
	}
	for _, p := range s.opts.AllowedNetworks {
		if p.Contains(remote) {
			sess.trusted = true
			break
		}
	}
	return sess, nil
}

// logger returns the session's logger, with the client's address and an
// intercepted connection's original destination. It is made at the first
// line logged, not at EHLO: slog's With takes more stack than an idle
// session's goroutine otherwise ever needs, and a Go stack, once grown,
// stays at that size while the goroutine blocks in its read (8 KiB instead
// of 4 KiB for each of thousands of idle sessions). Only the connection
// goroutine calls it (Data logs through its transaction's logger).
func (ss *session) logger() *slog.Logger {
	if ss.log == nil {
		ss.log = withOriginalDst(ss.s.log.With("client", ss.remote.String()), ss.clientNC)
	}
	return ss.log
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
			ss.logger().Warn("authentication failed", "user", user)
			return errAuthFailed
		}
		ss.user = user
		ss.log = ss.logger().With("user", user)
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
	if ss.heloErr != nil {
		// go-smtp answered the EHLO 250 before we could see it.
		return ss.heloErr
	}
	if r := checkSender(from); r != nil {
		return r
	}
	ss.endTransaction()
	if opts != nil && opts.Auth != nil {
		// RFC 4954 §5: the identity a client claims with AUTH= is passed
		// on only by a server that trusts it. sealgate checks it against
		// nothing, and upstream it would be vouched for by sealgate's
		// own relay login: the MX gets AUTH=<>, "submitter not known".
		o := *opts
		unknown := "<>" // go-smtp's client writes the value as xtext
		o.Auth = &unknown
		opts = &o
	}
	if opts != nil && opts.RequireTLS {
		if ss.inTLS == nil {
			// go-smtp accepts the parameter over cleartext (RFC 8689 §4.1).
			return &smtp.SMTPError{Code: 530, EnhancedCode: smtp.EnhancedCode{5, 7, 10}, Message: "REQUIRETLS needs STARTTLS first"}
		}
	}
	ss.mu.Lock()
	ss.tx = &transaction{
		router:   ss.s.opts.Router,
		opener:   ss.s.opts.Opener,
		timeout:  ss.s.opts.UpstreamTimeout,
		waive:    ss.s.opts.HonorTLSRequiredNo,
		log:      ss.logger(),
		helo:     ss.helo,
		id:       newID(),
		from:     from,
		mailOpts: opts,
		started:  time.Now(),
		user:     ss.user,
		routes:   map[string]*enforcement.Route{},
		failed:   map[string]error{},
	}
	ss.mu.Unlock()
	return nil
}

func (ss *session) Rcpt(to string, opts *smtp.RcptOptions) error {
	if r := checkRecipient(to); r != nil {
		return r
	}
	if !ss.trusted && ss.user == "" {
		ss.logger().Warn("relay denied", "rcpt", to)
		return errRelayDenied
	}
	domain, ok := recipientDomain(to)
	if !ok {
		return errBadAddress
	}
	ss.mu.Lock()
	t := ss.tx
	ss.mu.Unlock()
	if t == nil {
		return &smtp.SMTPError{Code: 503, EnhancedCode: smtp.EnhancedCode{5, 5, 1}, Message: "MAIL first"}
	}
	if err := t.rcpt(to, domain, opts); err != nil {
		r := Reply(err)
		ss.s.recordRefusal(domain, err, r)
		if r == errInternal {
			ss.logger().Error("recipient failed", "rcpt", to, "error", err)
		} else {
			ss.logger().Info("recipient refused", "rcpt", to, "domain", domain, "reply", r.Code, "text", r.Message)
		}
		return r
	}
	return nil
}

func (ss *session) Reset() {
	ss.endTransaction()
	// go-smtp calls Reset for a later EHLO or HELO too (RFC 5321 §4.1.4:
	// as if RSET), with Hostname already the new name, and calls
	// NewSession, where the first name was checked, only once.
	if name := ss.conn.Hostname(); name != ss.helo {
		if ss.heloErr = checkHelo(name); ss.heloErr == nil {
			ss.helo = name
		}
	}
}

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
	ss.mu.Lock()
	t := ss.tx
	ss.tx = nil
	ss.mu.Unlock()
	if t != nil {
		t.close()
	}
}

// recipientDomain returns the lower-cased domain of an address, or false
// when it has none.
func recipientDomain(addr string) (string, bool) {
	i := strings.LastIndexByte(addr, '@')
	if i <= 0 || i == len(addr)-1 {
		return "", false
	}
	d := dnsname.Normalize(addr[i+1:])
	if strings.HasPrefix(d, "[") {
		// Address literals need no policy lookup but cannot be
		// authenticated: refuse them rather than deliver unverified.
		return "", false
	}
	if !isASCII(d) {
		// An internationalized domain (RFC 6531) is looked up, and its
		// policies found, by its A-labels (RFC 5891 §5); the address
		// itself goes on as the client wrote it.
		a, err := idna.Lookup.ToASCII(d)
		if err != nil {
			return "", false
		}
		d = a
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

func isASCII(s string) bool {
	for i := range len(s) {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}
