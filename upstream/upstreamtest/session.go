package upstreamtest

import (
	"errors"
	"io"
	"strings"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

var replyEncryptionRequired = &smtp.SMTPError{
	Code:         538,
	EnhancedCode: smtp.EnhancedCode{5, 7, 11},
	Message:      "Encryption required for requested authentication mechanism",
}

// backend makes one session per EHLO for go-smtp.
type backend struct{ mx *MX }

var _ smtp.Backend = backend{}

func (b backend) NewSession(sc *smtp.Conn) (smtp.Session, error) {
	c, ok := sc.Conn().(*mxConn)
	if !ok {
		return nil, errors.New("upstreamtest: connection is not an mxConn")
	}
	return &session{mx: b.mx, c: c, sc: sc}, nil
}

// session records transactions and applies the MAIL, RCPT and DATA faults.
// It replies with bare *smtp.SMTPError values, which go-smtp relays as is.
type session struct {
	mx *MX
	c  *mxConn
	sc *smtp.Conn

	authUser string
	from     string
	mailOpts smtp.MailOptions
	rcpts    []Rcpt
}

var (
	_ smtp.Session     = (*session)(nil)
	_ smtp.AuthSession = (*session)(nil)
)

func (s *session) Reset() {
	s.from = ""
	s.mailOpts = smtp.MailOptions{}
	s.rcpts = nil
}

func (s *session) Logout() error { return nil }

func (s *session) AuthMechanisms() []string {
	if len(s.mx.opts.AuthUsers) == 0 || s.c.info == nil {
		return nil
	}
	return []string{sasl.Plain}
}

func (s *session) Auth(mech string) (sasl.Server, error) {
	if len(s.mx.opts.AuthUsers) == 0 {
		return nil, smtp.ErrAuthUnsupported
	}
	if s.c.info == nil {
		return nil, replyEncryptionRequired
	}
	if !strings.EqualFold(mech, sasl.Plain) {
		return nil, smtp.ErrAuthUnknownMechanism
	}
	return sasl.NewPlainServer(func(identity, username, password string) error {
		want, ok := s.mx.opts.AuthUsers[username]
		if !ok || want != password || (identity != "" && identity != username) {
			return smtp.ErrAuthFailed
		}
		s.authUser = username
		return nil
	}), nil
}

func (s *session) Mail(from string, opts *smtp.MailOptions) error {
	s.mx.sleep(StageMail)
	if r := s.mx.opts.MailReply; r != nil {
		return r
	}
	s.Reset()
	s.from = from
	if opts != nil {
		s.mailOpts = *opts
	}
	return nil
}

func (s *session) Rcpt(to string, opts *smtp.RcptOptions) error {
	s.mx.sleep(StageRcpt)
	for addr, r := range s.mx.opts.RejectRcpt {
		if strings.EqualFold(addr, to) {
			return r
		}
	}
	if r := s.mx.opts.RcptReply; r != nil {
		return r
	}
	rc := Rcpt{To: to}
	if opts != nil {
		rc.Options = *opts
	}
	s.rcpts = append(s.rcpts, rc)
	return nil
}

func (s *session) Data(r io.Reader) error {
	body, err := io.ReadAll(r)
	msg := Message{
		Conn:        s.c.id,
		EHLO:        s.sc.Hostname(),
		From:        s.from,
		MailOptions: s.mailOpts,
		Rcpts:       s.rcpts,
		Data:        body,
		TLS:         s.c.info,
		AuthUser:    s.authUser,
	}
	if err != nil {
		// Cut short: go-smtp's reply to this cannot reach anyone, or, for
		// a too-large body, is its own 552.
		msg.Dropped = true
		s.mx.addMessage(msg)
		if s.c.dropped.Load() {
			_ = s.c.raw.Close()
		}
		return err
	}
	s.mx.sleep(StageData)
	if s.mx.hangup(StageData) {
		s.mx.addMessage(msg)
		return s.c.hangUp(StageData)
	}
	reply := s.mx.opts.DataReply
	msg.Accepted = reply == nil || reply.Code/100 == 2
	s.mx.addMessage(msg)
	if hook := s.mx.opts.BeforeDataReply; hook != nil {
		hook(msg.clone())
	}
	if reply != nil {
		return reply
	}
	return nil
}
