package proxy

import (
	"errors"

	"github.com/emersion/go-smtp"

	"sealgate/enforcement"
)

// Fixed replies of our own.
var (
	errRelayDenied = &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 7, 1}, Message: "relay access denied: authenticate or connect from an allowed network"}
	errBadAddress  = &smtp.SMTPError{Code: 501, EnhancedCode: smtp.EnhancedCode{5, 1, 3}, Message: "bad recipient address syntax"}
	errInternal    = &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "internal error, try again later"}
)

// Reply translates an error into the one SMTP reply the client sees. It is
// the only place where errors become replies.
func Reply(err error) *smtp.SMTPError {
	// A failure of ours first: it may wrap an upstream reply (a 535 of
	// the relay) that must not reach the client as it is.
	f, ok := enforcement.AsFailure(err)
	if !ok {
		var se *smtp.SMTPError
		if errors.As(err, &se) {
			return se
		}
		return errInternal
	}
	code, ec := 451, smtp.EnhancedCode{4, 3, 0}
	switch f.Kind {
	case enforcement.KindNoSTARTTLS:
		ec = smtp.EnhancedCode{4, 7, 4}
	case enforcement.KindTLS:
		ec = smtp.EnhancedCode{4, 7, 5}
	case enforcement.KindDNS:
		ec = smtp.EnhancedCode{4, 4, 3}
	case enforcement.KindUnreachable:
		ec = smtp.EnhancedCode{4, 4, 1}
	case enforcement.KindLost:
		ec = smtp.EnhancedCode{4, 4, 2}
	case enforcement.KindNullMX:
		code, ec = 556, smtp.EnhancedCode{5, 1, 10}
	case enforcement.KindNoDomain:
		code, ec = 550, smtp.EnhancedCode{5, 1, 2}
	case enforcement.KindAuth:
		ec = smtp.EnhancedCode{4, 7, 8}
	case enforcement.KindRequireTLS:
		code, ec = 550, smtp.EnhancedCode{5, 7, 30}
	case enforcement.KindSMTPUTF8:
		code, ec = 550, smtp.EnhancedCode{5, 6, 7}
	}
	return &smtp.SMTPError{Code: code, EnhancedCode: ec, Message: f.Error()}
}

// otherRoute is the reply to a recipient whose domain needs another route
// than the transaction's: the client sends it again in a later one.
func otherRoute(domain string) *smtp.SMTPError {
	return &smtp.SMTPError{Code: 452, EnhancedCode: smtp.EnhancedCode{4, 5, 3},
		Message: domain + ": different route than earlier recipients, send in a later transaction"}
}
